/* colopp dashboard: sign-in, the live stream, tiles and uPlot charts.
 *
 * Auth: the API token is asked for once, kept in sessionStorage (this tab only) and sent as
 * an Authorization header: with fetch() for JSON, and for the live stream too, which is read
 * with fetch() and a stream reader (EventSource cannot send headers; the token never goes
 * into a URL).
 */
"use strict";

(function () {
  const TOKEN_KEY = "colopp.dashboard.token";
  const GLYPHS = {
    protected: "✔", error: "✖", failing_over: "⚠", failed_over: "⚠", unprotected: "○",
    unprotecting: "…", starting: "…", syncing: "…", reprotecting: "…",
  };

  const S = {
    token: sessionStorage.getItem(TOKEN_KEY),
    protections: [],
    selected: null,
    range: 900,
    zoom: null,
    samples: [],
    events: [],
    lastSampleT: 0,
    lastEventId: 0,
    failovers: 0,
    switchovers: 0,
    countedThrough: 0,
    clockOffset: 0,
    streamCtl: null,
    charts: {},
    dirty: false,
    derived: null,
  };

  const $ = (sel) => document.querySelector(sel);
  const serverNow = () => Date.now() / 1000 + S.clockOffset;

  // ---------------------------------------------------------------- formatting
  const { fmtTime, fmtNum } = ColoppCharts;
  function fmtAgo(seconds) {
    if (seconds < 0) seconds = 0;
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }
  function setTile(id, value, sub) {
    const tile = document.getElementById(id);
    tile.querySelector(".value").textContent = value;
    tile.querySelector(".tile-sub").textContent = sub || "";
  }

  // ---------------------------------------------------------------- auth and fetch
  function authHeaders() {
    return { Authorization: `Bearer ${S.token}`, Accept: "application/json" };
  }

  class AuthError extends Error {}

  async function getJSON(path) {
    const resp = await fetch(path, { headers: authHeaders(), cache: "no-store" });
    if (resp.status === 401) throw new AuthError("the token was refused");
    if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
    return resp.json();
  }

  function showLogin(message) {
    stopStream();
    S.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("#board").hidden = true;
    $("#signout").hidden = true;
    $("#login").hidden = false;
    $("#login-error").textContent = message || "";
    setLive("off", "not connected");
    $("#token").focus();
  }

  async function signIn(token) {
    S.token = token;
    try {
      const list = await getJSON("/v1/protections");
      sessionStorage.setItem(TOKEN_KEY, token);
      $("#login").hidden = true;
      $("#board").hidden = false;
      $("#signout").hidden = false;
      applyProtections(list.protections);
      startStream();
    } catch (err) {
      showLogin(err instanceof AuthError ? "That token was refused." : `Cannot reach the API: ${err.message}`);
    }
  }

  // ---------------------------------------------------------------- live stream (SSE over fetch)
  function setLive(mode, text) {
    const el = $("#live");
    el.dataset.live = mode;
    el.textContent = (mode === "on" ? "● " : mode === "retry" ? "◌ " : "○ ") + text;
  }

  function stopStream() {
    if (S.streamCtl) S.streamCtl.abort();
    S.streamCtl = null;
  }

  function resetData() {
    S.samples = [];
    S.events = [];
    S.lastSampleT = 0;
    S.lastEventId = 0;
    S.failovers = S.switchovers = S.countedThrough = 0;
    S.zoom = null;
    $("#unzoom").hidden = true;
    S.dirty = true;
  }

  function startStream() {
    stopStream();
    const ctl = new AbortController();
    S.streamCtl = ctl;
    followStream(ctl.signal);
  }

  function wait(ms, signal) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }

  async function followStream(signal) {
    let backoff = 1000;
    while (!signal.aborted) {
      const params = new URLSearchParams();
      if (S.selected) params.set("protection", S.selected);
      if (S.lastSampleT || S.lastEventId) {
        params.set("since", String(S.lastSampleT));
        params.set("after", String(S.lastEventId));
      } else {
        params.set("window", String(S.range + 60));
      }
      try {
        const resp = await fetch(`/dashboard/stream?${params}`, {
          headers: { ...authHeaders(), Accept: "text/event-stream" },
          cache: "no-store",
          signal,
        });
        if (resp.status === 401) { showLogin("The token was refused."); return; }
        if (resp.status === 404 && S.selected) { S.selected = null; resetData(); continue; }
        if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
        setLive("on", "live");
        backoff = 1000;
        await readEvents(resp.body, signal);
      } catch (err) {
        if (signal.aborted) return;
        setLive("retry", `reconnecting (${err.message})`);
        await wait(backoff, signal);
        backoff = Math.min(backoff * 2, 10000);
      }
    }
  }

  async function readEvents(body, signal) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    signal.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        dispatch(block);
      }
    }
  }

  function dispatch(block) {
    let kind = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) kind = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (!data.length) return;
    const payload = JSON.parse(data.join("\n"));
    if (kind === "hello") onHello(payload);
    else if (kind === "protections") applyProtections(payload.protections);
    else if (kind === "samples") onSamples(payload.samples);
    else if (kind === "events") onEvents(payload.events);
  }

  function onHello(h) {
    S.clockOffset = h.now - Date.now() / 1000;
    S.failovers = h.failovers;
    S.switchovers = h.switchovers;
    S.countedThrough = h.counted_through;
    S.dirty = true;
  }

  function onSamples(samples) {
    for (const s of samples) {
      if (s.t > S.lastSampleT) { S.samples.push(s); S.lastSampleT = s.t; }
    }
    S.dirty = true;
  }

  function onEvents(events) {
    for (const e of events) {
      if (e.id <= S.lastEventId) continue;
      S.lastEventId = e.id;
      S.events.push(e);
      if (e.id > S.countedThrough) {
        if (e.type === "failover") S.failovers++;
        if (e.type === "switchover") S.switchovers++;
      }
    }
    S.dirty = true;
  }

  // ---------------------------------------------------------------- protections and tiles
  function current() {
    return S.protections.find((p) => p.id === S.selected) || null;
  }

  function applyProtections(list) {
    S.protections = list;
    const select = $("#protection");
    const ids = list.map((p) => p.id);
    if (!S.selected || !ids.includes(S.selected)) {
      const fromHash = new URLSearchParams(location.hash.slice(1)).get("p");
      // Else the oldest protection still at work, else the newest one.
      const working = list.find((p) => !p.stopped && p.state !== "error");
      const pick = ids.includes(fromHash) ? fromHash : (working || list[list.length - 1] || {}).id;
      if (pick && pick !== S.selected) {
        S.selected = pick;
        resetData();
        if (S.streamCtl) startStream();
      }
    }
    select.replaceChildren(...(list.length ? list.map((p) => {
      const opt = document.createElement("option");
      opt.value = p.id;
      opt.textContent = `${p.name} · ${p.state} (${p.placement}, ${p.id})`;
      opt.selected = p.id === S.selected;
      return opt;
    }) : [new Option("no protections yet", "")]));
    select.disabled = !list.length;
    $("#no-protection").hidden = list.length > 0;
    renderTiles();
  }

  function renderTiles() {
    const p = current();
    const stateTile = $("#tile-state");
    if (!p) {
      stateTile.dataset.state = "unknown";
      stateTile.querySelector(".glyph").textContent = "";
      for (const id of ["tile-state", "tile-primary", "tile-checkpoint", "tile-prerelease",
        "tile-passthrough", "tile-failovers"]) {
        setTile(id, "–", "");
      }
      return;
    }
    stateTile.dataset.state = p.state;
    stateTile.querySelector(".glyph").textContent = GLYPHS[p.state] || "";
    // When it entered this state: the newest state event in view that led there.
    const entered = S.events.filter((e) => e.type === "state" && e.data && e.data.target === p.state).pop();
    setTile("tile-state", p.state,
      p.reason || (p.stopped ? "stopped" : entered ? `since ${fmtTime(entered.t)}` : ""));
    setTile("tile-primary", p.primary ? p.primary.host : "none",
      p.secondary ? `secondary: ${p.secondary.host}` : "no secondary");
    renderCheckpointTile();
    const opts = p.options || {};
    // The newest sample's comparator counters, else the API's (the same counters).
    const latest = S.samples.length ? S.samples[S.samples.length - 1].comparator : null;
    const c = latest || p.counters || {};
    if (opts.comparator === "builtin") {
      setTile("tile-prerelease", "n/a", "QEMU's colo-compare does not pre-release");
    } else if (!opts.prerelease) {
      setTile("tile-prerelease", "off", "pre-release disabled for this protection");
    } else if (!c.released) {
      setTile("tile-prerelease", "–", "no frames released yet");
    } else {
      const ratio = (100 * (c.prereleased || 0)) / c.released;
      setTile("tile-prerelease", `${ratio.toFixed(1)} %`, `${c.prereleased || 0} of ${c.released} frames`);
    }
    renderPassthroughTile(opts, c);
    const last = ColoppSeries.markers(S.events).pop();
    setTile("tile-failovers", String(S.failovers),
      `${S.switchovers} switchover${S.switchovers === 1 ? "" : "s"}` +
      (last ? ` · last ${last.kind} ${fmtTime(last.t)}` : ""));
  }

  // Frames the comparator could not compare and released as they came, by EtherType:
  // nothing passes uncompared silently.
  function renderPassthroughTile(opts, c) {
    if (opts.comparator === "builtin") {
      setTile("tile-passthrough", "n/a", "QEMU's colo-compare passes everything but IPv4 uncompared");
      return;
    }
    const byType = c.passthrough_by_ethertype;
    if (!byType) {
      setTile("tile-passthrough", "–", "no comparator counters yet");
      return;
    }
    const parts = Object.keys(byType).sort().map((t) => `${t}: ${byType[t]}`);
    const control = c.passthrough_ipv6_control || 0;
    if (control) parts.push(`IPv6 ND/MLD: ${control}`);
    const total = Object.values(byType).reduce((a, b) => a + b, 0);
    setTile("tile-passthrough", String(total),
      parts.length ? parts.join(" · ") : "every frame compared");
  }

  function renderCheckpointTile() {
    const p = current();
    if (!p) return;
    if (p.last_checkpoint_at == null) {
      setTile("tile-checkpoint", "–", "no checkpoints yet");
    } else {
      setTile("tile-checkpoint", fmtAgo(serverNow() - p.last_checkpoint_at),
        `${p.checkpoints} checkpoints by this primary`);
    }
  }

  // ---------------------------------------------------------------- charts
  const PANELS = {
    checkpoints: { unit: "per min", empty: "no checkpoints yet" },
    pauses: { unit: "ms", empty: "no checkpoints yet" },
    divergences: { unit: "per min", empty: "no divergences" },
    hold: { unit: "ms", empty: "no held packets yet" },
    packets: { unit: "frames/s", empty: "no packets compared yet" },
    cpu: { unit: "% of a core", empty: "no CPU figures yet" },
  };

  function xRange() {
    if (S.zoom) return S.zoom;
    const now = serverNow();
    return [now - S.range, now];
  }

  function unzoom() {
    S.zoom = null;
    $("#unzoom").hidden = true;
    S.dirty = true;
  }

  /** The charts' shared view: time range, markers, zoom. */
  const VIEW = {
    xRange,
    markers: () => ColoppSeries.markers(S.events),
    onZoom: (range) => { S.zoom = range; $("#unzoom").hidden = false; S.dirty = true; },
    onUnzoom: () => unzoom(),
  };

  function drawChart(name, ts, series, emptyText, note) {
    S.charts[name] = S.charts[name] || new ColoppCharts.Panel(name, PANELS[name].unit, VIEW);
    S.charts[name].draw(ts, series, emptyText, note);
  }

  function waitingText() {
    const p = current();
    if (!p) return "no protection selected";
    if (!S.samples.length) {
      return p.stopped ? "no samples in this range (stopped)" : `no samples yet (${p.state})`;
    }
    return null;
  }

  function render() {
    const cutoff = serverNow() - S.range - 120;
    if (!S.zoom && S.samples.length && S.samples[0].t < cutoff) {
      S.samples = S.samples.filter((s) => s.t >= cutoff);
    }
    S.events = S.events.filter((e) => e.t >= cutoff || e.type === "failover" || e.type === "switchover");
    const d = ColoppSeries.derive(S.samples);
    S.derived = d;
    const waiting = waitingText();
    const p = current() || { options: {} };
    const builtin = (p.options || {}).comparator === "builtin";
    drawChart("checkpoints", d.ts, d.checkpoints.series,
      waiting || (d.checkpoints.total ? null : PANELS.checkpoints.empty),
      `${d.checkpoints.total} checkpoints in view`);
    drawChart("pauses", d.ts, d.pauses.series,
      waiting || (d.pauses.count ? null : PANELS.pauses.empty), `${d.pauses.count} pauses measured`);
    drawChart("divergences", d.ts, d.divergences.series,
      waiting || (builtin ? "QEMU's colo-compare reports no divergence reasons" :
        d.divergences.total ? null : PANELS.divergences.empty),
      `${d.divergences.total} in view`);
    drawChart("hold", d.ts, d.hold.series,
      waiting || (builtin ? "QEMU's colo-compare reports no hold times" :
        d.hold.held ? null : PANELS.hold.empty), "primary frames, arrival to release");
    drawChart("packets", d.ts, d.packets.series,
      waiting || (builtin ? "QEMU's colo-compare reports no packet counters" :
        d.packets.total ? null : PANELS.packets.empty), "10 s average");
    drawChart("cpu", d.ts, d.cpu.series,
      waiting || (d.cpu.known ? null : "no CPU figures (lab placement only)"), "5 s average");
    const cp = $("#panel-checkpoints");
    cp.dataset.checkpoints = String(d.checkpoints.total);
    cp.dataset.samples = String(S.samples.length);
    cp.dataset.lastT = String(S.lastSampleT);
    renderTiles();
    renderIncidents();
    renderEvents();
  }

  function renderIncidents() {
    const list = ColoppSeries.markers(S.events);
    $("#incidents").replaceChildren(...list.map((m) => {
      const li = document.createElement("li");
      li.dataset.kind = m.kind;
      li.textContent = `${fmtTime(m.t)} ${m.text}`;
      return li;
    }));
    $("#incidents-empty").hidden = list.length > 0;
  }

  function describe(e) {
    const d = e.data || {};
    switch (e.type) {
      case "state": return `${d.source || "–"} → ${d.target}${d.reason ? ` (${d.reason})` : ""}`;
      case "checkpoint": return `${d.reason}, pause ${fmtNum(d.pause_ms)} ms`;
      case "divergence": return `${d.reason} ×${d.count}`;
      case "progress": return d.message || "";
      case "failover":
      case "switchover":
        return `${d.role || "primary"} ${d.host || "?"} (${d.health || "?"})` +
          (d.failover_ms != null ? `, failover ${fmtNum(d.failover_ms, 0)} ms` : "") +
          (d.error ? `, error: ${d.error}` : "");
      default: return JSON.stringify(d);
    }
  }

  function renderEvents() {
    const rows = S.events.filter((e) => e.type !== "checkpoint").slice(-14).reverse();
    const last = S.events.filter((e) => e.type === "checkpoint").pop();
    if (last) rows.unshift(last);
    $("#events").replaceChildren(...rows.map((e) => {
      const tr = document.createElement("tr");
      for (const text of [fmtTime(e.t), e.type, describe(e)]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      return tr;
    }));
  }

  function tick() {
    if (!$("#board").hidden) {
      if (S.dirty) { S.dirty = false; render(); } else { slide(); }
    }
    requestAnimationFrame(() => setTimeout(tick, 250));
  }

  /** Between data, the time axis keeps moving and the checkpoint age keeps counting. */
  function slide() {
    if (!S.zoom) for (const panel of Object.values(S.charts)) panel.slide();
    renderCheckpointTile();
  }

  function resize() {
    for (const panel of Object.values(S.charts)) panel.resize();
  }

  // ---------------------------------------------------------------- wiring
  function init() {
    $("#login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      signIn($("#token").value.trim());
      $("#token").value = "";
    });
    $("#signout").addEventListener("click", () => showLogin("Token forgotten."));
    $("#unzoom").addEventListener("click", unzoom);
    $("#protection").addEventListener("change", (ev) => {
      S.selected = ev.target.value || null;
      history.replaceState(null, "", S.selected ? `#p=${S.selected}` : "#");
      resetData();
      renderTiles();
      startStream();
    });
    $("#range").addEventListener("change", (ev) => {
      S.range = Number(ev.target.value);
      resetData();
      startStream();
    });
    window.addEventListener("resize", resize);
    window.coloppDashboard = { state: S, render: () => render() };
    if (S.token) signIn(S.token); else showLogin("");
    tick();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
