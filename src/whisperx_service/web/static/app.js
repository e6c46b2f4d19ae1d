// The page: sign-in, the key's jobs (paged, newest first) with live progress from their event
// streams; uploads (upload.js) and the transcript view (player.js) are wired from here.

import { api, clearKey, getJson, getKey, saveBlob, setKey } from "./api.js";
import { clock, TranscriptView } from "./player.js";
import { watchJob } from "./stream.js";
import { initUploads } from "./upload.js";

const PAGE_SIZE = 10;
/** Event streams open at once: a browser keeps 6 HTTP/1.1 connections per origin, and the page
 * needs some for its other requests and the audio. Other unfinished jobs are polled. */
const MAX_STREAMS = 3;
const POLL_MS = 3000;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const STAGES = {
  decode: "Decoding",
  vad: "Finding speech",
  transcribe: "Transcribing",
  align: "Aligning words",
  diarize: "Finding speakers",
  merge: "Finishing",
};

const $ = (sel) => document.querySelector(sel);
const statusEl = $("#status");
const view = new TranscriptView($("#transcript"), say);

const jobs = new Map(); // id -> record shown in the list
const watches = new Map(); // id -> stop() of its event stream
const live = new Map(); // id -> {stage, percent, eta_s, position}
let cursors = [null]; // cursor of each page seen; the last is the current page's
let nextCursor = null;
let pollTimer = 0;

/** Tell the person something (a polite live region). */
function say(text) {
  statusEl.textContent = text;
}

function duration(s) {
  if (s == null) return "";
  if (s < 60) return `${Math.round(s)} s`;
  return clock(s);
}

// ---- sign-in ---------------------------------------------------------------------------------

async function signIn(key) {
  const err = $("#signin-error");
  err.textContent = "";
  try {
    await api("/v1/jobs?limit=1", { key });
  } catch (e) {
    err.textContent =
      e.status === 401
        ? "This API key was not accepted (unauthorized). Check that you pasted the whole key."
        : `Cannot sign in: ${e.message} (${e.code})`;
    $("#key").setAttribute("aria-invalid", "true");
    $("#key").focus();
    return false;
  }
  setKey(key);
  $("#key").value = "";
  $("#key").removeAttribute("aria-invalid");
  await showApp();
  return true;
}

async function showApp() {
  $("#signin").hidden = true;
  $("#app").hidden = false;
  $("#sign-out").hidden = false;
  if ("serviceWorker" in navigator) {
    try {
      await navigator.serviceWorker.register("/sw.js", { scope: "/" });
    } catch {
      // No service worker (e.g. plain http on another host): the player downloads a copy instead.
    }
  }
  cursors = [null];
  await loadJobs();
}

function signOut() {
  clearKey();
  // The service worker forgets this tab's key too.
  navigator.serviceWorker?.controller?.postMessage({ key: null });
  for (const stop of watches.values()) stop();
  watches.clear();
  jobs.clear();
  clearTimeout(pollTimer);
  view.close();
  $("#job-list").textContent = "";
  $("#app").hidden = true;
  $("#sign-out").hidden = true;
  $("#signin").hidden = false;
  say("Signed out.");
  $("#key").focus();
}

// ---- the jobs list ---------------------------------------------------------------------------

async function loadJobs() {
  const cursor = cursors[cursors.length - 1];
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (cursor) params.set("cursor", cursor);
  let page;
  try {
    page = await getJson(`/v1/jobs?${params}`);
  } catch (e) {
    if (e.status === 401) return signOut();
    say(`Cannot list the jobs: ${e.message} (${e.code})`);
    return;
  }
  nextCursor = page.next_cursor;
  for (const stop of watches.values()) stop();
  watches.clear();
  jobs.clear();
  const list = $("#job-list");
  list.textContent = "";
  for (const job of page.jobs) {
    jobs.set(job.id, job);
    list.append(jobRow(job));
  }
  $("#jobs-empty").hidden = page.jobs.length > 0;
  $("#newer").disabled = cursors.length <= 1;
  $("#older").disabled = !nextCursor;
  $("#page-label").textContent = `Page ${cursors.length}`;
  followUnfinished();
}

function jobRow(job) {
  const li = document.createElement("li");
  li.className = "job";
  li.dataset.id = job.id;
  li.innerHTML = `
    <div class="job-main">
      <span class="job-name"></span>
      <span class="badge"></span>
    </div>
    <div class="job-meta"></div>
    <div class="job-live"><progress max="100" value="0" hidden></progress><span class="live-text"></span></div>
    <p class="error" role="alert"></p>
    <div class="actions"></div>`;
  li.querySelector(".job-name").textContent = job.filename || job.id;
  updateRow(job, li);
  return li;
}

function rowOf(id) {
  return document.querySelector(`#job-list li[data-id="${id}"]`);
}

/** Refresh one row from its record and live state; the actions are rebuilt when the status changed. */
function updateRow(job, li = null) {
  li = li || rowOf(job.id);
  if (!li) return;
  const badge = li.querySelector(".badge");
  badge.textContent = job.cancel_requested && !TERMINAL.has(job.status) ? "cancelling" : job.status;
  badge.className = `badge ${job.status}`;
  const meta = [new Date(job.created_at).toLocaleString()];
  if (job.duration_s != null) meta.push(duration(job.duration_s));
  if (job.language) meta.push(job.language);
  else if (job.options && job.options.language) meta.push(job.options.language);
  if (job.speakers) meta.push(`${job.speakers} speaker${job.speakers === 1 ? "" : "s"}`);
  li.querySelector(".job-meta").textContent = meta.join(" · ");
  const st = live.get(job.id) || {};
  const bar = li.querySelector("progress");
  const text = li.querySelector(".live-text");
  if (job.status === "running") {
    const pct = Math.max(job.percent || 0, st.percent || 0);
    bar.hidden = false;
    bar.value = pct;
    const parts = [STAGES[st.stage || job.stage] || "Starting", `${pct.toFixed(0)} %`];
    if (st.eta_s != null) parts.push(`about ${duration(st.eta_s)} left`);
    text.textContent = parts.join(" · ");
  } else if (job.status === "queued") {
    bar.hidden = true;
    text.textContent = st.position ? `Waiting: position ${st.position} among this key's queued jobs` : "Waiting for a worker";
  } else {
    bar.hidden = job.status !== "succeeded";
    bar.value = 100;
    text.textContent = job.status === "succeeded" ? "100 %" : "";
  }
  li.querySelector(".error").textContent =
    job.status === "failed" && job.error ? `${job.error.message} (${job.error.code})` : "";
  if (li.dataset.status !== job.status) {
    li.dataset.status = job.status;
    renderActions(job, li.querySelector(".actions"));
  }
}

function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

function renderActions(job, box) {
  box.textContent = "";
  const name = job.filename || job.id;
  if (job.status === "succeeded") {
    box.append(button("Open", `Open ${name}`, () => view.open(job)));
    const menu = document.createElement("details");
    menu.className = "menu";
    const summary = document.createElement("summary");
    summary.textContent = "Download";
    summary.setAttribute("aria-label", `Download ${name}`);
    menu.append(summary);
    for (const fmt of ["json", "srt", "vtt", "txt", "tsv"]) {
      menu.append(button(fmt.toUpperCase(), `${fmt.toUpperCase()} of ${name}`, () => download(job, fmt)));
    }
    box.append(menu);
  }
  if (!TERMINAL.has(job.status)) {
    box.append(button("Cancel", `Cancel ${name}`, () => cancel(job)));
  } else {
    const del = button("Delete", `Delete ${name}`, () => {
      if (del.dataset.armed) return purge(job);
      del.dataset.armed = "1";
      del.textContent = "Confirm delete";
      setTimeout(() => {
        delete del.dataset.armed;
        del.textContent = "Delete";
      }, 5000);
    });
    box.append(del);
  }
}

async function download(job, fmt) {
  try {
    const resp = await api(`/v1/jobs/${job.id}/result?format=${fmt}`);
    saveBlob(await resp.blob(), `${(job.filename || job.id).replace(/\.[^.]+$/, "")}.${fmt}`);
  } catch (e) {
    say(`Download failed: ${e.message} (${e.code})`);
  }
}

async function cancel(job) {
  try {
    const resp = await api(`/v1/jobs/${job.id}`, { method: "DELETE" });
    const rec = await resp.json();
    jobs.set(job.id, rec);
    updateRow(rec);
    say(resp.status === 202 ? `Stopping ${job.filename || job.id}…` : `Cancelled ${job.filename || job.id}.`);
  } catch (e) {
    say(`Cannot cancel: ${e.message} (${e.code})`);
  }
}

async function purge(job) {
  try {
    await api(`/v1/jobs/${job.id}?purge=true`, { method: "DELETE" });
    say(`Deleted ${job.filename || job.id}.`);
    if (view.job && view.job.id === job.id) view.close();
    await loadJobs();
  } catch (e) {
    say(`Cannot delete: ${e.message} (${e.code})`);
  }
}

// ---- live progress ---------------------------------------------------------------------------

/** Stream the events of up to MAX_STREAMS unfinished jobs on this page; poll the rest. */
function followUnfinished() {
  clearTimeout(pollTimer);
  const open = [...jobs.values()].filter((j) => !TERMINAL.has(j.status));
  for (const job of open) {
    if (watches.size >= MAX_STREAMS || watches.has(job.id)) continue;
    watches.set(
      job.id,
      watchJob(
        job.id,
        (type, data) => onEvent(job.id, type, data),
        (err) => (err.status === 401 ? signOut() : say(`Lost the progress of a job: ${err.message} (${err.code})`)),
      ),
    );
  }
  if (open.length) {
    queuePositions();
    pollTimer = setTimeout(poll, POLL_MS);
  }
}

async function poll() {
  const open = [...jobs.values()].filter((j) => !TERMINAL.has(j.status));
  if (!open.length || !getKey()) return;
  await queuePositions();
  for (const job of open) {
    if (watches.has(job.id)) continue;
    try {
      const rec = await getJson(`/v1/jobs/${job.id}`);
      jobs.set(rec.id, rec);
      updateRow(rec);
    } catch {
      // The next poll tries again.
    }
  }
  pollTimer = setTimeout(poll, POLL_MS);
}

/** Each queued job's place among this key's queued jobs (oldest first): the order it is served in. */
async function queuePositions() {
  if (![...jobs.values()].some((j) => j.status === "queued")) return;
  try {
    const page = await getJson("/v1/jobs?status=queued&limit=500");
    const oldestFirst = page.jobs.slice().reverse();
    oldestFirst.forEach((j, i) => {
      if (jobs.has(j.id)) {
        live.set(j.id, { ...(live.get(j.id) || {}), position: i + 1 });
        updateRow(jobs.get(j.id));
      }
    });
  } catch {
    // Positions are a nicety; progress still shows.
  }
}

async function onEvent(id, type, data) {
  const job = jobs.get(id);
  if (!job) return;
  const st = live.get(id) || {};
  if (type === "snapshot") {
    jobs.set(id, data);
    updateRow(data);
    return;
  }
  if (type === "progress") {
    Object.assign(st, { stage: data.stage, percent: Number(data.percent), eta_s: data.eta_s ?? null });
    live.set(id, st);
    job.status = "running";
    job.stage = data.stage;
    job.percent = Math.max(job.percent || 0, Number(data.percent) || 0);
  } else if (type === "started") {
    job.status = "running";
  } else if (type === "cancelling") {
    job.cancel_requested = true;
  }
  if (TERMINAL.has(type) || type === "ended") {
    watches.delete(id);
    try {
      const rec = await getJson(`/v1/jobs/${id}`);
      jobs.set(id, rec);
      updateRow(rec);
      if (rec.status === "failed") say(`${rec.filename || id} failed: ${rec.error?.message} (${rec.error?.code})`);
      else say(`${rec.filename || id} ${rec.status}.`);
    } catch {
      // The row keeps its last state; Refresh reloads it.
    }
    followUnfinished();
    return;
  }
  updateRow(job);
}

// ---- wiring ----------------------------------------------------------------------------------

$("#signin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const key = $("#key").value.trim();
  if (!key) {
    $("#signin-error").textContent = "Paste an API key first.";
    return;
  }
  signIn(key);
});
$("#sign-out").addEventListener("click", signOut);
initUploads(say, async () => {
  cursors = [null];
  await loadJobs();
});
$("#refresh").addEventListener("click", loadJobs);
$("#older").addEventListener("click", () => {
  if (!nextCursor) return;
  cursors.push(nextCursor);
  loadJobs();
});
$("#newer").addEventListener("click", () => {
  if (cursors.length > 1) cursors.pop();
  loadJobs();
});

if (getKey()) showApp();
else $("#key").focus();
// Marks the page as wired up (the browser tests wait for it).
document.documentElement.dataset.ready = "1";
