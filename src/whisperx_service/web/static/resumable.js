// Resumable uploads (tus 1.0 at `/v1/uploads`) with tus-js-client, for files over a threshold.
//
// tus-js-client is not part of this repository: scripts/install.sh installs it from the npm
// registry (web/package-lock.json pins it) and copies its browser bundle to ./vendor/tus.min.js,
// which this module loads on first use. Where it is missing, `loadTus()` rejects and the page
// sends the file in one multipart request instead (upload.js says so).
//
// The upload's URL is kept in localStorage under a fingerprint of the file (name, type, size,
// modification time; tus-js-client's own), with the job options it was created with: choosing the
// same file again after a reload or a closed tab resumes at the offset the gateway reports (HEAD),
// and a dropped connection is retried by tus-js-client the same way. The gateway makes the job at
// the last PATCH (the metadata carries the options and `job`) and names it in `Job-Id`.

import { ApiError, authHeaders, errorOf as errorOfResponse, getJson, getKey } from "./api.js";

/** Files of at least this many bytes go as tus uploads: the Python client's TUS_THRESHOLD_BYTES (64 MiB). */
const THRESHOLD_BYTES = 64 * 1024 * 1024;
/** Bytes per PATCH: the Python client's PART_BYTES (64 MiB), so a proxy's body limit or a long
 * request never stalls the upload whole. */
const CHUNK_BYTES = 64 * 1024 * 1024;
/** localStorage items that override the two sizes above (bytes; the browser tests lower them). */
const THRESHOLD_ITEM = "wxs.tusThresholdBytes";
const CHUNK_ITEM = "wxs.tusChunkBytes";
/** Milliseconds before each retry after a failed request (tus-js-client asks HEAD, then goes on);
 * the count resets once a retry moved the offset. About two minutes in all. */
const RETRY_DELAYS_MS = [0, 1000, 3000, 5000, 10000, 20000, 30000, 60000];
/** The vendored bundle (UMD: sets `window.tus`). */
const BUNDLE = "/static/vendor/tus.min.js";

let loading = null;

function sizeSetting(item, fallback) {
  const v = Number(localStorage.getItem(item));
  return Number.isInteger(v) && v > 0 ? v : fallback;
}

/** Files of at least this many bytes (64 MiB, or localStorage `wxs.tusThresholdBytes`) go as tus uploads. */
export function tusThreshold() {
  return sizeSetting(THRESHOLD_ITEM, THRESHOLD_BYTES);
}

/**
 * Load tus-js-client's bundle once (a same-origin script, as the page's CSP allows).
 * Resolves to the `tus` namespace; rejects with Error when the file is missing (an install without
 * npm) or the browser cannot do tus uploads.
 */
export function loadTus() {
  if (window.tus) return Promise.resolve(window.tus);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = BUNDLE;
      s.onload = () =>
        window.tus && window.tus.isSupported ? resolve(window.tus) : reject(new Error("tus is not supported here"));
      s.onerror = () => {
        s.remove();
        loading = null; // a later upload tries again
        reject(new Error(`${BUNDLE} is missing`));
      };
      document.head.append(s);
    });
  }
  return loading;
}

/** The API error of a failed tus request: its JSON body's code and message when it has one. */
function errorOf(err) {
  const res = err && err.originalResponse;
  if (!res) return new ApiError(0, "network_error", "the connection to the gateway failed");
  let code = `http_${res.getStatus()}`;
  let message = "upload failed";
  try {
    const body = JSON.parse(res.getBody());
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON: keep the status.
  }
  return new ApiError(res.getStatus(), code, message);
}

function sameMetadata(a, b) {
  const ka = Object.keys(a || {}).sort();
  const kb = Object.keys(b || {}).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

/**
 * Upload `file` as a tus upload that becomes a job with the form `fields` (strings) at its last byte.
 *
 * `tus`: the namespace from `loadTus()`. `onProgress(loaded, total, resumedAt)`: bytes the gateway
 * holds or is being sent, of the file's size; `resumedAt` is the offset (bytes) an earlier upload
 * of the same file went on from, else null. Returns { promise, abort }: the promise resolves to the
 * job's record (`GET /v1/jobs/{id}`: id, status, ...) or rejects with ApiError (code "aborted" when
 * cancelled: the upload is then deleted on the gateway, tus termination).
 */
export function uploadResumable(tus, file, fields, onProgress) {
  let upload = null;
  let aborted = false;
  let fail = () => {};
  const promise = new Promise((resolve, reject) => {
    fail = reject;
    const key = getKey();
    const metadata = { filename: file.name, ...fields, job: "true" };
    let jobId = null;
    let resumedAt = null;
    upload = new tus.Upload(file, {
      endpoint: new URL("/v1/uploads", window.location.origin).href,
      headers: key ? { Authorization: `Bearer ${key}` } : {},
      metadata,
      chunkSize: sizeSetting(CHUNK_ITEM, CHUNK_BYTES),
      retryDelays: RETRY_DELAYS_MS,
      removeFingerprintOnSuccess: true,
      onAfterResponse(req, res) {
        // The last PATCH (or a HEAD of an upload already made a job) names the job.
        const id = res.getHeader("Job-Id");
        if (id) jobId = id;
        if (req.getMethod() === "HEAD" && res.getStatus() === 200) {
          resumedAt = Number(res.getHeader("Upload-Offset")) || null;
        }
      },
      onProgress: (loaded, total) => onProgress(loaded, total, resumedAt),
      onError: (err) => reject(aborted ? new ApiError(0, "aborted", "upload cancelled") : errorOf(err)),
      onSuccess: async () => {
        try {
          if (!jobId) {
            // The last PATCH's answer (with Job-Id) was lost, or making the job failed there and
            // the library saw a complete upload on its HEAD: ask for the job of the finished upload
            // (the same job again if one was made).
            const uploadId = upload.url.split("/").pop();
            const resp = await fetch("/v1/jobs", {
              method: "POST",
              headers: authHeaders({ "Content-Type": "application/json" }),
              body: JSON.stringify({ ...fields, upload_id: uploadId }),
              cache: "no-store",
              credentials: "omit",
            });
            if (!resp.ok) throw await errorOfResponse(resp);
            jobId = (await resp.json()).id;
          }
          resolve(await getJson(`/v1/jobs/${jobId}`));
        } catch (e) {
          reject(e);
        }
      },
    });
    upload
      .findPreviousUploads()
      .then(async (previous) => {
        // Resume the newest earlier upload of this file made with the same options; delete the
        // others (they would count against the key's storage quota until they expire).
        const newest = previous.sort((a, b) => Date.parse(b.creationTime) - Date.parse(a.creationTime));
        const match = newest.find((p) => sameMetadata(p.metadata, metadata));
        for (const p of newest) {
          if (p === match) continue;
          await tus.Upload.terminate(p.uploadUrl, { headers: upload.options.headers }).catch(() => {});
          await upload.options.urlStorage.removeUpload(p.urlStorageKey);
        }
        if (aborted) return;
        if (match) upload.resumeFromPreviousUpload(match);
        upload.start();
      })
      .catch(() => {
        if (!aborted) upload.start(); // no URL storage to read: a new upload
      });
  });
  return {
    promise,
    abort: () => {
      aborted = true;
      upload.abort(true).catch(() => {}); // terminate: the gateway deletes the bytes it holds
      fail(new ApiError(0, "aborted", "upload cancelled"));
    },
  };
}
