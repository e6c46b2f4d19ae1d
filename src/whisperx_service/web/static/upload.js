// Uploads: files dropped or chosen, per-file options, one XMLHttpRequest each with its progress
// (bytes, speed) and a cancel button; files over the tus threshold go as resumable uploads
// (resumable.js). `initUploads` wires the form.

import { uploadJob } from "./api.js";
import { loadTus, tusThreshold, uploadResumable } from "./resumable.js";

const $ = (sel) => document.querySelector(sel);
let say = () => {};
let onUploaded = async () => {};

/** "1.2 MB" of a byte count (powers of 1024). */
export function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u += 1;
  } while (v >= 1024 && u < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

const pending = []; // {file, li, upload}

function addFiles(files) {
  for (const file of files) {
    const li = $("#pending-item").content.firstElementChild.cloneNode(true);
    li.querySelector(".file-name").textContent = `${file.name} (${bytes(file.size)})`;
    const mode = li.querySelector("[name=speaker-mode]");
    const diarize = li.querySelector("[name=diarize]");
    const sync = () => {
      for (const el of li.querySelectorAll(".n")) el.hidden = !diarize.checked || !el.classList.contains(mode.value);
      mode.disabled = !diarize.checked;
    };
    mode.addEventListener("change", sync);
    diarize.addEventListener("change", sync);
    sync();
    const item = { file, li, upload: null };
    li.querySelector(".remove").addEventListener("click", () => {
      if (item.upload) item.upload.abort();
      else removePending(item);
    });
    pending.push(item);
    $("#pending").append(li);
  }
  $("#upload-button").disabled = pending.length === 0;
  say(`${pending.length} file${pending.length === 1 ? "" : "s"} ready to upload.`);
}

function removePending(item) {
  const i = pending.indexOf(item);
  if (i >= 0) pending.splice(i, 1);
  item.li.remove();
  $("#upload-button").disabled = pending.length === 0;
}

/** The form fields of one file's options. */
function fieldsOf(li) {
  const f = {};
  const lang = li.querySelector("[name=language]").value;
  if (lang !== "auto") f.language = lang;
  const diarize = li.querySelector("[name=diarize]").checked;
  f.diarize = String(diarize);
  const mode = li.querySelector("[name=speaker-mode]").value;
  if (diarize && mode === "exact") f.num_speakers = li.querySelector("[name=num_speakers]").value;
  if (diarize && mode === "range") {
    f.min_speakers = li.querySelector("[name=min_speakers]").value;
    f.max_speakers = li.querySelector("[name=max_speakers]").value;
  }
  return f;
}

async function uploadOne(item) {
  const { li, file } = item;
  const bar = li.querySelector("progress");
  const text = li.querySelector(".up-text");
  const error = li.querySelector(".error");
  const remove = li.querySelector(".remove");
  li.querySelector(".up").hidden = false;
  li.querySelector(".opts").setAttribute("inert", "");
  error.textContent = "";
  remove.textContent = "Cancel upload";
  const note = li.querySelector(".up-note");
  note.textContent = "";
  let tus = null;
  if (file.size >= tusThreshold()) {
    try {
      tus = await loadTus();
    } catch {
      note.textContent =
        "Resumable uploads are not available on this server (tus-js-client is not installed), " +
        "so this file goes in one request: an interruption starts it over.";
    }
    if (!pending.includes(item)) return null; // removed while the library loaded
  }
  let t0 = performance.now();
  let fromBytes = 0; // bytes the gateway held when this session of the upload began
  const show = (loaded, total, resumedAt = null) => {
    if (resumedAt != null && resumedAt !== fromBytes) {
      // Resumed (after a reload, or a dropped connection): speed counts from here.
      fromBytes = resumedAt;
      t0 = performance.now();
      if (resumedAt) say(`Resuming ${file.name} at ${bytes(resumedAt)}.`);
    }
    const secs = (performance.now() - t0) / 1000;
    bar.value = total ? (100 * loaded) / total : 0;
    const speed = secs > 0 && loaded > fromBytes ? `${bytes((loaded - fromBytes) / secs)}/s` : "";
    const parts = [`${bytes(loaded)} of ${bytes(total)}`];
    if (speed) parts.push(speed);
    if (resumedAt) parts.push(`resumed at ${bytes(resumedAt)}`);
    text.textContent = parts.join(" · ");
  };
  item.upload = tus ? uploadResumable(tus, file, fieldsOf(li), show) : uploadJob(file, fieldsOf(li), show);
  li.dataset.via = tus ? "tus" : "form";
  try {
    const accepted = await item.upload.promise;
    removePending(item);
    say(`Uploaded ${file.name}; job ${accepted.id} is ${accepted.status}.`);
    return accepted.id;
  } catch (e) {
    item.upload = null;
    remove.textContent = "Remove";
    li.querySelector(".opts").removeAttribute("inert");
    li.querySelector(".up").hidden = true;
    if (e.code === "aborted") {
      removePending(item);
      say(`Upload of ${file.name} cancelled.`);
    } else {
      error.textContent = `${e.message} (${e.code})`;
    }
    return null;
  }
}

async function uploadAll(event) {
  event.preventDefault();
  const items = pending.filter((p) => !p.upload);
  if (!items.length) return;
  $("#upload-button").disabled = true;
  const done = await Promise.all(items.map(uploadOne));
  $("#upload-button").disabled = pending.length === 0;
  if (done.some(Boolean)) await onUploaded();
}

/**
 * Wire the upload form. `sayFn(text)`: a message for the page's live region; `uploaded()`: called
 * (awaited) after a batch in which at least one upload made a job.
 */
export function initUploads(sayFn, uploaded) {
  say = sayFn;
  onUploaded = uploaded;
  $("#files").addEventListener("change", (e) => {
    addFiles([...e.target.files]);
    e.target.value = "";
  });
  // A file dropped anywhere else would make the browser open it in place of the page.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
  const dz = $("#dropzone");
  dz.addEventListener("dragover", (e) => {
    e.preventDefault();
    dz.classList.add("over");
  });
  dz.addEventListener("dragleave", () => dz.classList.remove("over"));
  dz.addEventListener("drop", (e) => {
    e.preventDefault();
    dz.classList.remove("over");
    addFiles([...e.dataTransfer.files]);
  });
  $("#upload-form").addEventListener("submit", uploadAll);
}
