// The live view: one row per bootstrap step the server took or refused, newest
// first, from the console's server-sent events (no framework, no build step).
"use strict";
(function () {
  const table = document.getElementById("live");
  const status = document.getElementById("status");
  const counts = { activated: "confirmed", refused: "refused", granted: "granted" };
  const words = {
    granted: "flight 2 accepted: key granted",
    activated: "flight 6 accepted: bootstrap confirmed",
  };
  const source = new EventSource("/live/events");
  source.onopen = function () { status.textContent = "connected"; };
  source.onerror = function () { status.textContent = "reconnecting…"; };
  source.onmessage = function (message) {
    const event = JSON.parse(message.data);
    const row = table.insertRow(1);
    row.className = "step " + event.outcome;
    row.dataset.node = event.node;
    const cells = [
      new Date(event.at * 1000).toLocaleTimeString(),
      event.node, event.controller, String(event.tid),
      event.cause || words[event.outcome] || event.outcome,
    ];
    for (const text of cells) {
      row.insertCell().textContent = text;
    }
    row.cells[1].innerHTML = "";
    const link = document.createElement("a");
    link.href = "/nodes/" + event.node;
    link.textContent = event.node;
    row.cells[1].appendChild(link);
    const counter = document.getElementById(counts[event.outcome]);
    if (counter) counter.textContent = String(Number(counter.textContent) + 1);
    while (table.rows.length > 501) table.deleteRow(-1);
  };
})();
