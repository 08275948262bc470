"use strict";
(() => {
  const tbody = document.querySelector("#procs tbody");
  const empty = document.getElementById("empty");
  const summary = document.getElementById("summary");
  function draw(procs) {
    const rows = Corral.renderTable(tbody, procs);
    empty.hidden = rows.length > 0;
    summary.textContent = Corral.summary(rows);
    if (window.corralFirstDraw === undefined) window.corralFirstDraw = performance.now(); // ms since navigation start
  }
  draw(Corral.initial.procs || []);
  Corral.live({ procs: draw });
})();
