"use strict";
(() => {
  const init = Corral.initial;
  const name = init.name;
  const tbody = document.querySelector("#procs tbody");
  const summary = document.getElementById("summary");
  const KEEP = 3600;
  const COLOURS = ["#2f6fdf", "#d9480f", "#2b8a3e", "#9c36b5", "#e67700", "#0b7285", "#c2255c", "#5c940d"];
  const hist = {}; // id -> {t, cpu, mem}
  let ids = [];
  const charts = { cpu: null, mem: null };
  window.corralCharts = charts;

  // ---------------------------------------------------------------- processes
  function drawProcs(procs) {
    const rows = Corral.renderTable(tbody, procs, { name });
    summary.textContent = Corral.summary(rows);
    const next = rows.map((p) => p.id).sort((a, b) => a - b);
    const scale = document.getElementById("scale-count");
    if (scale && document.activeElement !== scale && scale.dataset.touched !== "1") scale.value = rows.length || 1;
    if (next.join() !== ids.join()) { ids = next; drawCharts(true); }
    drawLastExits(rows);
  }

  // Per instance: restarts, why it last restarted, how it last exited.
  function drawLastExits(rows) {
    const box = document.getElementById("last-exits");
    box.replaceChildren(...rows.map((p) => {
      const exit = p.exit_signal ? "signal " + p.exit_signal : (p.exit_code !== null && p.exit_code !== undefined ? "code " + p.exit_code : null);
      const parts = [p.restarts + " restart" + (p.restarts === 1 ? "" : "s")];
      if (p.unstable_restarts) parts.push(p.unstable_restarts + " unstable");
      if (p.last_restart_reason) parts.push("last restart: " + p.last_restart_reason);
      if (exit) parts.push("last exit: " + exit + (p.reason ? " (" + p.reason + ")" : ""));
      else if (p.reason) parts.push(p.reason);
      return Corral.el("li", { "data-id": p.id }, Corral.el("b", { text: "id " + p.id }), " " + parts.join(" · "));
    }));
  }

  // ---------------------------------------------------------------- charts
  function addPoints(id, pts) {
    const h = hist[id] || (hist[id] = { t: [], cpu: [], mem: [] });
    for (let i = 0; i < pts.t.length; i++) {
      if (h.t.length && pts.t[i] <= h.t[h.t.length - 1]) continue;
      h.t.push(pts.t[i]); h.cpu.push(pts.cpu[i]); h.mem.push(pts.mem[i] / 1048576);
    }
    const cut = Date.now() / 1000 - KEEP;
    while (h.t.length && h.t[0] < cut) { h.t.shift(); h.cpu.shift(); h.mem.shift(); }
  }

  function dataFor(key) {
    const tables = ids.map((id) => { const h = hist[id] || { t: [], cpu: [], mem: [] }; return [h.t, h[key]]; });
    if (!tables.length) return [[]];
    return tables.length === 1 ? tables[0] : uPlot.join(tables);
  }

  function makeChart(key, el, unit) {
    const width = Math.max(300, (el.clientWidth || 500) - 12);
    const opts = {
      width, height: 200,
      scales: { x: { time: true } },
      legend: { show: true },
      series: [{}, ...ids.map((id, i) => ({ label: "id " + id, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: true, points: { show: false }, value: (u, v) => v === null || v === undefined ? "—" : v.toFixed(1) + unit }))],
      axes: [{}, { size: 76, values: (u, vals) => vals.map((v) => (Math.abs(v) >= 100 ? v.toFixed(0) : +v.toFixed(2)) + unit) }],
    };
    el.replaceChildren();
    return new uPlot(opts, dataFor(key), el);
  }

  function drawCharts(rebuild) {
    if (typeof uPlot === "undefined") return;
    for (const [key, elId, unit] of [["cpu", "chart-cpu", "%"], ["mem", "chart-mem", " MB"]]) {
      if (rebuild || !charts[key]) { if (charts[key]) charts[key].destroy(); charts[key] = makeChart(key, document.getElementById(elId), unit); }
      else charts[key].setData(dataFor(key));
    }
  }

  for (const [id, pts] of Object.entries(init.history || {})) addPoints(Number(id), pts);

  // ---------------------------------------------------------------- events
  const evList = document.getElementById("events");
  document.getElementById("events-source").textContent =
    init.events_source === "daemon" ? "(kept by the daemon)" : "(seen since this dashboard started)";
  function who(ev) {
    if (ev.id !== null && ev.id !== undefined) return "id " + ev.id + ": ";
    if (ev.instance !== null && ev.instance !== undefined) return "#" + ev.instance + ": ";
    return "";
  }
  function addEvent(ev, top) {
    const li = Corral.el("li", { class: "ev ev-" + ev.kind },
      Corral.el("time", { text: Corral.clock(ev.time) }), " ",
      Corral.el("b", { text: ev.kind }), " ",
      Corral.el("span", { text: who(ev) + (ev.message || ev.reason || "") }));
    if (top) evList.prepend(li); else evList.append(li);
    while (evList.children.length > 300) evList.lastChild.remove();
  }
  (init.events || []).slice().reverse().forEach((ev) => addEvent(ev, false));
  if (!evList.children.length) evList.append(Corral.el("li", { class: "muted none", text: "no events yet" }));

  // ---------------------------------------------------------------- logs
  const logBox = document.getElementById("log");
  const logState = document.getElementById("log-state");
  const form = document.getElementById("log-form");
  let logSource = null;
  function openLogs() {
    if (logSource) logSource.close();
    logBox.replaceChildren();
    const streams = [["out", "log-out"], ["err", "log-err"]].filter(([, i]) => document.getElementById(i).checked).map(([s]) => s);
    const q = new URLSearchParams({ q: document.getElementById("log-search").value, range: document.getElementById("log-range").value, streams: streams.join(",") || "out,err" });
    logSource = new EventSource("/apps/" + encodeURIComponent(name) + "/logs?" + q);
    logState.textContent = "connecting…";
    logSource.onopen = () => { logBox.replaceChildren(); logState.textContent = "following"; }; // each (re)connection sends the tail again
    logSource.onerror = () => { logState.textContent = "reconnecting…"; };
    logSource.addEventListener("log", (m) => {
      const l = JSON.parse(m.data);
      const stick = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
      logBox.append(Corral.el("div", { class: "line " + l.type + (l.tail ? " tail" : ""), title: l.tail ? "from the log file (time approximate when the line has no timestamp)" : "" },
        Corral.el("time", { text: Corral.clock(l.time) }), Corral.el("span", { class: "src", text: l.id + "|" + l.type }), Corral.el("span", { class: "msg", text: l.message })));
      while (logBox.children.length > 2000) logBox.firstChild.remove();
      if (stick) logBox.scrollTop = logBox.scrollHeight;
    });
    logSource.addEventListener("notice", (m) => { logState.textContent = JSON.parse(m.data).message; });
  }
  let debounce = null;
  form.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(openLogs, 250); });
  form.addEventListener("submit", (e) => { e.preventDefault(); openLogs(); });
  openLogs();

  // ---------------------------------------------------------------- actions
  const bar = document.getElementById("actions");
  if (bar) {
    const scale = document.getElementById("scale-count");
    scale.addEventListener("input", () => { scale.dataset.touched = "1"; });
    bar.addEventListener("click", async (e) => {
      const b = e.target.closest("button[data-action]");
      if (!b) return;
      const action = b.dataset.action;
      const opts = { confirm: b.dataset.confirm };
      if (action === "scale") {
        opts.count = scale.value;
        const current = tbody.children.length;
        if (Number(scale.value) < current) opts.confirm = "Scale " + name + " down from " + current + " to " + scale.value + " instances?";
      }
      b.disabled = true;
      try { await Corral.act(action, name, opts); } finally { b.disabled = false; scale.dataset.touched = ""; }
      if (action === "flush") openLogs();
    });
  }

  drawProcs(init.procs || []);
  Corral.live({
    procs: drawProcs,
    history: (fresh) => {
      for (const [id, pts] of Object.entries(fresh)) addPoints(Number(id), pts);
      drawCharts(false);
    },
    event: (ev) => {
      if (ev.name !== name) return;
      const none = evList.querySelector(".none");
      if (none) none.remove();
      addEvent(ev, true);
    },
  });
  window.addEventListener("resize", () => drawCharts(true));
})();
