// A job's event stream (`GET /v1/jobs/{id}/events`) read with fetch and a stream reader, so the
// key goes in a header (EventSource cannot send one). The parser follows the WHATWG
// "server-sent events" interpretation rules (fields `event`, `data`, `id`; a blank line dispatches;
// lines starting with ":" are comments, the gateway's pings). A stream that ends without a terminal
// event is reopened with `Last-Event-ID`, after RETRY_MS; a 204 answer means the job already ended.

import { authHeaders, errorOf } from "./api.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
/** Wait before reconnecting (ms); doubled per failed try up to MAX_RETRY_MS. */
const RETRY_MS = 1000;
const MAX_RETRY_MS = 15000;

/** Split a text buffer into complete SSE events; returns [events, rest-of-buffer]. */
export function parseEvents(buffer) {
  const events = [];
  // A chunk may end between the "\r" and "\n" of one line end: keep that "\r" for the next chunk.
  const held = buffer.endsWith("\r") ? "\r" : "";
  const blocks = buffer.slice(0, buffer.length - held.length).replace(/\r\n?/g, "\n").split("\n\n");
  const rest = blocks.pop() + held;
  for (const block of blocks) {
    const ev = { event: "message", data: [], id: null };
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? "" : line.slice(i + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") ev.event = value;
      else if (field === "data") ev.data.push(value);
      else if (field === "id") ev.id = value;
    }
    if (ev.data.length || ev.id !== null) events.push({ ...ev, data: ev.data.join("\n") });
  }
  return [events, rest];
}

/**
 * Follow job `jobId` until its terminal event. `onEvent(type, data)` gets every event (`data`
 * parsed from JSON); `onError(err)` a failure that stops the watch (404, 401). Returns a stop().
 */
export function watchJob(jobId, onEvent, onError) {
  const ctrl = new AbortController();
  let lastId = null;
  let done = false;
  let delay = RETRY_MS;

  async function once() {
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (lastId) headers["Last-Event-ID"] = lastId;
    const resp = await fetch(`/v1/jobs/${jobId}/events`, { headers, signal: ctrl.signal, cache: "no-store" });
    if (resp.status === 204) {
      done = true; // resumed after the terminal event: the caller reads the job's state
      onEvent("ended", {});
      return;
    }
    if (!resp.ok) {
      const err = await errorOf(resp);
      if (resp.status === 429 || resp.status >= 500) throw err; // retried
      done = true;
      onError(err);
      return;
    }
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done: eof } = await reader.read();
      if (eof) return;
      delay = RETRY_MS; // bytes arrived: the connection works
      const [events, rest] = parseEvents(buffer + value);
      buffer = rest;
      for (const ev of events) {
        if (ev.id) lastId = ev.id;
        let data = {};
        try {
          data = ev.data ? JSON.parse(ev.data) : {};
        } catch {
          data = { raw: ev.data };
        }
        onEvent(ev.event, data);
        if (TERMINAL.has(ev.event)) {
          done = true;
          ctrl.abort();
          return;
        }
      }
    }
  }

  (async () => {
    while (!done && !ctrl.signal.aborted) {
      try {
        await once();
      } catch (err) {
        if (ctrl.signal.aborted) return;
      }
      if (done || ctrl.signal.aborted) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, MAX_RETRY_MS);
    }
  })();
  return () => {
    done = true;
    ctrl.abort();
  };
}
