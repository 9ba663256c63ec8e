// A case's page: close or reopen it with a reason, and export it — start the job, follow
// its progress, then offer the bag (.tar) and the hand-over receipt. The server decides
// and records everything; this script only calls the API with the session's CSRF token.
(function () {
  "use strict";
  var texts = document.getElementById("page-texts").dataset;

  function csrf() {
    var m = document.cookie.match(/(?:^|;\s*)liuhen_csrf=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  function api(method, url, body) {
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) {
          var e = data.error || {};
          throw new Error((e.message || r.status) + (e.hint ? " — " + e.hint : ""));
        }
        return data;
      });
    });
  }
  function mb(n) { return ((n || 0) / 1e6).toFixed(1); }
  function caseUrl(number) { return "/api/v1/cases/" + encodeURIComponent(number); }

  var statusForm = document.getElementById("status-form");
  if (statusForm) {
    statusForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var out = document.getElementById("status-status");
      var url = caseUrl(statusForm.dataset.number) + "/" + statusForm.dataset.to;
      api("POST", url, { reason: statusForm.elements.reason.value })
        .then(function () { out.textContent = texts.changed; location.reload(); })
        .catch(function (e) { out.className = "alert"; out.textContent = texts.failed + ": " + e.message; });
    });
  }

  var box = document.getElementById("export");
  if (!box) { return; }
  var bar = document.getElementById("export-bar");
  var state = document.getElementById("export-state");
  var total = parseInt(box.dataset.total, 10) || 0;

  function show(job) {
    bar.hidden = false;
    var percent = job.state === "done" ? 100 :
      (total ? Math.min(99, Math.floor(100 * job.bytes_written / total)) : 0);
    bar.setAttribute("aria-valuenow", percent);
    bar.querySelector("span").style.width = percent + "%";
    box.dataset.state = job.state;
    if (job.state === "queued") { state.textContent = texts.queued; }
    if (job.state === "running") { state.textContent = texts.running.replace("{mb}", mb(job.bytes_written)); }
    if (job.state === "failed") {
      state.className = "alert";
      state.textContent = texts.failed + ": " + (job.error ? job.error.message : "");
    }
    if (job.state === "done") {
      state.textContent = texts.done.replace("{mb}", mb(job.bytes_written));
      document.getElementById("export-download").href = "/api/v1/exports/jobs/" + job.id + "/download";
      document.getElementById("export-receipt").href = "/exports/" + job.export + "/receipt";
      document.getElementById("export-done").hidden = false;
      var list = document.getElementById("export-bags");
      list.textContent = "";
      job.bags.forEach(function (b) {
        var li = document.createElement("li");
        li.textContent = b.name + " · " + b.recordings + " · " + mb(b.bytes) + " MB · " +
          (b.four_properties_ok ? texts.ok : texts.notok);
        list.appendChild(li);
      });
    }
  }
  function follow(id) {
    api("GET", "/api/v1/exports/jobs/" + id).then(function (job) {
      show(job);
      if (job.state === "queued" || job.state === "running") { setTimeout(function () { follow(id); }, 500); }
    }).catch(function (e) { state.textContent = texts.failed + ": " + e.message; });
  }
  document.getElementById("export-start").addEventListener("click", function (ev) {
    ev.target.disabled = true;
    api("POST", "/api/v1/exports", { cases: [box.dataset.number] })
      .then(function (job) { show(job); follow(job.id); })
      .catch(function (e) { ev.target.disabled = false; state.className = "alert"; state.textContent = texts.failed + ": " + e.message; });
  });
})();
