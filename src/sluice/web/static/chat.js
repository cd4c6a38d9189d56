// The chat page: a conversation of turns, each an agent's run or a plain model's turn, each
// followed through the page stream (server-rendered, sanitised HTML blocks); Stop, Retry, and
// resume after a dropped connection; the conversation restored from the address on a reload.
//
// Every turn goes to POST /api/conversations/{id}/turns (the gateway keeps the history; a
// model's turn is a run with no tools and one step). Under `[store] keep_content = false` the
// gateway keeps no history: each turn then starts on its own (an agent's run, or a session).
//
// The answer's HTML comes from the gateway already sanitised (markdown-it without raw HTML,
// then nh3); everything else the model or a tool says (reasoning, tool names, arguments,
// results, errors) is set as text, never as HTML.

import { progressText, renderSteps, stepsSummary } from "/static/steps.js";

const $ = (id) => document.getElementById(id);

const composer = {
  form: $("composer"),
  agent: $("agent"),
  model: $("model"),
  modelOther: $("model-other"),
  prompt: $("prompt"),
  send: $("send"),
  stop: $("stop"),
  fresh: $("new-conversation"),
  connection: $("connection"),
};
const conversationNode = $("conversation");
const turnsNode = $("turns");
const template = $("turn-template");

const RECONNECT_MAX_MS = 10000;
// A viewer's page shows sessions but offers no Send, Stop or Retry (the gateway refuses them).
const MAY_ACT = composer.form.dataset.mayAct !== "false";
// Whether the gateway keeps conversations' history.
const KEPT = composer.form.dataset.keepContent !== "false";

const conversation = { id: null };
/** The turns on the page, oldest first; the last is the one Stop and the ids address. */
const turns = [];
const latest = () => turns[turns.length - 1] || null;

function setConnection(state, label = state) {
  composer.connection.dataset.connection = state;
  composer.connection.textContent = label;
}

// -- status -----------------------------------------------------------------------------------

const PHASES = {
  waiting: () => "Thinking…",
  thinking: () => "Thinking…",
  tool: (detail) => `Using tool: ${detail || "?"}…`,
};

function statusText(status) {
  const phase = PHASES[status.phase];
  const main = phase ? phase(status.detail) : `${status.phase}…`;
  const progress = progressText(status.progress);
  return progress ? `${main} ${progress}` : main;
}

// -- one turn ---------------------------------------------------------------------------------

class Turn {
  constructor(prompt, model, agent) {
    this.root = template.content.firstElementChild.cloneNode(true);
    this.part = {};
    for (const element of [this.root, ...this.root.querySelectorAll("[data-part]")]) {
      this.part[element.dataset.part] = element;
    }
    Object.assign(this, {
      id: null,
      prompt,
      model,
      agent,
      lastId: 0,
      state: "idle",
      ended: false,
      source: null,
      reconnectTimer: null,
      reconnects: 0,
      reasoning: "",
      reasoningCollapsed: false,
      stepsCollapsed: false,
      // a turn restored from history gives up when its stream cannot be had
      persistent: true,
      whenEnded: null,
      settle: null,
    });
    this.whenEnded = new Promise((resolve) => (this.settle = resolve));
    const p = this.part;
    p["turn-prompt"].textContent = prompt;
    p["turn-model"].textContent = model;
    p["turn-agent"].hidden = !agent;
    p["turn-agent"].textContent = agent ? `agent ${agent} ·` : "";
    p.retry.addEventListener("click", () => retry(this));
  }

  /** The latest turn's parts carry their names as ids (#turn, #status, #answer…). */
  name(on) {
    for (const [key, element] of Object.entries(this.part)) {
      if (on) element.id = key;
      else element.removeAttribute("id");
    }
  }

  get current() {
    return this === latest();
  }

  showSession(id) {
    this.id = id;
    this.root.dataset.sessionId = id;
    this.part["turn-session"].textContent = id;
    this.part["turn-session"].href = `/ops/sessions/${encodeURIComponent(id)}`;
  }

  setConnection(state, label = state) {
    if (this.current) setConnection(state, label);
  }

  setState(state) {
    this.state = state;
    this.root.dataset.state = state;
    if (this.current) controls();
  }

  setStatus(text, phase) {
    const status = this.part.status;
    if (status.textContent !== text) status.textContent = text;
    status.dataset.phase = phase;
  }

  closeSource() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  finish() {
    this.ended = true;
    this.closeSource();
    this.settle();
  }

  /** Follow the session's page stream from event ``after`` (0: from the start). */
  follow(after) {
    this.closeSource();
    this.ended = false;
    const url = `/chat/sessions/${encodeURIComponent(this.id)}/stream` + (after ? `?after=${after}` : "");
    const source = new EventSource(url);
    this.source = source;
    this.setConnection(this.reconnects ? "reconnecting" : "connecting");
    source.onopen = () => {
      this.reconnects = 0;
      this.setConnection("live");
    };
    source.addEventListener("update", (event) => {
      if (source !== this.source) return;
      this.lastId = Number(event.lastEventId) || this.lastId;
      this.applyUpdate(JSON.parse(event.data));
    });
    source.addEventListener("end", (event) => {
      if (source !== this.source) return;
      this.finish();
      this.setConnection("idle", "closed");
      this.applyEnd(JSON.parse(event.data));
    });
    source.onerror = () => {
      if (source !== this.source || this.ended) return;
      this.reconnects += 1;
      if (source.readyState === EventSource.CLOSED) {
        if (!this.persistent) {
          // an earlier turn whose session the gateway no longer holds
          this.finish();
          this.setStatus("Not kept", "gone");
          return;
        }
        // The browser gave up (an HTTP error, a refused connection): try again ourselves,
        // from the last event shown, with a growing delay.
        const delay = Math.min(RECONNECT_MAX_MS, 500 * 2 ** Math.min(this.reconnects, 5));
        this.setConnection("reconnecting", `reconnecting (${this.reconnects})`);
        this.closeSource();
        this.reconnectTimer = setTimeout(() => this.follow(this.lastId), delay);
      } else {
        // The browser reconnects by itself and sends Last-Event-ID.
        this.setConnection("reconnecting", `reconnecting (${this.reconnects})`);
      }
    };
  }

  applyUpdate(update) {
    const p = this.part;
    // Answer blocks: keep the first ``base``, replace the rest.
    const answer = p.answer;
    while (answer.children.length > update.base) answer.lastElementChild.remove();
    for (const html of update.blocks) {
      const block = document.createElement("div");
      block.className = "md-block";
      block.innerHTML = html; // sanitised on the server
      answer.append(block);
    }
    // Reasoning: plain text, appended.
    this.reasoning = this.reasoning.slice(0, update.reasoning_from) + update.reasoning;
    if (this.reasoning) {
      p.reasoning.hidden = false;
      p["reasoning-text"].textContent = this.reasoning;
      if (!update.answering && update.state === "streaming" && !this.reasoningCollapsed) {
        p.reasoning.open = true;
      }
    } else {
      p.reasoning.hidden = true;
      this.reasoningCollapsed = false;
    }
    if ((update.answering || update.state !== "streaming") && p.reasoning.open && !this.reasoningCollapsed) {
      p.reasoning.open = false;
      this.reasoningCollapsed = true;
    }
    if (update.steps) this.renderSteps(update.steps, update.state);
    this.renderTools(update.tools);
    this.setState(update.state);
    if (update.state === "streaming") {
      this.hideError();
      const status = update.status;
      if (status) this.setStatus(statusText(status), status.phase);
      else if (update.answering) this.setStatus("Answering…", "answering");
      else this.setStatus("Thinking…", "waiting");
    } else {
      this.showEnding(update.state, update.error, update.finish_reason);
    }
    this.renderTelemetry(update.telemetry);
    this.root.dataset.seq = String(update.seq);
  }

  applyEnd(end) {
    this.setState(end.state);
    this.showEnding(end.state, end.error, end.finish_reason);
    this.renderTelemetry(end.telemetry);
  }

  /** The run's steps: open while it runs, closed once its answer is complete. */
  renderSteps(steps, state) {
    const p = this.part;
    // (a run that answered in one step without tools, a model's turn say, has none to show)
    p.steps.hidden = !(steps.length > 1 || steps.some((step) => step.calls.length));
    if (p.steps.hidden) {
      p["steps-list"].replaceChildren();
      this.stepsCollapsed = false;
      return;
    }
    renderSteps(p["steps-list"], steps);
    p["steps-summary"].textContent = `Steps: ${stepsSummary(steps)}`;
    if (!this.stepsCollapsed && state === "streaming") p.steps.open = true;
  }

  collapseSteps(state) {
    const steps = this.part.steps;
    if (state === "complete" && !this.stepsCollapsed) {
      steps.open = false;
      this.stepsCollapsed = true;
    } else if (state !== "complete" && !steps.hidden) {
      steps.open = true; // (what the run did before it stopped or failed stays in view)
    }
  }

  showEnding(state, error, finishReason) {
    this.collapseSteps(state);
    if (state === "complete") {
      this.setStatus(finishReason && finishReason !== "stop" ? `Complete (${finishReason})` : "Complete", "complete");
      this.hideError();
    } else if (state === "cancelled") {
      this.setStatus("Stopped", "stopped");
      this.showError("Stopped", "The answer was stopped; what is shown above is what arrived.", true);
    } else if (state === "errored") {
      this.setStatus("Error", "error");
      const kind = error && error.type ? error.type : "error";
      const message = error && error.message ? error.message : "the answer failed";
      this.showError(`The answer failed: ${kind}`, message, false);
    }
  }

  showError(title, text, stopped) {
    const p = this.part;
    p["error-title"].textContent = title;
    p["error-text"].textContent = text;
    p.error.classList.toggle("stopped", stopped);
    p.retry.hidden = !MAY_ACT || !this.current;
    p.error.hidden = false;
  }

  hideError() {
    this.part.error.hidden = true;
  }

  renderTools(tools) {
    const list = this.part.tools;
    list.hidden = !tools || tools.length === 0;
    if (list.hidden) {
      list.replaceChildren();
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
    list.replaceChildren(...items);
  }

  renderTelemetry(telemetry) {
    if (!telemetry) return;
    const p = this.part;
    p.ttft.textContent = formatMs(telemetry.ttft_ms);
    p.tpot.textContent = formatMs(telemetry.tpot_ms);
    p.rate.textContent = telemetry.token_rate == null ? "–" : `${telemetry.token_rate.toFixed(1)} tok/s`;
    p.tokens.textContent = telemetry.output_tokens == null ? "–" : String(telemetry.output_tokens);
  }
}

const formatMs = (value) => (value == null ? "–" : `${value >= 100 ? Math.round(value) : value.toFixed(1)} ms`);

// -- the conversation -------------------------------------------------------------------------

/** A new turn at the end of the conversation: it becomes the one the ids name. */
function addTurn(prompt, model, agent) {
  const previous = latest();
  const turn = new Turn(prompt, model, agent);
  if (previous) {
    previous.name(false);
    previous.part.retry.hidden = true; // only the latest turn is retried (history follows it)
  }
  turns.push(turn);
  turn.name(true);
  turnsNode.append(turn.root);
  setConnection("idle");
  return turn;
}

function live(turn) {
  return turn !== null && (turn.state === "starting" || turn.state === "streaming");
}

/** The composer's buttons, for the latest turn's state. */
function controls() {
  const turn = latest();
  const busy = live(turn);
  composer.stop.disabled = !busy || !MAY_ACT || !turn.id;
  composer.send.disabled = busy || !MAY_ACT;
  composer.fresh.disabled = busy || turns.length === 0;
}

function setConversation(id) {
  conversation.id = id;
  conversationNode.dataset.conversationId = id || "";
  const url = new URL(window.location.href);
  url.searchParams.delete("session");
  if (id) url.searchParams.set("conversation", id);
  else url.searchParams.delete("conversation");
  window.history.replaceState(null, "", url);
}

function rememberSession(id) {
  // With no conversation kept, the address names the latest session (a reload follows it).
  if (conversation.id) return;
  const url = new URL(window.location.href);
  url.searchParams.set("session", id);
  window.history.replaceState(null, "", url);
}

function newConversationId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return "cv-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

/** Where a new turn is sent, and what with. */
function request(prompt, model, agent) {
  const body = { prompt, disconnect_policy: "detach" };
  if (KEPT) {
    if (!conversation.id) setConversation(newConversationId());
    const url = `/api/conversations/${encodeURIComponent(conversation.id)}/turns`;
    return [url, agent ? { ...body, agent } : { ...body, model }];
  }
  if (agent) return [`/api/agents/${encodeURIComponent(agent)}/runs`, body];
  return ["/api/sessions", { ...body, model }];
}

async function start(prompt, model, agent) {
  const turn = addTurn(prompt, model, agent);
  turn.setState("starting");
  turn.setStatus("Starting…", "starting");
  turn.setConnection("connecting");
  const [url, body] = request(prompt, model, agent);
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (exc) {
    turn.setConnection("failed", "offline");
    turn.setState("errored");
    turn.showError("The gateway could not be reached", String(exc), false);
    return;
  }
  if (!response.ok) {
    turn.setConnection("idle");
    turn.setState("errored");
    turn.setStatus("Refused", "refused");
    turn.showError(`The request was refused (${response.status})`, await errorMessage(response), false);
    return;
  }
  const created = await response.json();
  turn.showSession(created.id);
  rememberSession(created.id);
  turn.setState("streaming");
  turn.follow(0);
  composer.prompt.value = "";
}

async function stop() {
  const turn = latest();
  if (!turn || !turn.id) return;
  composer.stop.disabled = true;
  turn.setStatus("Stopping…", "stopping");
  const response = await fetch(`/api/sessions/${encodeURIComponent(turn.id)}/cancel`, { method: "POST" });
  if (!response.ok) {
    turn.showError("Stop failed", await errorMessage(response), false);
  }
}

async function retry(turn) {
  if (!turn.current) return;
  if (!turn.id) {
    turn.root.remove();
    turns.pop();
    if (latest()) latest().name(true);
    await start(turn.prompt, turn.model, turn.agent);
    return;
  }
  turn.hideError();
  turn.setStatus("Retrying…", "retrying");
  const response = await fetch(`/api/sessions/${encodeURIComponent(turn.id)}/retry`, { method: "POST" });
  if (response.ok) {
    turn.stepsCollapsed = false;
    turn.setState("streaming");
    turn.follow(turn.lastId);
  } else {
    // No longer retryable here (forgotten, or not in a retryable state): a new turn.
    await start(turn.prompt, turn.model, turn.agent);
  }
}

function chosen() {
  const agent = composer.agent.value;
  if (agent) {
    return { agent, model: composer.agent.selectedOptions[0].dataset.model || "" };
  }
  return { agent: "", model: composer.modelOther.value.trim() || composer.model.value };
}

/** With an agent chosen, the model is the agent's: the model fields are not used. */
function agentChanged() {
  const agent = Boolean(composer.agent.value);
  composer.model.disabled = agent;
  composer.modelOther.disabled = agent;
}

function newConversation() {
  if (live(latest())) return;
  for (const turn of turns) turn.closeSource();
  turns.length = 0;
  turnsNode.replaceChildren();
  setConversation(null);
  setConnection("idle");
  controls();
  composer.prompt.focus();
}

composer.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = composer.prompt.value.trim();
  const { agent, model } = chosen();
  if (!prompt || !model || live(latest())) return;
  start(prompt, model, agent);
});
composer.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    composer.form.requestSubmit();
  }
});
composer.stop.addEventListener("click", () => stop());
composer.fresh.addEventListener("click", () => newConversation());
composer.agent.addEventListener("change", agentChanged);

// -- restoring the page from its address ------------------------------------------------------

async function record(id) {
  const response = await fetch(`/api/sessions/${encodeURIComponent(id)}`);
  return response.ok ? response.json() : null;
}

function promptOf(found) {
  const asked = (found.messages || []).filter((m) => m.role === "user");
  if (asked.length) return asked[asked.length - 1].content;
  return found.prompt || found.prompt_preview || "";
}

/** A turn of the session ``id`` (its record ``found``), followed from its start. */
function restoreTurn(found, persistent) {
  const turn = addTurn(promptOf(found), `${found.provider}/${found.model}`, found.agent || "");
  turn.persistent = persistent;
  turn.showSession(found.id);
  turn.setState(found.state === "starting" ? "streaming" : found.state);
  turn.follow(0);
  return turn;
}

function pick(agent, model) {
  if (agent && [...composer.agent.options].some((o) => o.value === agent)) {
    composer.agent.value = agent;
  } else if (model) {
    composer.agent.value = "";
    if ([...composer.model.options].some((o) => o.value === model)) composer.model.value = model;
    else composer.modelOther.value = model;
  }
  agentChanged();
}

async function restoreConversation(id) {
  const response = await fetch(`/api/conversations/${encodeURIComponent(id)}`);
  if (!response.ok) return false;
  const kept = await response.json();
  setConversation(kept.id);
  pick(kept.agent, kept.model);
  const sessions = kept.sessions || [];
  // One at a time, oldest first (a browser opens few connections to one host at once).
  for (const [index, sessionId] of sessions.entries()) {
    const found = await record(sessionId);
    if (!found) continue;
    const turn = restoreTurn(found, index === sessions.length - 1);
    if (index < sessions.length - 1) await turn.whenEnded;
  }
  return true;
}

async function restore() {
  const params = new URL(window.location.href).searchParams;
  const conversationId = params.get("conversation");
  if (conversationId && KEPT && (await restoreConversation(conversationId))) return;
  const id = params.get("session");
  if (!id) return;
  const found = await record(id);
  if (!found) return;
  if (found.conversation_id && KEPT && (await restoreConversation(found.conversation_id))) return;
  restoreTurn(found, true);
}

agentChanged();
controls();
restore();
document.documentElement.dataset.chatReady = "true";
