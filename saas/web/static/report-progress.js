// Live progress of finance reports: server-sent events, with polling when they are unavailable.
(function () {
  "use strict";

  function show(item, state) {
    var bar = item.querySelector("progress");
    var percent = item.querySelector("[data-role=percent]");
    var status = item.querySelector("[data-role=status]");
    var link = item.querySelector("[data-role=download]");
    bar.value = state.progress;
    bar.textContent = state.progress + "%";
    percent.textContent = state.status === "failed" ? "Failed" : state.progress + "%";
    status.textContent = state.status;
    status.className = "pill pill-" + state.status;
    item.dataset.status = state.status;
    var notice = item.querySelector("[data-role=notice]");
    if (notice && finished(state)) { notice.remove(); }
    if (state.status === "done" && state.download) {
      link.href = state.download;
      link.hidden = false;
    }
  }

  function finished(state) { return state.status === "done" || state.status === "failed"; }

  function poll(item) {
    fetch(item.dataset.statusUrl, { headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (state) { show(item, state); if (!finished(state)) { setTimeout(function () { poll(item); }, 2000); } })
      .catch(function () { setTimeout(function () { poll(item); }, 5000); });
  }

  function watch(item) {
    if (!window.EventSource) { poll(item); return; }
    var source = new EventSource(item.dataset.events);
    source.onmessage = function (event) {
      var state = JSON.parse(event.data);
      show(item, state);
      if (finished(state)) { source.close(); }
    };
  }

  document.querySelectorAll("[data-events]").forEach(watch);
})();
