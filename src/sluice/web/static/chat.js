// The chat page: start a session through the native API, follow it through the page stream
// (server-rendered, sanitised HTML blocks), Stop, Retry, and resume after a dropped connection.
//
// The answer's HTML comes from the gateway already sanitised (markdown-it without raw HTML,
// then nh3); everything else the model says (reasoning, tool names and arguments, errors) is
// set as text, never as HTML.

const $ = (id) => document.getElementById(id);

const el = {
  form: $("composer"),
  model: $("model"),
  modelOther: $("model-other"),
  prompt: $("prompt"),
  send: $("send"),
  stop: $("stop"),
  connection: $("connection"),
  turn: $("turn"),
  turnPrompt: $("turn-prompt"),
  turnModel: $("turn-model"),
  turnSession: $("turn-session"),
  status: $("status"),
  ttft: $("ttft"),
  tpot: $("tpot"),
  rate: $("rate"),
  tokens: $("tokens"),
  reasoning: $("reasoning"),
  reasoningText: $("reasoning-text"),
  tools: $("tools"),
  answer: $("answer"),
  error: $("error"),
  errorTitle: $("error-title"),
  errorText: $("error-text"),
  retry: $("retry"),
};

const RECONNECT_MAX_MS = 10000;
// A viewer's page shows sessions but offers no Send, Stop or Retry (the gateway refuses them).
const MAY_ACT = el.form.dataset.mayAct !== "false";

/** Everything known about the turn on screen. */
const turn = {
  id: null,
  model: "",
  prompt: "",
  lastId: 0,
  state: "idle",
  ended: false,
  source: null,
  reconnectTimer: null,
  reconnects: 0,
  reasoning: "",
  reasoningCollapsed: false,
};

// -- connection -------------------------------------------------------------------------------

function setConnection(state, label = state) {
  el.connection.dataset.connection = state;
  el.connection.textContent = label;
}

function closeSource() {
  if (turn.source) {
    turn.source.close();
    turn.source = null;
  }
  clearTimeout(turn.reconnectTimer);
  turn.reconnectTimer = null;
}

/** Follow the session's page stream from event ``after`` (0: from the start). */
function follow(after) {
  closeSource();
  turn.ended = false;
  const url = `/chat/sessions/${encodeURIComponent(turn.id)}/stream` + (after ? `?after=${after}` : "");
  const source = new EventSource(url);
  turn.source = source;
  setConnection(turn.reconnects ? "reconnecting" : "connecting");
  source.onopen = () => {
    turn.reconnects = 0;
    setConnection("live");
  };
  source.addEventListener("update", (event) => {
    if (source !== turn.source) return;
    turn.lastId = Number(event.lastEventId) || turn.lastId;
    applyUpdate(JSON.parse(event.data));
  });
  source.addEventListener("end", (event) => {
    if (source !== turn.source) return;
    turn.ended = true;
    closeSource();
    setConnection("idle", "closed");
    applyEnd(JSON.parse(event.data));
  });
  source.onerror = () => {
    if (source !== turn.source || turn.ended) return;
    turn.reconnects += 1;
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (an HTTP error, a refused connection): try again ourselves,
      // from the last event shown, with a growing delay.
      const delay = Math.min(RECONNECT_MAX_MS, 500 * 2 ** Math.min(turn.reconnects, 5));
      setConnection("reconnecting", `reconnecting (${turn.reconnects})`);
      closeSource();
      turn.reconnectTimer = setTimeout(() => follow(turn.lastId), delay);
    } else {
      // The browser reconnects by itself and sends Last-Event-ID.
      setConnection("reconnecting", `reconnecting (${turn.reconnects})`);
    }
  };
}

// -- rendering --------------------------------------------------------------------------------

const PHASES = {
  waiting: () => "waiting for the model",
  thinking: () => "thinking",
  tool: (detail) => `using tool: ${detail || "?"}`,
};

function setState(state) {
  turn.state = state;
  el.turn.dataset.state = state;
  const live = state === "streaming" || state === "starting";
  el.stop.disabled = !live || !MAY_ACT;
  el.send.disabled = live || !MAY_ACT;
}

function applyUpdate(update) {
  // Answer blocks: keep the first ``base``, replace the rest.
  const answer = el.answer;
  while (answer.children.length > update.base) answer.lastElementChild.remove();
  for (const html of update.blocks) {
    const block = document.createElement("div");
    block.className = "md-block";
    block.innerHTML = html; // sanitised on the server
    answer.append(block);
  }
  // Reasoning: plain text, appended.
  turn.reasoning = turn.reasoning.slice(0, update.reasoning_from) + update.reasoning;
  if (turn.reasoning) {
    el.reasoning.hidden = false;
    el.reasoningText.textContent = turn.reasoning;
    if (!update.answering && update.state === "streaming" && !turn.reasoningCollapsed) {
      el.reasoning.open = true;
    }
  } else {
    el.reasoning.hidden = true;
    turn.reasoningCollapsed = false;
  }
  if ((update.answering || update.state !== "streaming") && el.reasoning.open && !turn.reasoningCollapsed) {
    el.reasoning.open = false;
    turn.reasoningCollapsed = true;
  }
  renderTools(update.tools);
  setState(update.state);
  if (update.state === "streaming") {
    hideError();
    const status = update.status;
    el.status.textContent = status ? (PHASES[status.phase] || (() => status.phase))(status.detail)
      : update.answering ? "answering" : "waiting for the model";
  } else {
    showEnding(update.state, update.error, update.finish_reason);
  }
  renderTelemetry(update.telemetry);
  el.turn.dataset.seq = String(update.seq);
}

function applyEnd(end) {
  setState(end.state);
  showEnding(end.state, end.error, end.finish_reason);
  renderTelemetry(end.telemetry);
}

function showEnding(state, error, finishReason) {
  if (state === "complete") {
    el.status.textContent = finishReason && finishReason !== "stop" ? `complete (${finishReason})` : "complete";
    hideError();
  } else if (state === "cancelled") {
    el.status.textContent = "stopped";
    showError("Stopped", "The answer was stopped; the text above is what arrived.", true);
  } else if (state === "errored") {
    el.status.textContent = "error";
    const kind = error && error.type ? error.type : "error";
    const message = error && error.message ? error.message : "the answer failed";
    showError(`The answer failed: ${kind}`, message, false);
  }
}

function showError(title, text, stopped) {
  el.errorTitle.textContent = title;
  el.errorText.textContent = text;
  el.error.classList.toggle("stopped", stopped);
  el.retry.hidden = !MAY_ACT;
  el.error.hidden = false;
}

function hideError() {
  el.error.hidden = true;
}

function renderTools(tools) {
  el.tools.hidden = !tools || tools.length === 0;
  if (el.tools.hidden) {
    el.tools.replaceChildren();
    return;
  }
  const items = tools.map((tool) => {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "tool-name";
    name.textContent = tool.name;
    const state = document.createElement("span");
    state.className = "badge";
    state.textContent = tool.status;
    const args = document.createElement("div");
    args.className = "tool-args";
    args.textContent = tool.arguments;
    li.append(name, " ", state, args);
    return li;
  });
  el.tools.replaceChildren(...items);
}

const formatMs = (value) => (value == null ? "–" : `${value >= 100 ? Math.round(value) : value.toFixed(1)} ms`);

function renderTelemetry(telemetry) {
  if (!telemetry) return;
  el.ttft.textContent = formatMs(telemetry.ttft_ms);
  el.tpot.textContent = formatMs(telemetry.tpot_ms);
  el.rate.textContent = telemetry.token_rate == null ? "–" : `${telemetry.token_rate.toFixed(1)} tok/s`;
  el.tokens.textContent = telemetry.output_tokens == null ? "–" : String(telemetry.output_tokens);
}

function resetTurn(model, prompt) {
  closeSource();
  Object.assign(turn, {
    id: null, model, prompt, lastId: 0, ended: false, reconnects: 0,
    reasoning: "", reasoningCollapsed: false,
  });
  el.turn.hidden = false;
  el.turnPrompt.textContent = prompt;
  el.turnModel.textContent = model;
  el.turnSession.textContent = "";
  el.turnSession.removeAttribute("href");
  el.answer.replaceChildren();
  el.reasoning.hidden = true;
  el.reasoning.open = false;
  el.reasoningText.textContent = "";
  el.tools.replaceChildren();
  el.tools.hidden = true;
  hideError();
  renderTelemetry({ ttft_ms: null, tpot_ms: null, token_rate: null, output_tokens: null });
  el.status.textContent = "starting";
  el.turn.dataset.seq = "0";
}

function showSession(id) {
  turn.id = id;
  el.turn.dataset.sessionId = id;
  el.turnSession.textContent = id;
  el.turnSession.href = `/ops/sessions/${encodeURIComponent(id)}`;
  const url = new URL(window.location.href);
  url.searchParams.set("session", id);
  window.history.replaceState(null, "", url);
}

// -- actions ----------------------------------------------------------------------------------

async function errorMessage(response) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function start(model, prompt) {
  resetTurn(model, prompt);
  setState("starting");
  setConnection("connecting");
  let response;
  try {
    response = await fetch("/api/sessions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model, prompt, disconnect_policy: "detach" }),
    });
  } catch (exc) {
    setConnection("failed", "offline");
    setState("errored");
    showError("The gateway could not be reached", String(exc), false);
    return;
  }
  if (!response.ok) {
    setConnection("idle");
    setState("errored");
    el.status.textContent = "refused";
    showError(`The request was refused (${response.status})`, await errorMessage(response), false);
    return;
  }
  const created = await response.json();
  showSession(created.id);
  setState("streaming");
  follow(0);
}

async function stop() {
  if (!turn.id) return;
  el.stop.disabled = true;
  el.status.textContent = "stopping";
  const response = await fetch(`/api/sessions/${encodeURIComponent(turn.id)}/cancel`, { method: "POST" });
  if (!response.ok) {
    showError("Stop failed", await errorMessage(response), false);
  }
}

async function retry() {
  if (!turn.id) {
    await start(turn.model, turn.prompt);
    return;
  }
  hideError();
  el.status.textContent = "retrying";
  const response = await fetch(`/api/sessions/${encodeURIComponent(turn.id)}/retry`, { method: "POST" });
  if (response.ok) {
    setState("streaming");
    follow(turn.lastId);
  } else {
    // No longer retryable here (forgotten, or not in a retryable state): a new session.
    await start(turn.model, turn.prompt);
  }
}

function chosenModel() {
  const other = el.modelOther.value.trim();
  return other || el.model.value;
}

el.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = el.prompt.value.trim();
  const model = chosenModel();
  if (!prompt || !model) return;
  start(model, prompt);
});
el.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    el.form.requestSubmit();
  }
});
el.stop.addEventListener("click", () => stop());
el.retry.addEventListener("click", () => retry());

// A page opened with ?session=ID follows that session (a reload keeps the turn on screen).
async function restore() {
  const id = new URL(window.location.href).searchParams.get("session");
  if (!id) return;
  const response = await fetch(`/api/sessions/${encodeURIComponent(id)}`);
  if (!response.ok) return;
  const record = await response.json();
  resetTurn(`${record.provider}/${record.model}`, record.prompt_preview || "");
  showSession(id);
  setState(record.state === "starting" ? "streaming" : record.state);
  follow(0);
}

restore();
document.documentElement.dataset.chatReady = "true";
