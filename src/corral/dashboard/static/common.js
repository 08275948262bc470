// Corral dashboard: shared helpers. No framework; every text goes in with textContent.
"use strict";
const Corral = (() => {
  const initial = JSON.parse(document.getElementById("initial").textContent);
  const readOnly = document.body.dataset.readOnly === "1";
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const conn = document.getElementById("conn");
  const banner = document.getElementById("banner");
  let daemonDown = null;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const kid of kids) if (kid) e.append(kid);
    return e;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  function duration(s) {
    if (s === null || s === undefined) return "—";
    s = Math.floor(s);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  function clock(t) {
    return new Date(t * 1000).toLocaleTimeString([], { hour12: false });
  }

  function showBanner() {
    if (conn.dataset.state !== "live") {
      banner.textContent = "Connection to the dashboard lost: reconnecting…";
      banner.hidden = false;
    } else if (daemonDown) {
      banner.textContent = "The Corral daemon is not reachable: " + daemonDown;
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
  }

  function setConn(state, text) {
    conn.dataset.state = state;
    conn.textContent = text;
    showBanner();
  }

  // One EventSource to /stream; handlers by event name. Reconnects on its own, and
  // is re-created when the browser gives up (e.g. the server was restarted).
  function live(handlers) {
    let es = null;
    let received = 0;
    function open() {
      es = new EventSource("/stream");
      es.onopen = () => setConn("live", "live");
      es.onerror = () => {
        setConn("lost", "reconnecting…");
        if (es.readyState === EventSource.CLOSED) setTimeout(open, 1000);
      };
      es.addEventListener("daemon", (m) => {
        const d = JSON.parse(m.data);
        daemonDown = d.up ? null : (d.error || "down");
        showBanner();
      });
      for (const [name, fn] of Object.entries(handlers)) {
        es.addEventListener(name, (m) => { received++; window.corralLastUpdate = performance.now(); fn(JSON.parse(m.data)); });
      }
    }
    open();
    return { get received() { return received; } };
  }

  function confirmAction(text) {
    const dlg = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    return new Promise((resolve) => {
      dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
      dlg.returnValue = "";
      dlg.showModal();
    });
  }

  function toast(text, bad) {
    const t = document.getElementById("toast");
    t.textContent = text;
    t.className = bad ? "bad" : "";
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, bad ? 8000 : 3000);
  }

  async function act(action, target, opts) {
    opts = opts || {};
    if (opts.confirm && !(await confirmAction(opts.confirm))) return null;
    const body = { action, target: String(target) };
    if (opts.count !== undefined) body.count = String(opts.count);
    toast(action + " " + target + "…");
    let res, data;
    try {
      res = await fetch("/api/action", {
        method: "POST",
        headers: { "content-type": "application/json", "x-csrf-token": csrf },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
      data = await res.json();
    } catch (e) {
      toast(action + " " + target + ": " + e, true);
      return null;
    }
    if (!data.ok) toast(action + " " + target + ": " + data.error, true);
    else toast(action + " " + target + ": done");
    return data;
  }

  function healthText(p) {
    if (!p.health) return "—";
    return p.health.status + (p.health.last_error ? " (" + p.health.last_error + ")" : "");
  }

  function readyText(p) {
    if (p.status !== "online" && p.status !== "launching") return "—";
    if (p.ready) return "ready";
    return p.notify_status ? "waiting: " + p.notify_status : "waiting";
  }

  // The process table, keyed by instance id; rows are rebuilt in place.
  function renderTable(tbody, procs, opts) {
    opts = opts || {};
    const rows = procs.filter((p) => !opts.name || p.name === opts.name);
    tbody.replaceChildren(...rows.map((p) => {
      const status = el("span", { class: "status s-" + p.status.replace(" ", "-"), text: p.status, title: p.reason || "" });
      const name = opts.name ? el("span", { text: p.name + (p.instance ? " #" + p.instance : "") })
        : el("a", { href: "/apps/" + encodeURIComponent(p.name), text: p.name + (p.instance ? " #" + p.instance : "") });
      const cells = [
        el("td", { text: p.id }), el("td", {}, name), el("td", { text: p.mode }),
        el("td", { class: "pid", text: p.pid === null ? "—" : p.pid }), el("td", { class: "status-cell" }, status),
        el("td", { text: healthText(p) }), el("td", { text: readyText(p) }),
        el("td", { text: duration(p.uptime) }), el("td", { class: "restarts", text: p.restarts }),
        el("td", { text: p.cpu === null ? "—" : p.cpu.toFixed(1) + "%" }), el("td", { text: bytes(p.memory) }),
      ];
      if (!readOnly) {
        const stopped = p.status === "stopped" || p.status === "errored";
        const buttons = el("td", { class: "row-actions" },
          el("button", { text: "restart", "data-act": "restart", onclick: () => act("restart", p.id, { confirm: "Restart " + p.name + " (id " + p.id + ")?" }) }),
          stopped ? el("button", { text: "start", "data-act": "start", onclick: () => act("start", p.id) })
            : el("button", { text: "stop", "data-act": "stop", class: "danger", onclick: () => act("stop", p.id, { confirm: "Stop " + p.name + " (id " + p.id + ")?" }) }));
        cells.push(buttons);
      }
      return el("tr", { "data-id": p.id, "data-name": p.name, "data-status": p.status }, ...cells);
    }));
    return rows;
  }

  function summary(rows) {
    const online = rows.filter((p) => p.status === "online").length;
    return online + "/" + rows.length + " online";
  }

  return { initial, readOnly, el, bytes, duration, clock, live, act, renderTable, summary, toast };
})();
