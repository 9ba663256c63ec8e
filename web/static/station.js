// The station screen: asks the server for the slots twice a second and redraws them.
// The verdict (可安全拔出 / 请勿拔出) and its colour come from the server, which decides
// them by the docking's state; this script never decides anything itself. When the
// server stops answering, verdicts are hidden: a stale "safe" must not be trusted.
(function () {
  "use strict";
  var box = document.getElementById("slots");
  var texts = document.getElementById("station-texts").dataset;
  var offline = document.getElementById("offline");
  var template = document.getElementById("slot-template");
  var every = parseInt(box.dataset.pollMs, 10) || 500;

  function mb(n) { return ((n || 0) / 1e6).toFixed(1); }

  function fill(card, s) {
    card.className = "slot " + s.tone;
    card.dataset.slot = s.slot;
    card.dataset.state = s.state;
    card.querySelector("h2").textContent = texts.slot + " " + s.slot;
    card.querySelector(".device").textContent = s.device || texts.unknown;
    card.querySelector(".officer").textContent =
      (s.officer_name || "") + " " + (s.officer || "");
    card.querySelector(".files").textContent = s.files_done + " / " + s.files_total;
    card.querySelector(".bytes").textContent = mb(s.bytes_done) + " / " + mb(s.bytes_total);
    var bar = card.querySelector(".bar");
    bar.setAttribute("aria-valuenow", s.percent);
    bar.querySelector("span").style.width = s.percent + "%";
    card.querySelector(".eta").textContent = s.eta_text || "";
    card.querySelector(".problems").textContent =
      (s.problems ? texts.problems + ": " + s.problems + " " : "") + (s.waiting || "");
    card.querySelector(".state-text").textContent = s.state_text;
    card.querySelector(".verdict").textContent = s.verdict;
  }

  function draw(slots) {
    var cards = {};
    box.querySelectorAll(".slot").forEach(function (c) { cards[c.dataset.slot] = c; });
    box.querySelectorAll(".empty").forEach(function (e) {
      if (slots.length) { e.remove(); }
    });
    slots.forEach(function (s) {
      var card = cards[s.slot];
      if (!card) {
        card = template.content.firstElementChild.cloneNode(true);
        box.appendChild(card);
      }
      fill(card, s);
      delete cards[s.slot];
    });
    Object.keys(cards).forEach(function (k) { cards[k].remove(); });
  }

  function lost() {
    offline.hidden = false;
    offline.textContent = texts.offline;
    box.querySelectorAll(".slot").forEach(function (c) {
      c.className = "slot stale";
      c.querySelector(".verdict").textContent = "—";
    });
  }

  function poll() {
    fetch("/station/status", { cache: "no-store", credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (data) { offline.hidden = true; draw(data.slots); })
      .catch(lost)
      .finally(function () { setTimeout(poll, every); });
  }
  setTimeout(poll, every);
})();
