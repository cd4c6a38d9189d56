// One chat turn through the AI SDK as useChat makes it (its AbstractChat and
// DefaultChatTransport, without React); prints what the chat saw as JSON on stdout.
//
//   node ui_stream_run.mjs API_URL [OPTIONS_JSON]
//
// OPTIONS_JSON: {chatId, texts (the user's messages, sent in turn, each once the answer to the
// one before has ended), messages (the chat so far, UIMessage[]),
// body (the transport's extra body keys), headers, resume (reconnect to the chat's stream,
// GET {api}/{chatId}/stream, instead of sending), stopOn (a chunk type: at its first arrival
// the run is stopped through the gateway's POST {cancelBase}/api/sessions/{id}/cancel, the id
// being the assistant message's)}.
//
// Output: {status, error, messages (the chat's at the end), chunks (every chunk of the
// response bodies in order, each body's "[DONE]" included), data (the data parts onData got),
// finishes (onFinish's flags and reason, per answer), errors (onError's), responses (HTTP
// status of each request), stopped (the cancel's HTTP status)}.
import { AbstractChat, DefaultChatTransport } from "ai";

const [api, optionsJson = "{}"] = process.argv.slice(2);
const options = JSON.parse(optionsJson);
setTimeout(() => {
  process.stderr.write("ui_stream_run: no end within 60 s\n");
  process.exit(2);
}, 60_000).unref();

/** The chat's state in plain arrays, as the framework bindings keep it in their own stores. */
class ArrayChatState {
  constructor(messages) {
    this.status = "ready";
    this.error = undefined;
    this.messages = messages;
  }
  pushMessage = (message) => {
    this.messages = this.messages.concat(message);
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = [
      ...this.messages.slice(0, index),
      this.snapshot(message),
      ...this.messages.slice(index + 1),
    ];
  };
  snapshot = (thing) => structuredClone(thing);
}

class NodeChat extends AbstractChat {
  constructor({ messages, ...init }) {
    super({ ...init, state: new ArrayChatState(messages ?? []) });
  }
}

const out = { chunks: [], data: [], errors: [], responses: [], finishes: [], stopped: null };
const reading = [];

/** fetch, with a copy of each response body read as SSE chunks (and the Stop, when asked). */
async function recordingFetch(input, init) {
  const response = await fetch(input, init);
  out.responses.push(response.status);
  if (!response.body) return response;
  const [mine, theirs] = response.body.tee();
  reading.push(readChunks(mine));
  return new Response(theirs, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

async function readChunks(stream) {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const bytes of stream) {
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        const chunk = data === "[DONE]" ? data : JSON.parse(data);
        out.chunks.push(chunk);
        if (options.stopOn && chunk.type === options.stopOn && out.stopped === null) {
          out.stopped = 0;
          const sessionId = out.chunks.find((c) => c.type === "start")?.messageId;
          const cancel = await fetch(`${options.cancelBase}/api/sessions/${sessionId}/cancel`, {
            method: "POST",
          });
          out.stopped = cancel.status;
        }
      }
    }
  }
}

const chat = new NodeChat({
  id: options.chatId,
  messages: options.messages,
  transport: new DefaultChatTransport({
    api,
    fetch: recordingFetch,
    body: options.body,
    headers: options.headers,
  }),
  onData: (part) => out.data.push(part),
  onError: (error) => out.errors.push(String(error?.message ?? error)),
  onFinish: ({ isAbort, isDisconnect, isError, finishReason }) => {
    out.finishes.push({ isAbort, isDisconnect, isError, finishReason: finishReason ?? null });
  },
});

if (options.resume) await chat.resumeStream();
for (const text of options.texts ?? []) {
  await chat.sendMessage({ text });
  await Promise.all(reading);
}
await Promise.all(reading);
out.status = chat.status;
out.error = chat.error ? String(chat.error.message) : null;
out.messages = chat.messages;
process.stdout.write(JSON.stringify(out));
