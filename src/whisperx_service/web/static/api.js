// The gateway's API as the page uses it. The key lives in sessionStorage (this tab only, gone when
// the tab closes) and travels only as `Authorization: Bearer`, never in a URL.

const KEY_ITEM = "wxs.key";

/** The key pasted at sign-in, or null. */
export function getKey() {
  return sessionStorage.getItem(KEY_ITEM);
}

/** Keep `key` for this tab. */
export function setKey(key) {
  sessionStorage.setItem(KEY_ITEM, key);
}

/** Forget the key. */
export function clearKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

/** An error answer of the API: `code` and `message` from its body `{"error": {code, message}}`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The Authorization header of the current key (plus `extra`). */
export function authHeaders(extra = {}) {
  const key = getKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

/** Turn a non-2xx Response into an ApiError (reads its JSON error body when there is one). */
export async function errorOf(resp) {
  let code = `http_${resp.status}`;
  let message = resp.statusText || "request failed";
  try {
    const body = await resp.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON (a proxy's page, a range error): keep the status.
  }
  return new ApiError(resp.status, code, message);
}

/**
 * fetch() on the gateway with the key; resolves to the Response when 2xx, else throws ApiError.
 * `key` overrides the stored key (sign-in checks a key before keeping it).
 */
export async function api(path, { method = "GET", key = null, headers = {}, signal } = {}) {
  const h = key ? { ...headers, Authorization: `Bearer ${key}` } : authHeaders(headers);
  const resp = await fetch(path, { method, headers: h, signal, cache: "no-store", credentials: "omit" });
  if (!resp.ok) throw await errorOf(resp);
  return resp;
}

/** GET a JSON body. */
export async function getJson(path, opts) {
  return (await api(path, opts)).json();
}

/**
 * Upload one file as a job with XMLHttpRequest (fetch reports no upload progress).
 * `fields`: form fields (strings). `onProgress(loaded, total)` as bytes go out.
 * Returns { promise, abort }: the promise resolves to the 202 body or rejects with ApiError
 * (code "aborted" when cancelled, "network_error" when the connection failed).
 */
export function uploadJob(file, fields, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    form.append("file", file, file.name);
    xhr.open("POST", "/v1/jobs");
    const key = getKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status === 202 && body) resolve(body);
      else {
        const err = (body && body.error) || {};
        reject(new ApiError(xhr.status, err.code || `http_${xhr.status}`, err.message || "upload failed"));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, "network_error", "the connection to the gateway failed"));
    xhr.onabort = () => reject(new ApiError(0, "aborted", "upload cancelled"));
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}

/** Save a Blob under `filename` through a temporary link (no navigation, no key in a URL). */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
