// The transcript view: the job's audio, its segments grouped by speaker (a colour each), the word
// being spoken highlighted as it plays, click a word to seek there, search, rename speakers, and
// download every format with those names (`speaker_names` of the result request).

import { api, ApiError, getJson, getKey, saveBlob } from "./api.js";

const FORMATS = ["json", "srt", "vtt", "txt", "tsv"];
/** Speaker colours (CSS classes spk-0 .. spk-7, light and dark variants in app.css). */
const COLOURS = 8;

/** "m:ss" (or "h:mm:ss") of a time in seconds. */
export function clock(s) {
  const t = Math.max(0, Math.floor(s));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = String(t % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

/** Index of the word spoken at time `t`: the last whose start <= t, if t is before its end (+ a gap). */
function wordAt(starts, ends, t) {
  let lo = 0;
  let hi = starts.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (starts[mid] <= t) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found >= 0 && t < ends[found] + 0.25 ? found : -1;
}

/**
 * Make the <audio> element play `/v1/jobs/{id}/audio` with the key: through the service worker
 * (range requests, nothing downloaded ahead) when one controls the page, else as a downloaded copy.
 */
async function attachAudio(audio, jobId) {
  const path = `/v1/jobs/${jobId}/audio`;
  const sw = navigator.serviceWorker && navigator.serviceWorker.controller;
  if (sw) {
    const ok = await new Promise((resolve) => {
      const ch = new MessageChannel();
      const timer = setTimeout(() => resolve(false), 2000);
      ch.port1.onmessage = () => {
        clearTimeout(timer);
        resolve(true);
      };
      sw.postMessage({ key: getKey() }, [ch.port2]);
    });
    if (ok) {
      audio.dataset.source = "service-worker";
      audio.src = path;
      return;
    }
  }
  const blob = await (await api(path)).blob();
  audio.dataset.source = "blob";
  audio.src = URL.createObjectURL(blob);
}

export class TranscriptView {
  /** `root`: the #transcript section; `onStatus(text)`: a message for the page's live region. */
  constructor(root, onStatus) {
    this.root = root;
    this.onStatus = onStatus;
    this.audio = root.querySelector("#audio");
    this.body = root.querySelector("#segments");
    this.speakersEl = root.querySelector("#speakers");
    this.search = root.querySelector("#search");
    this.searchCount = root.querySelector("#search-count");
    this.downloads = root.querySelector("#downloads");
    this.title = root.querySelector("#transcript-title");
    this.names = {};
    this.active = -1;
    this.hits = [];
    this.hitIndex = -1;
    this.raf = 0;

    this.body.addEventListener("click", (e) => {
      const w = e.target.closest("[data-i]");
      const seek = e.target.closest("[data-seek]");
      if (w) this.seek(this.words[Number(w.dataset.i)].start);
      else if (seek) this.seek(Number(seek.dataset.seek));
    });
    this.audio.addEventListener("play", () => this.follow());
    this.audio.addEventListener("seeked", () => this.highlight());
    this.audio.addEventListener("timeupdate", () => this.highlight());
    this.audio.addEventListener("error", () => this.audioFailed());
    this.search.addEventListener("input", () => this.find());
    this.search.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        this.nextHit(e.shiftKey ? -1 : 1);
      }
    });
    root.querySelector("#close-transcript").addEventListener("click", () => this.close());
    for (const fmt of FORMATS) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = fmt.toUpperCase();
      b.dataset.format = fmt;
      b.setAttribute("aria-label", `Download ${fmt.toUpperCase()}`);
      b.addEventListener("click", () => this.download(fmt));
      this.downloads.append(b);
    }
  }

  /** Load and show job `job` (its record): the result JSON, then the audio. */
  async open(job) {
    this.close();
    this.job = job;
    this.names = {};
    this.title.textContent = job.filename || job.id;
    this.root.hidden = false;
    this.body.textContent = "Loading…";
    try {
      this.result = await getJson(`/v1/jobs/${job.id}/result?format=json`);
    } catch (err) {
      this.body.textContent = `Cannot load the transcript: ${err.message} (${err.code})`;
      return;
    }
    this.render();
    this.root.querySelector("h2").focus();
    try {
      await attachAudio(this.audio, job.id);
    } catch (err) {
      this.onStatus(`The audio cannot be played: ${err.message} (${err.code || "error"})`);
    }
  }

  close() {
    cancelAnimationFrame(this.raf);
    this.audio.pause();
    if (this.audio.src.startsWith("blob:")) URL.revokeObjectURL(this.audio.src);
    this.audio.removeAttribute("src");
    this.audio.load();
    this.root.hidden = true;
    this.retried = false;
  }

  async audioFailed() {
    if (!this.job || !this.audio.getAttribute("src")) return;
    if (this.audio.dataset.source === "service-worker" && !this.retried) {
      this.retried = true; // a restarted service worker lost the key: download a copy instead
      try {
        const blob = await (await api(`/v1/jobs/${this.job.id}/audio`)).blob();
        this.audio.dataset.source = "blob";
        this.audio.src = URL.createObjectURL(blob);
        return;
      } catch (err) {
        this.onStatus(`The audio cannot be played: ${err.message}`);
        return;
      }
    }
    this.onStatus("The audio cannot be played in this browser.");
  }

  /** Speaker label -> index for its colour, in order of first appearance. */
  speakerIndex() {
    const idx = new Map();
    for (const s of this.result.speakers || []) idx.set(s.id, idx.size);
    for (const seg of this.result.segments) if (seg.speaker && !idx.has(seg.speaker)) idx.set(seg.speaker, idx.size);
    return idx;
  }

  nameOf(label) {
    return this.names[label] || label;
  }

  render() {
    const segs = this.result.segments;
    this.spk = this.speakerIndex();
    this.words = [];
    this.body.textContent = "";
    this.wordEls = [];
    // Consecutive segments of one speaker form one block (a speaker "turn").
    let block = null;
    let last;
    for (const seg of segs) {
      if (!block || seg.speaker !== last) {
        block = document.createElement("div");
        block.className = `turn spk-${(this.spk.get(seg.speaker) ?? 0) % COLOURS}`;
        block.dataset.speaker = seg.speaker || "";
        const head = document.createElement("div");
        head.className = "turn-head";
        const who = document.createElement("span");
        who.className = "who";
        who.dataset.label = seg.speaker || "";
        who.textContent = seg.speaker ? this.nameOf(seg.speaker) : "";
        const at = document.createElement("button");
        at.type = "button";
        at.className = "at";
        at.dataset.seek = String(seg.start);
        at.textContent = clock(seg.start);
        at.setAttribute("aria-label", `Play from ${clock(seg.start)}`);
        head.append(who, at);
        block.append(head);
        const p = document.createElement("p");
        block.append(p);
        this.body.append(block);
        last = seg.speaker;
      }
      const p = block.lastElementChild;
      const words = seg.words && seg.words.length ? seg.words : [{ word: seg.text, start: seg.start, end: seg.end }];
      for (const w of words) {
        if (p.childNodes.length) p.append(" ");
        const span = document.createElement("span");
        span.className = "w";
        span.dataset.i = String(this.words.length);
        span.textContent = w.word;
        this.words.push({ start: w.start, end: w.end, text: w.word });
        this.wordEls.push(span);
        p.append(span);
      }
    }
    this.starts = this.words.map((w) => w.start);
    this.ends = this.words.map((w) => w.end);
    this.renderSpeakers();
    this.find();
  }

  renderSpeakers() {
    this.speakersEl.textContent = "";
    for (const [label, i] of this.spk) {
      const row = document.createElement("div");
      row.className = `speaker spk-${i % COLOURS}`;
      const id = `name-${i}`;
      const lab = document.createElement("label");
      lab.htmlFor = id;
      lab.textContent = `Name for ${label}`;
      const input = document.createElement("input");
      input.id = id;
      input.type = "text";
      input.maxLength = 80;
      input.placeholder = label;
      input.dataset.label = label;
      input.autocomplete = "off";
      input.addEventListener("input", () => {
        const v = input.value.trim();
        if (v) this.names[label] = v;
        else delete this.names[label];
        for (const el of this.body.querySelectorAll(".who")) {
          if (el.dataset.label === label) el.textContent = this.nameOf(label);
        }
      });
      row.append(lab, input);
      this.speakersEl.append(row);
    }
  }

  seek(t) {
    this.audio.currentTime = t;
    this.highlight();
  }

  /** Highlight the word at the audio's time every frame while it plays. */
  follow() {
    cancelAnimationFrame(this.raf);
    const step = () => {
      this.highlight();
      if (!this.audio.paused && !this.audio.ended) this.raf = requestAnimationFrame(step);
    };
    this.raf = requestAnimationFrame(step);
  }

  highlight() {
    if (!this.words) return;
    const i = wordAt(this.starts, this.ends, this.audio.currentTime);
    if (i === this.active) return;
    if (this.active >= 0) {
      this.wordEls[this.active].classList.remove("now");
      this.wordEls[this.active].removeAttribute("aria-current");
    }
    this.active = i;
    if (i >= 0) {
      const el = this.wordEls[i];
      el.classList.add("now");
      el.setAttribute("aria-current", "true");
      if (!this.audio.paused) el.scrollIntoView({ block: "nearest" });
    }
  }

  find() {
    const q = this.search.value.trim().toLowerCase();
    for (const i of this.hits) this.wordEls[i].classList.remove("hit");
    this.hits = [];
    this.hitIndex = -1;
    if (q) {
      const terms = q.split(/\s+/);
      this.words.forEach((w, i) => {
        const text = w.text.toLowerCase();
        if (terms.every((t) => text.includes(t))) this.hits.push(i);
      });
      for (const i of this.hits) this.wordEls[i].classList.add("hit");
    }
    this.searchCount.textContent = q ? `${this.hits.length} match${this.hits.length === 1 ? "" : "es"}` : "";
  }

  nextHit(dir) {
    if (!this.hits.length) return;
    this.hitIndex = (this.hitIndex + dir + this.hits.length) % this.hits.length;
    const i = this.hits[this.hitIndex];
    this.wordEls[i].scrollIntoView({ block: "center" });
    this.seek(this.words[i].start);
  }

  /** Download the result in `fmt`, with the speakers' names. */
  async download(fmt) {
    const params = new URLSearchParams({ format: fmt });
    if (Object.keys(this.names).length) params.set("speaker_names", JSON.stringify(this.names));
    try {
      const resp = await api(`/v1/jobs/${this.job.id}/result?${params}`);
      const stem = (this.job.filename || this.job.id).replace(/\.[^.]+$/, "");
      saveBlob(await resp.blob(), `${stem}.${fmt}`);
      this.onStatus(`Downloaded ${fmt.toUpperCase()}.`);
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(0, "error", String(err));
      this.onStatus(`Download failed: ${e.message} (${e.code})`);
    }
  }
}
