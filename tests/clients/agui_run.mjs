// One AG-UI run through @ag-ui/client's HttpAgent, as a front end makes it; prints what the
// client saw as JSON on stdout.
//
//   node agui_run.mjs URL [OPTIONS_JSON]
//
// OPTIONS_JSON: {threadId, messages (AG-UI messages: the thread so far), texts (user messages:
// one run each, in turn, on the same thread, as a chat front end sends them; none: one run of
// the thread as it is), headers, forwardedProps, stopOn (an event type: at its first arrival
// the run is stopped through the gateway's POST {cancelBase}/api/sessions/{id}/cancel, the id
// from RUN_STARTED's metadata)}.
//
// Output: {runs: [{events (as the client applied them, after its schema checks and
// verifyEvents), newMessages, result, failed (onRunFailed's error), rejected (runAgent's
// rejection), stopped (the cancel's HTTP status)}], messages (the agent's at the end)}.
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

async function run(runId) {
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
      { runId, forwardedProps: options.forwardedProps },
      subscriber,
    );
    out.result = result ?? null;
    out.newMessages = newMessages;
  } catch (error) {
    out.rejected = String(error?.message ?? error);
  }
  return out;
}

const runs = [];
if (options.texts) {
  for (const [i, text] of options.texts.entries()) {
    agent.addMessage({ id: `user-${i + 1}`, role: "user", content: text });
    runs.push(await run(`run-${i + 1}`));
  }
} else {
  runs.push(await run(options.runId));
}
process.stdout.write(JSON.stringify({ runs, messages: agent.messages }));
