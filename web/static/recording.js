// A recording's page: what was watched is reported to the audit when the player pauses
// or ends (where it started and how long it played); markers at the current position;
// attaching to a case with a reason. Every change is an API call with the session's
// CSRF token; the server checks the permission and records it.
(function () {
  "use strict";
  var texts = document.getElementById("page-texts").dataset;
  var video = document.getElementById("player");
  var recId = (video && video.dataset.recording) ||
    location.pathname.split("/").filter(Boolean).pop();

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
      if (r.status === 204) { return null; }
      return r.json().then(function (data) {
        if (!r.ok) {
          var e = data.error || {};
          throw new Error((e.message || r.status) + (e.hint ? " — " + e.hint : ""));
        }
        return data;
      });
    });
  }

  function clock(s) {
    var t = Math.floor(s), h = Math.floor(t / 3600), m = Math.floor(t / 60) % 60, x = t % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return (h ? h + ":" : "") + two(m) + ":" + two(x);
  }

  // -- what was watched ------------------------------------------------------------------
  var from = null;
  function started() { from = video.currentTime; }
  function stopped() {
    if (from === null) { return; }
    var watched = Math.max(video.currentTime - from, 0);
    var body = { position_s: from, duration_s: watched, kind: video.dataset.kind };
    from = null;
    api("POST", "/api/v1/recordings/" + recId + "/playback", body).catch(function () {});
  }
  if (video) {
    video.addEventListener("playing", started);
    video.addEventListener("pause", stopped);
    video.addEventListener("ended", stopped);
    video.addEventListener("seeking", function () { if (!video.paused) { stopped(); } });
    video.addEventListener("seeked", function () { if (!video.paused) { started(); } });
  }

  // -- markers ---------------------------------------------------------------------------
  var list = document.getElementById("markers");
  function showMarkers(markers) {
    list.textContent = "";
    if (!markers.length) {
      var none = document.createElement("li");
      none.className = "muted";
      none.textContent = list.dataset.empty;
      list.appendChild(none);
    }
    markers.forEach(function (m) {
      var li = document.createElement("li");
      var jump = document.createElement("button");
      jump.type = "button";
      jump.className = "link";
      jump.textContent = clock(m.position_s);
      jump.addEventListener("click", function () { if (video) { video.currentTime = m.position_s; } });
      li.appendChild(jump);
      li.appendChild(document.createTextNode(" " + m.note + " — " + m.actor));
      li.dataset.position = m.position_s;
      list.appendChild(li);
    });
  }
  function loadMarkers() {
    return api("GET", "/api/v1/recordings/" + recId + "/markers").then(showMarkers);
  }
  loadMarkers().catch(function () {});

  var markerForm = document.getElementById("marker-form");
  var markerStatus = document.getElementById("marker-status");
  if (markerForm) {
    markerForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var note = markerForm.elements.note;
      var at = video ? video.currentTime : 0;
      api("POST", "/api/v1/recordings/" + recId + "/markers", { position_s: at, note: note.value })
        .then(function () { note.value = ""; markerStatus.textContent = texts.added; return loadMarkers(); })
        .catch(function (e) { markerStatus.textContent = texts.failed + ": " + e.message; });
    });
  }

  // -- attach to a case ------------------------------------------------------------------
  var attachForm = document.getElementById("attach-form");
  var attachStatus = document.getElementById("attach-status");
  if (attachForm) {
    attachForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var number = attachForm.elements["case"].value.trim();
      var body = { recording: parseInt(recId, 10), reason: attachForm.elements.reason.value };
      api("POST", "/api/v1/cases/" + encodeURIComponent(number) + "/attach", body)
        .then(function (r) {
          attachStatus.className = "ok";
          attachStatus.textContent = r.changed ? texts.attached : texts.already;
          if (r.changed) { setTimeout(function () { location.reload(); }, 600); }
        })
        .catch(function (e) { attachStatus.className = "alert"; attachStatus.textContent = texts.failed + ": " + e.message; });
    });
  }

  // -- detach, legal holds: each with a reason, asked for in the page ---------------------
  function withReason(then) {
    var reason = window.prompt(texts.reason);
    if (reason && reason.trim()) { then(reason.trim()); }
  }
  function reloadOr(out) {
    return function (e) {
      if (e) { out.className = "alert"; out.textContent = texts.failed + ": " + e.message; return; }
      location.reload();
    };
  }
  document.querySelectorAll("button.detach").forEach(function (b) {
    b.addEventListener("click", function () {
      withReason(function (reason) {
        var body = { recording: parseInt(recId, 10), reason: reason };
        api("POST", "/api/v1/cases/" + encodeURIComponent(b.dataset.case) + "/detach", body)
          .then(function () { location.reload(); }, reloadOr(attachStatus));
      });
    });
  });
  var holdForm = document.getElementById("hold-form");
  var holdStatus = document.getElementById("hold-status");
  if (holdForm) {
    holdForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      api("POST", "/api/v1/recordings/" + recId + "/holds", { reason: holdForm.elements.reason.value })
        .then(function () { location.reload(); }, reloadOr(holdStatus));
    });
  }
  document.querySelectorAll("button.release-hold").forEach(function (b) {
    b.addEventListener("click", function () {
      withReason(function (reason) {
        api("POST", "/api/v1/recordings/" + recId + "/holds/" + b.dataset.hold + "/release", { reason: reason })
          .then(function () { location.reload(); }, reloadOr(holdStatus));
      });
    });
  });
})();
