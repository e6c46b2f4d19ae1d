// The page's service worker: adds the page's API key to the <audio> element's requests for
// `/v1/jobs/{id}/audio`. A media element cannot send a header, and a key never goes in a URL; with
// this, the browser still streams and seeks the audio with HTTP Range requests instead of
// downloading it whole. The key comes from the page by postMessage and is held in memory per
// page (client id) only; a restarted worker has none, the request then answers 401 and the page
// sends the key again (or falls back to a downloaded copy).

const AUDIO_PATH = /^\/v1\/jobs\/[0-9a-f]{32}\/audio$/;
const keys = new Map(); // client id -> key

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("message", (event) => {
  const id = event.source && event.source.id;
  if (!id) return;
  const { key } = event.data || {};
  if (typeof key === "string" && key) keys.set(id, key);
  else keys.delete(id);
  if (event.ports[0]) event.ports[0].postMessage({ ok: true });
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || !AUDIO_PATH.test(url.pathname)) {
    return; // everything else goes to the network untouched
  }
  const key = keys.get(event.clientId);
  if (!key) return;
  const headers = new Headers({ Authorization: `Bearer ${key}` });
  for (const name of ["range", "if-range"]) {
    const v = event.request.headers.get(name);
    if (v) headers.set(name, v);
  }
  // A new same-origin request: a media element's own request is `no-cors`, which drops the header.
  event.respondWith(fetch(url.href, { headers, mode: "same-origin", credentials: "omit", cache: "no-store" }));
});
