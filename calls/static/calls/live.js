// The live monitor (/live/ and /live/<call_id>/): state from the /ws/calls/ socket.
//
// The server sends a snapshot on every connect, then each call's whole state as it
// changes, with a version that grows with every committed write. So this page never
// appends: it replaces a call when a newer version arrives, and replaces everything on a
// snapshot. A reconnect (server restart, network blip) therefore resyncs without losing or
// repeating a turn. Text goes in through textContent only: transcripts are caller speech.
(function () {
  "use strict";

  const config = JSON.parse(document.getElementById("live-config").textContent);
  const RETRY_DELAYS_MS = [500, 1000, 2000, 5000, 10000];
  const FINISHED_SHOWN = 10;
  const ROLES = { agent: "Agent", user: "User" };

  const calls = new Map();
  let clockOffsetMs = 0; // server clock minus this browser's, so durations agree
  let failedAttempts = 0;

  // --- the socket ---------------------------------------------------------------------

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(scheme + "://" + window.location.host + config.socket);
    socket.addEventListener("open", function () {
      failedAttempts = 0;
      showConnection("live", "Live");
    });
    socket.addEventListener("message", function (event) {
      receive(JSON.parse(event.data));
    });
    socket.addEventListener("close", function () {
      const delay = RETRY_DELAYS_MS[Math.min(failedAttempts, RETRY_DELAYS_MS.length - 1)];
      failedAttempts += 1;
      showConnection("reconnecting", "Reconnecting…");
      window.setTimeout(connect, delay);
    });
  }

  function receive(message) {
    if (message.type === "snapshot") {
      clockOffsetMs = Date.parse(message.server_time) - Date.now();
      calls.clear();
      message.calls.forEach(function (call) {
        calls.set(call.call_id, call);
      });
      render();
    } else if (message.type === "call") {
      const known = calls.get(message.call.call_id);
      // Updates can cross each other (two servers, a resync): keep the newest.
      if (!known || message.call.version >= known.version) {
        calls.set(message.call.call_id, message.call);
        render();
      }
    }
  }

  function showConnection(state, label) {
    const badge = document.getElementById("live-connection");
    badge.dataset.state = state;
    badge.textContent = label;
  }

  // --- formatting ---------------------------------------------------------------------

  function pad(number) {
    return String(number).padStart(2, "0");
  }

  function formatDuration(ms) {
    const seconds = Math.max(0, Math.floor(ms / 1000));
    const hours = Math.floor(seconds / 3600);
    const minutes = Math.floor((seconds % 3600) / 60);
    const rest = pad(seconds % 60);
    return hours ? hours + ":" + pad(minutes) + ":" + rest : minutes + ":" + rest;
  }

  function durationMs(call) {
    const start = Date.parse(call.started_at || call.first_seen_at);
    if (call.duration_ms !== null) return call.duration_ms;
    if (call.ended_at) return Date.parse(call.ended_at) - start;
    if (call.finished) return null;
    return Date.now() + clockOffsetMs - start;
  }

  function durationText(call) {
    const ms = durationMs(call);
    return ms === null || Number.isNaN(ms) ? "—" : formatDuration(ms);
  }

  function startedMs(call) {
    return Date.parse(call.started_at || call.first_seen_at) || 0;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function statusBadge(call) {
    const badge = element("span", "live-status", call.status || "unknown");
    badge.dataset.status = call.status || "unknown";
    return badge;
  }

  function transcriptItems(list, call) {
    list.start = call.first_turn + 1;
    list.replaceChildren.apply(
      list,
      call.turns.map(function (turn) {
        const item = element("li", "live-turn");
        item.dataset.role = turn.role;
        item.append(
          element("span", "live-role", ROLES[turn.role] || turn.role),
          element("span", "live-text", turn.content)
        );
        return item;
      })
    );
  }

  // --- the list page ------------------------------------------------------------------

  function card(call) {
    const item = element("li", "live-card");
    item.dataset.callId = call.call_id;
    const head = element("div", "live-card-head");
    const link = element("a", "live-call-id", call.call_id);
    link.href = call.url;
    head.append(link, statusBadge(call));
    const meta = element("div", "live-card-meta");
    const duration = element("span", "live-duration", durationText(call));
    duration.dataset.duration = call.call_id;
    meta.append(
      element("span", "live-agent", call.agent || "unknown agent"),
      duration,
      element("span", "live-turn-count", call.turn_count + (call.turn_count === 1 ? " turn" : " turns"))
    );
    const transcript = element("ol", "live-transcript");
    transcriptItems(transcript, call);
    item.append(head, meta, transcript);
    item.addEventListener("click", function (event) {
      if (!event.target.closest("a")) window.location.assign(call.url);
    });
    return item;
  }

  function fillList(kind, shown) {
    document.getElementById("live-" + kind).replaceChildren.apply(
      document.getElementById("live-" + kind),
      shown.map(card)
    );
    document.getElementById("live-" + kind + "-count").textContent = shown.length;
    document.getElementById("live-" + kind + "-empty").hidden = shown.length > 0;
  }

  function renderList() {
    const all = Array.from(calls.values());
    const ongoing = all.filter((call) => !call.finished).sort((a, b) => startedMs(b) - startedMs(a));
    const finished = all
      .filter((call) => call.finished)
      .sort((a, b) => (Date.parse(b.ended_at) || startedMs(b)) - (Date.parse(a.ended_at) || startedMs(a)));
    // Only the last few finished calls stay, in the page and in memory.
    finished.slice(FINISHED_SHOWN).forEach((call) => calls.delete(call.call_id));
    fillList("ongoing", ongoing);
    fillList("finished", finished.slice(0, FINISHED_SHOWN));
  }

  // --- one call's page ----------------------------------------------------------------

  function renderCall(section) {
    const call = calls.get(section.dataset.callId);
    if (!call) return;
    const field = (name) => section.querySelector('[data-field="' + name + '"]');
    field("status").replaceWith(statusBadge(call));
    section.querySelector(".live-status").dataset.field = "status";
    field("agent").textContent = call.agent || "unknown agent";
    field("direction").textContent = call.direction || "—";
    field("duration").textContent = durationText(call);
    field("duration").dataset.duration = call.call_id;
    field("turn_count").textContent = call.turn_count;
    field("admin_url").href = call.admin_url;
    field("admin_url").hidden = false;
    field("no-turns").hidden = call.turns.length > 0;
    transcriptItems(field("turns"), call);
  }

  function render() {
    const section = document.getElementById("live-call");
    if (section) renderCall(section);
    else renderList();
  }

  // The durations of calls in progress tick here; nothing is fetched for it.
  function tick() {
    document.querySelectorAll("[data-duration]").forEach(function (node) {
      const call = calls.get(node.dataset.duration);
      if (call && !call.finished) node.textContent = durationText(call);
    });
  }

  connect();
  window.setInterval(tick, 1000);
})();
