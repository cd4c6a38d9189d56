// An agent run's steps, drawn from the gateway's fold of its events (sluice/session/steps.py):
// each step with its duration, what the model said before calling tools, and each tool call
// with its arguments, progress, result and duration. Used by the chat page and the session page.
//
// Tool arguments and results are untrusted (a model wrote the one, a tool the other): every
// piece is set as text, never as HTML.

const NONE = "\u2013";

/** Seconds as the pages show them: "850 ms", "2.41 s". */
export function formatSeconds(seconds) {
  if (seconds == null) return NONE;
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(2)} s`;
}

const CALL_STATES = {
  calling: "calling",
  called: "called",
  running: "running",
  ok: "ok",
  error: "error",
  stopped: "stopped",
};

function node(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text != null) element.textContent = text;
  return element;
}

/** "2 of 3 · step 2" from a tool's progress notification. */
export function progressText(progress) {
  if (!progress) return "";
  const parts = [];
  if (progress.message) parts.push(progress.message);
  if (progress.total) parts.push(`${progress.progress} of ${progress.total}`);
  else if (progress.progress != null) parts.push(String(progress.progress));
  return parts.join(" · ");
}

function renderCall(call) {
  const item = node("li", "call");
  item.dataset.state = call.state;
  item.dataset.callId = call.id || "";
  const head = node("div", "call-head");
  head.append(node("span", "call-name", call.name));
  if (call.tool && call.tool !== call.name) head.append(node("span", "call-origin", call.tool));
  const state = node("span", `badge call-state call-${call.state}`, CALL_STATES[call.state] || call.state);
  head.append(state);
  if (call.error && call.error !== "cancelled") head.append(node("span", "call-error", call.error));
  if (call.duration != null) head.append(node("span", "call-duration", formatSeconds(call.duration)));
  const progress = progressText(call.progress);
  if (progress) head.append(node("span", "call-progress", progress));
  item.append(head);
  const io = node("dl", "call-io");
  io.append(node("dt", null, "Arguments"), node("dd", null));
  io.lastChild.append(node("pre", "call-args", call.arguments || "{}"));
  if (call.result != null) {
    io.append(node("dt", null, call.state === "ok" ? "Result" : "Told the model"), node("dd", null));
    io.lastChild.append(node("pre", "call-result", call.result));
  }
  item.append(io);
  return item;
}

function renderStep(step) {
  const item = node("li", "step");
  item.dataset.step = String(step.step);
  item.dataset.state = step.state;
  const head = node("div", "step-head");
  head.append(node("span", "step-title", `Step ${step.step}`));
  const reason = step.state === "running" ? "running" : step.finish_reason || step.state;
  head.append(node("span", `badge step-state step-${step.state}`, reason));
  if (step.duration != null) head.append(node("span", "step-duration", formatSeconds(step.duration)));
  if (step.usage) {
    head.append(
      node("span", "step-usage", `${step.usage.input_tokens ?? NONE} in · ${step.usage.output_tokens ?? NONE} out`),
    );
  }
  item.append(head);
  const said = (step.text || "").trim();
  if (said) item.append(node("p", "step-text", said));
  if (step.calls.length) {
    const calls = node("ul", "calls");
    calls.append(...step.calls.map(renderCall));
    item.append(calls);
  }
  return item;
}

/** Draw ``steps`` into the list element ``list`` (replacing what it held). */
export function renderSteps(list, steps) {
  list.replaceChildren(...steps.map(renderStep));
}

/** One line for the steps' summary: "2 steps · 3 tool calls · 1.42 s". */
export function stepsSummary(steps) {
  const calls = steps.reduce((n, step) => n + step.calls.length, 0);
  const parts = [steps.length === 1 ? "1 step" : `${steps.length} steps`];
  if (calls) parts.push(calls === 1 ? "1 tool call" : `${calls} tool calls`);
  const running = steps.some((step) => step.state === "running");
  if (!running) {
    const total = steps.reduce((sum, step) => sum + (step.duration || 0), 0);
    if (total) parts.push(formatSeconds(total));
  }
  return parts.join(" · ");
}
