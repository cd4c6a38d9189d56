// One AG-UI run through @ag-ui/client's HttpAgent, as a front end makes it; prints what the
// client saw as JSON on stdout.
//
//   node agui_run.mjs URL [OPTIONS_JSON]
//
// OPTIONS_JSON: {threadId, runId, messages (AG-UI messages: the thread so far), headers,
// forwardedProps, stopOn (an event type: at its first arrival the run is stopped through the
// gateway's POST {cancelBase}/api/sessions/{id}/cancel, the id from RUN_STARTED's metadata)}.
//
// Output: {events (as the client applied them, after its schema checks and verifyEvents),
// messages (the agent's messages at the end), newMessages, result, failed (onRunFailed's
// error), rejected (runAgent's rejection), stopped (the cancel's HTTP status)}.
import { HttpAgent } from "@ag-ui/client";

const [url, optionsJson = "{}"] = process.argv.slice(2);
const options = JSON.parse(optionsJson);
setTimeout(() => {
  process.stderr.write("agui_run: no end within 60 s\n");
  process.exit(2);
}, 60_000).unref();

const agent = new HttpAgent({
  url,
  headers: options.headers ?? {},
  threadId: options.threadId,
  initialMessages: options.messages ?? [],
});

const out = { events: [], failed: null, rejected: null, stopped: null };
let sessionId = null;

const subscriber = {
  async onEvent({ event }) {
    out.events.push(event);
    if (event.type === "RUN_STARTED") sessionId = event.metadata?.sessionId ?? null;
    if (options.stopOn && event.type === options.stopOn && out.stopped === null) {
      out.stopped = 0;
      const response = await fetch(`${options.cancelBase}/api/sessions/${sessionId}/cancel`, {
        method: "POST",
      });
      out.stopped = response.status;
    }
  },
  onRunFailed({ error }) {
    out.failed = String(error?.message ?? error);
  },
};

try {
  const { result, newMessages } = await agent.runAgent(
    { runId: options.runId, forwardedProps: options.forwardedProps },
    subscriber,
  );
  out.result = result ?? null;
  out.newMessages = newMessages;
} catch (error) {
  out.rejected = String(error?.message ?? error);
}
out.messages = agent.messages;
process.stdout.write(JSON.stringify(out));
