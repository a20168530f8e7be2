// The waiting page: poll the operation's status, then reload the page, which says what happened.
(function () {
  var root = document.getElementById("op-status");
  var statusUrl = root.dataset.statusUrl, waitUrl = root.dataset.waitUrl;
  function poll() {
    fetch(statusUrl, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (s) {
      if (s.state === "pending") { setTimeout(poll, 1000); } else { window.location = waitUrl; }
    }).catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 500);
})();
