// The operations center (/ops) and a session's page (/ops/sessions/{id}).
//
// Each page opens one WebSocket to its feed. The server coalesces updates into flush windows
// and sends derived state only: a snapshot, then diffs (rows keyed by session id, only the
// fields that changed), each numbered. This script applies them to the server-rendered DOM.
// Everything the model or a provider says is set as text, never as HTML; the one HTML string
// used (a finished answer) was rendered and sanitised by the gateway.

import { renderSteps } from "/static/steps.js";

const $ = (id) => document.getElementById(id);

const GAP_TAIL = 30;
const SPARK_WIDTH = 64;
const SPARK_HEIGHT = 22;
const LIVE_STATES = new Set(["starting", "streaming", "finalizing"]);
const TERMINAL_STATES = new Set(["complete", "errored", "cancelled", "interrupted"]);
const RECONNECT_MAX_MS = 5000;
const LOGIN_ENDED = 4401; // the feed's close code when its key is revoked or expired
const NONE = "\u2013";

// -- formatting (the same as sluice/gateway/ops.py) --------------------------------------------

function sparkPoints(gaps) {
  if (!gaps || gaps.length === 0) return "";
  const top = Math.max(...gaps) || 1;
  const step = SPARK_WIDTH / Math.max(gaps.length - 1, 1);
  return gaps
    .map((g, i) => `${(i * step).toFixed(1)},${(SPARK_HEIGHT - 1 - (g / top) * (SPARK_HEIGHT - 2)).toFixed(1)}`)
    .join(" ");
}

const fmtMs = (v) => (v == null ? NONE : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(0)} ms`);
const fmtRate = (v) => (v == null ? NONE : `${v.toFixed(0)} t/s`);
const fmtPercent = (v) => (v == null ? NONE : `${(v * 100).toFixed(1)} %`);
const fmtSpend = (v) => `$${(v || 0).toFixed(6)}`;
const fmtOver = (n) => (n ? `of the last ${n} finished` : "no session finished yet");
const fmtCount = (n) => (n === 1 ? "1 session" : `${n} sessions`);
const fmtUnpriced = (n) => (n ? `+ ${n} at unknown price` : "since the gateway started");

function fmtTokens(row) {
  if (!row.limit) return String(row.tokens ?? 0);
  const approx = row.limit_source === "estimate" ? "~" : "";
  return `${row.tokens ?? 0} / ${approx}${row.limit}`;
}

function fmtCost(row) {
  if (!TERMINAL_STATES.has(row.state)) return NONE;
  return row.cost == null ? "unknown" : `$${row.cost.toFixed(6)}`;
}

function fmtRun(row) {
  if (row.step == null || !row.agent) return "";
  if (TERMINAL_STATES.has(row.state)) return `${row.agent} · ${row.step} step${row.step === 1 ? "" : "s"}`;
  return `${row.agent} · step ${row.step}`;
}

function fmtModelTitle(row) {
  const model = row.provider ? `${row.provider}/${row.model}` : "";
  if (row.step == null || !row.agent) return model;
  const steps = row.steps || 0;
  return `agent ${row.agent} on ${model}: step ${row.step}, ${steps} step${steps === 1 ? "" : "s"} ended`;
}

function setText(node, text) {
  if (node && node.textContent !== text) node.textContent = text;
}

// -- the feed connection -----------------------------------------------------------------------

/** One WebSocket to `path`, reconnected with a growing delay; `onMessage` gets parsed frames. */
function openFeed(path, onMessage, { onOpen, stopWhen } = {}) {
  const status = $("feed-status");
  let delay = 250;
  let socket = null;
  let stopped = false;

  const show = (state) => {
    if (!status) return;
    status.dataset.connection = state;
    setText(status, state);
  };

  function connect() {
    if (stopped) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}${path}`);
    show("connecting");
    socket.addEventListener("open", () => {
      delay = 250;
      show("live");
      if (onOpen) onOpen();
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      onMessage(message);
    });
    socket.addEventListener("close", (event) => {
      socket = null;
      if (event.code === LOGIN_ENDED) {
        // the key this page was opened with is revoked or expired: to the login page
        window.location.reload();
        return;
      }
      if (stopped || (stopWhen && stopWhen())) {
        show("final");
        return;
      }
      show("reconnecting");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    });
  }

  connect();
  return {
    restart() {
      stopped = false;
      if (socket) socket.close();
      else connect();
    },
    stop() {
      stopped = true;
      if (socket) socket.close();
    },
  };
}

function notice(text) {
  const node = $("ops-notice");
  if (!node) return;
  setText(node, text || "");
  node.hidden = !text;
}

/** Stop or retry through the native API; the feed shows the outcome. */
async function act(action, id, button) {
  button.disabled = true;
  notice("");
  try {
    const response = await fetch(`/api/sessions/${encodeURIComponent(id)}/${action}`, { method: "POST" });
    if (!response.ok) {
      let message = `${response.status}`;
      try {
        const body = await response.json();
        message = body.error?.message || message;
      } catch {
        // not JSON: keep the status
      }
      notice(`${action === "cancel" ? "Stop" : "Retry"} of ${id} failed: ${message}`);
      button.disabled = false;
      return false;
    }
    return true;
  } catch (error) {
    notice(`${action === "cancel" ? "Stop" : "Retry"} of ${id} failed: ${error}`);
    button.disabled = false;
    return false;
  }
}

// -- the operations center ---------------------------------------------------------------------

function opsCenter(table) {
  const tbody = $("ops-rows");
  const template = $("ops-row-template");
  const filterState = $("filter-state");
  const filterProvider = $("filter-provider");
  const count = $("ops-count");
  const empty = $("ops-empty");
  /** id -> {tr, data, cells} */
  const rows = new Map();
  let seq = null;
  let feed = null;

  const cellsOf = (tr) => {
    const cells = {};
    for (const node of tr.querySelectorAll("[data-field]")) cells[node.dataset.field] = node;
    cells.cancel = tr.querySelector('[data-action="cancel"]');
    cells.retry = tr.querySelector('[data-action="retry"]');
    return cells;
  };

  // Rows rendered by the server: adopt them, their data comes with the snapshot.
  for (const tr of tbody.querySelectorAll("tr[data-id]")) {
    rows.set(tr.dataset.id, { tr, data: { gaps: [] }, cells: cellsOf(tr) });
  }

  function render(entry) {
    const { tr, data, cells } = entry;
    tr.dataset.state = data.state;
    tr.dataset.provider = data.provider;
    setText(cells.link, data.id);
    cells.link.href = `/ops/sessions/${encodeURIComponent(data.id)}`;
    setText(cells.state, data.state);
    cells.state.className = `badge state state-${data.state}`;
    if (cells.node) setText(cells.node, data.node || "");
    setText(cells.provider, data.provider);
    setText(cells.model, data.model);
    const run = fmtRun(data);
    setText(cells.run, run);
    const modelCell = cells.model.closest("td");
    modelCell.classList.toggle("is-run", Boolean(run));
    modelCell.title = fmtModelTitle(data);
    setText(cells.prompt, data.prompt || "");
    cells.prompt.title = data.prompt || "";
    const progress = cells.progress;
    if (data.limit) {
      progress.max = data.limit;
      progress.value = Math.min(data.tokens, data.limit);
    } else {
      progress.removeAttribute("value");
    }
    setText(cells.tokens, fmtTokens(data));
    cells.spark.setAttribute("points", sparkPoints(data.gaps));
    setText(cells.rate, fmtRate(data.rate));
    setText(cells.ttft, fmtMs(data.ttft_ms));
    setText(cells.backpressure, data.backpressure || "");
    cells.backpressure.className = `badge bp bp-${data.backpressure || "low"}`;
    setText(cells.cost, fmtCost(data));
    setText(cells.reason, data.reason || "");
    cells.reason.title = data.message || "";
    if (cells.cancel) {
      // (a viewer's page has no Stop and Retry)
      cells.cancel.disabled = !LIVE_STATES.has(data.state) || data.state === "finalizing";
      cells.cancel.setAttribute("aria-label", `Stop ${data.id}`);
    }
    if (cells.retry) {
      cells.retry.disabled = data.state !== "errored" && data.state !== "cancelled";
      cells.retry.setAttribute("aria-label", `Retry ${data.id}`);
    }
    tr.hidden = !visible(data);
  }

  function visible(data) {
    const state = filterState.value;
    const provider = filterProvider.value;
    if (provider && data.provider !== provider) return false;
    if (!state) return true;
    if (state === "live") return LIVE_STATES.has(data.state);
    return data.state === state;
  }

  function upsert(id, change, whole) {
    let entry = rows.get(id);
    if (!entry) {
      const tr = template.content.firstElementChild.cloneNode(true);
      tr.dataset.id = id;
      tbody.prepend(tr);
      entry = { tr, data: { gaps: [] }, cells: cellsOf(tr) };
      rows.set(id, entry);
    }
    const data = whole ? { gaps: [] } : entry.data;
    const { gaps_add: added, ...fields } = change;
    Object.assign(data, fields);
    if (added) data.gaps = data.gaps.concat(added).slice(-GAP_TAIL);
    entry.data = data;
    render(entry);
  }

  function remove(id) {
    const entry = rows.get(id);
    if (entry) {
      entry.tr.remove();
      rows.delete(id);
    }
  }

  function smoothness(body, groups) {
    const rows = (groups || []).map((g) => {
      const tr = document.createElement("tr");
      const cells = [
        `${g.provider} / ${g.model}`,
        String(g.sessions),
        g.smoothness.toFixed(2),
        `${Math.round(g.burst_share * 100)}%`,
        String(g.stalls),
      ];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        if (i > 0) td.className = "num";
        td.textContent = text;
        tr.append(td);
      });
      return tr;
    });
    body.replaceChildren(...rows);
  }

  function totals(values) {
    for (const [key, value] of Object.entries(values || {})) {
      const node = document.querySelector(`[data-total="${key}"]`);
      if (!node) continue;
      if (key === "smoothness") {
        smoothness(node, value);
        continue;
      }
      const text = {
        error_rate: fmtPercent,
        spend: fmtSpend,
        errors_over: fmtOver,
        unpriced: fmtUnpriced,
      }[key];
      setText(node, text ? text(value) : String(value));
    }
  }

  function updateCount() {
    let shown = 0;
    for (const entry of rows.values()) if (!entry.tr.hidden) shown += 1;
    const total = fmtCount(rows.size);
    setText(count, shown === rows.size ? total : `${shown} of ${total}`);
    empty.hidden = rows.size > 0;
  }

  function apply(message) {
    if (message.type === "snapshot") {
      const keep = new Set(Object.keys(message.sessions));
      for (const id of [...rows.keys()]) if (!keep.has(id)) remove(id);
      for (const [id, row] of Object.entries(message.sessions)) upsert(id, row, true);
      totals(message.totals);
    } else if (message.type === "diff") {
      if (seq === null || message.seq !== seq + 1) {
        feed.restart(); // out of step: start again from a snapshot
        return;
      }
      for (const [id, change] of Object.entries(message.sessions)) upsert(id, change, false);
      for (const id of message.removed || []) remove(id);
      totals(message.totals);
    } else {
      return;
    }
    seq = message.seq;
    table.dataset.seq = String(seq);
    updateCount();
  }

  const refilter = () => {
    for (const entry of rows.values()) entry.tr.hidden = !visible(entry.data);
    updateCount();
  };
  filterState.addEventListener("change", refilter);
  filterProvider.addEventListener("change", refilter);

  tbody.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const id = button.closest("tr").dataset.id;
    act(button.dataset.action, id, button);
  });

  feed = openFeed("/ops/feed", apply, { onOpen: () => (seq = null) });
}

// -- one session's page ------------------------------------------------------------------------

function sessionPage(head) {
  const id = head.dataset.id;
  const answer = $("answer");
  const timeline = $("timeline");
  const stepsCard = $("steps-card");
  const stepsList = $("steps");
  const summary = $("summary");
  const stateBadge = head.querySelector('[data-field="state"]');
  const cancel = head.querySelector('[data-action="cancel"]');
  const retry = head.querySelector('[data-action="retry"]');
  const figures = {};
  for (const node of head.querySelectorAll(".live-figures [data-field]")) figures[node.dataset.field] = node;
  const row = { gaps: [] };
  let final = head.dataset.final === "true";
  let feed = null;

  function showState(state) {
    head.dataset.state = state;
    setText(stateBadge, state);
    stateBadge.className = `badge state state-${state}`;
    if (cancel) cancel.disabled = state !== "starting" && state !== "streaming";
    if (retry) retry.disabled = state !== "errored" && state !== "cancelled";
  }

  function showRow(change) {
    const { gaps_add: added, ...fields } = change;
    Object.assign(row, fields);
    if (added) row.gaps = row.gaps.concat(added).slice(-GAP_TAIL);
    setText(figures.tokens, fmtTokens(row));
    setText(figures.ttft, fmtMs(row.ttft_ms));
    setText(figures.rate, fmtRate(row.rate));
    setText(figures.backpressure, row.backpressure || "");
    figures.spark.setAttribute("points", sparkPoints(row.gaps));
    if (row.state) showState(row.state);
  }

  function showTimeline(entries) {
    const items = entries.map((entry) => {
      const li = document.createElement("li");
      li.className = `tl tl-${entry.kind.replaceAll(".", "-")}`;
      const seqNode = document.createElement("span");
      seqNode.className = "tl-seq mono";
      seqNode.textContent = entry.count > 1 ? `#${entry.seq}\u2013${entry.to}` : `#${entry.seq}`;
      const label = document.createElement("span");
      label.className = "tl-label";
      label.textContent = entry.count ? `${entry.label} \u00d7 ${entry.count}` : entry.label;
      li.append(seqNode, " ", label);
      return li;
    });
    timeline.replaceChildren(...items);
  }

  async function showFinal() {
    final = true;
    head.dataset.final = "true";
    const response = await fetch(`/ops/sessions/${encodeURIComponent(id)}/summary`);
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const answerHtml = doc.querySelector('template[data-part="answer"]');
    if (answerHtml) {
      answer.className = "prose";
      answer.replaceChildren(answerHtml.content.cloneNode(true));
      answerHtml.remove();
    }
    summary.replaceChildren(...doc.body.childNodes);
  }

  function apply(message) {
    if (message.error) return;
    if (message.type === "snapshot") {
      answer.className = "answer-live";
      row.gaps = [];
    }
    if (message.text !== undefined) setText(answer, message.text);
    if (message.text_add) answer.append(message.text_add);
    if (message.timeline) showTimeline(message.timeline);
    if (message.steps) {
      stepsCard.hidden = message.steps.length === 0;
      renderSteps(stepsList, message.steps);
    }
    if (message.row) showRow(message.row);
    if (message.type === "final") {
      showState(message.record.state);
      showFinal();
    }
  }

  function follow() {
    final = false;
    head.dataset.final = "false";
    if (feed) feed.restart();
    else feed = openFeed(`/ops/sessions/${encodeURIComponent(id)}/feed`, apply, { stopWhen: () => final });
  }

  // Stop and Retry are on the page only for a role that may use them.
  if (cancel) cancel.addEventListener("click", () => act("cancel", id, cancel));
  if (retry) retry.addEventListener("click", async () => {
    if (await act("retry", id, retry)) {
      const heading = document.createElement("h2");
      heading.id = "summary-heading";
      heading.textContent = "Telemetry";
      const note = document.createElement("p");
      note.className = "muted";
      note.textContent = "The final telemetry appears here when the session ends.";
      summary.replaceChildren(heading, note);
      follow();
    }
  });

  if (!final) follow();
}

const opsTable = $("ops-table");
if (opsTable) opsCenter(opsTable);
const sessionHead = $("session");
if (sessionHead) sessionPage(sessionHead);
