// The jobs page: while runs are in flight, poll the ledger's status and reload when it changes.
// Without script the page carries a meta refresh instead, only while something is in flight.
(function () {
  var root = document.getElementById("jobs-live");
  if (!root || root.dataset.inFlight !== "yes") { return; }
  var url = root.dataset.statusUrl, seen = root.dataset.fingerprint;
  function typing() {  // never throw away a reason being written
    var el = document.activeElement;
    return el && el.tagName === "INPUT" && el.value;
  }
  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if ((s.fingerprint !== seen || !s.in_flight) && !typing()) { window.location.reload(); return; }
        setTimeout(poll, 2000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 2000);
})();
