// leadrelay console: keeps SLA clocks ticking and live tables current. No framework; the pages
// work without it (clocks then show the time at render, and tables refresh on reload).
"use strict";

function formatSpan(ms) {
  const secs = Math.floor(Math.abs(ms) / 1000);
  if (secs < 60) return secs + "s";
  if (secs < 3600) return Math.floor(secs / 60) + "m " + String(secs % 60).padStart(2, "0") + "s";
  if (secs < 86400) return Math.floor(secs / 3600) + "h " + String(Math.floor((secs % 3600) / 60)).padStart(2, "0") + "m";
  return Math.floor(secs / 86400) + "d " + Math.floor((secs % 86400) / 3600) + "h";
}

// <span data-due="2026-11-26T15:04:05Z">: "due in 4m 10s", then "overdue 1m 02s".
function tickClocks() {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-due]")) {
    const due = Date.parse(el.dataset.due);
    if (Number.isNaN(due)) continue;
    const left = due - now;
    el.textContent = left >= 0 ? "due in " + formatSpan(left) : "overdue " + formatSpan(left);
    el.classList.toggle("overdue", left < 0);
  }
}

// <tbody data-live="/console/leads/rows?..."> is replaced with a fresh copy every 5 s.
async function refreshLive() {
  if (document.hidden) return;
  for (const el of document.querySelectorAll("[data-live]")) {
    try {
      const response = await fetch(el.dataset.live, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (response.redirected || !response.ok) continue;
      el.innerHTML = await response.text();
      const status = document.getElementById("live-status");
      if (status) {
        const count = el.querySelectorAll("tr[data-lead]").length;
        status.textContent = count + " leads · updated " + new Date().toLocaleTimeString() + " · refreshes every 5 seconds";
      }
    } catch (_) {
      // Offline for a moment: the next round tries again.
    }
  }
  tickClocks();
}

document.addEventListener("DOMContentLoaded", () => {
  tickClocks();
  setInterval(tickClocks, 1000);
  if (document.querySelector("[data-live]")) setInterval(refreshLive, 5000);
});
