// The audit page's custody check: while it runs, ask the server how far it has come
// (GET /audit/integrity/custody) once a second and move the bar; when it has finished,
// reload the page, which the server renders with each station's result. The server
// runs and decides everything; this script only shows its progress.
(function () {
  "use strict";
  var box = document.getElementById("custody-progress");
  if (!box || box.dataset.state !== "running") { return; }
  var bar = document.getElementById("custody-bar");
  var status = document.getElementById("custody-status");

  function show(run) {
    var total = run.stations_total || 1;
    var pct = Math.floor((run.stations_done * 100) / total);
    bar.hidden = false;
    bar.setAttribute("aria-valuenow", String(pct));
    bar.firstElementChild.style.width = pct + "%";
    status.textContent = box.dataset.running
      .replace("{station}", run.current || "…")
      .replace("{done}", String(run.stations_done))
      .replace("{total}", String(run.stations_total));
  }
  function poll() {
    fetch("/audit/integrity/custody", { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (run) {
        if (run.state === "running") {
          show(run);
          window.setTimeout(poll, 1000);
        } else {
          status.textContent = run.state === "failed" ? box.dataset.failed : box.dataset.done;
          window.location.reload();
        }
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }
  poll();
})();
