// Pay now (the dunning banner): post the form, then poll the operation and show its outcome in place.
(function () {
  "use strict";
  document.querySelectorAll("form[data-pay-now]").forEach(function (form) {
    var result = form.querySelector("[data-role=pay-result]");
    var button = form.querySelector("button");
    function say(text, state) { result.textContent = text; result.dataset.state = state; }
    function poll(url) {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          if (s.state === "pending") { setTimeout(function () { poll(url); }, 1000); return; }
          say(s.message || "", s.state);
          button.disabled = s.state === "done";
          if (s.state === "done") { form.closest(".banner").classList.add("banner-resolved"); }
        })
        .catch(function () { setTimeout(function () { poll(url); }, 3000); });
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      say("Charging your card…", "pending");
      fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin",
                           headers: { Accept: "application/json" } })
        .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
        .then(function (r) {
          if (!r.ok) { say(r.body.error || "Something went wrong. Please try again.", "failed"); button.disabled = false; return; }
          poll(r.body.status_url);
        })
        .catch(function () { say("We could not reach the server. Please try again.", "failed"); button.disabled = false; });
    });
  });
})();
