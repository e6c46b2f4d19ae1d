"""The web page in a real browser: Debian's Chromium driven by Playwright, against a real gateway
(keys required) and a real Celery worker, on real speech.

Four real jobs in all: pyannote's two-speaker sample call, uploaded by drag and drop at desktop
width as a resumable (tus) upload (the page's threshold lowered) that loses its connection once
and is resumed after a page reload, serves the transcript tests (WER against its STM script, two
speakers, click-to-seek, the highlighted word following playback, renamed speakers in the SRT
download) and is deleted last; the same call looped four times is cancelled while it runs (and
during its upload twice, which never makes a job: once sent in one request because the tus
bundle is missing, once as a resumable upload, deleted on the gateway); a file ffmpeg cannot
decode waits behind it (its queue position shown), then fails and shows its code; a one-sentence
clip is submitted with the keyboard alone at 375 px, in the dark scheme.
Times are checked against the job's own JSON result (the API's words), never against durations.

Screenshots of each state go to `$TEST_ARTIFACTS_DIR` (default `data/test-artifacts/web/`).
Set `E2E_REDIS_URL` to run the service on another Redis database than the e2e default.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.e2e.conftest import Service, start_service, stop_service
from tests.e2e.test_fair_share import create_key
from tests.hostile_media import unknown_codec_wav
from tests.metrics import wer
from tests.speech import SAMPLE_WAV, read_stm, synth
from whisperx_service.errors import AudioDecodeFailed

playwright_api = pytest.importorskip("playwright.sync_api")

#: WER ceiling of the tiny.en model on the sample call (as tests/e2e/test_jobs_e2e.py allows).
MAX_WER = 0.25
#: How far (s) the audio's currentTime may be from the clicked word's start: the issue's ±0.3 s.
SEEK_TOL_S = 0.3
#: Slack (s) after a word's end during which the page still highlights it (player.js `wordAt`).
HIGHLIGHT_SLACK_S = 0.25
#: Milliseconds the page gets for a job to finish (CPU models on a busy 2-core machine).
JOB_TIMEOUT_MS = 300_000
CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR") or REPO / "data" / "test-artifacts" / "web")
SHORT_TEXT = "The quick brown fox jumps over the lazy dog near the river bank."
#: The page's tus threshold and PATCH size in these tests (bytes; localStorage overrides of
#: resumable.js's 64 MiB): the 0.9 MB sample call goes as a resumable upload in 8 PATCHes.
TUS_THRESHOLD = 64 * 1024
TUS_CHUNK = 128 * 1024
#: The sample upload's PATCH that the test drops (its connection reset; tus-js-client retries it)
#: and the one it holds unanswered while it reloads the page (1-based counts of PATCH requests).
DROPPED_PATCH = 2
HELD_PATCH = 5

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make install)")


@dataclass
class Web:
    """The running service, a key for it, and the browser."""

    svc: Service
    key: str
    browser: Any

    def page(self, width: int = 1200, height: int = 900, scheme: str = "light") -> Any:
        """A fresh page (own context: own sessionStorage and service worker) at `width` x `height`,
        the system's colour scheme `scheme` (light or dark)."""
        ctx = self.browser.new_context(
            viewport={"width": width, "height": height}, accept_downloads=True, color_scheme=scheme
        )
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{self.svc.url}/")
        page.wait_for_selector("html[data-ready='1']")
        return page

    def api(self, path: str, **kw: Any) -> httpx.Response:
        """A request to the gateway with the key."""
        with httpx.Client(base_url=self.svc.url, timeout=30) as c:
            return c.request(kw.pop("method", "GET"), path, headers={"Authorization": f"Bearer {self.key}"}, **kw)


def shot(page: Any, name: str) -> None:
    """Save a full-page screenshot as a test artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, key: str) -> None:
    page.fill("#key", key)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#app:not([hidden])")


def row(page: Any, filename: str) -> Any:
    """The jobs list's row of the newest job of `filename`."""
    return page.locator("#job-list li.job", has_text=filename).first


def wait_status(page: Any, filename: str, statuses: str) -> str:
    """Wait until the row of `filename` shows one of `statuses` (space-separated); returns it."""
    wanted = statuses.split()
    page.wait_for_function(
        """([name, wanted]) => [...document.querySelectorAll('#job-list li.job')].some(
               li => li.querySelector('.job-name').textContent === name && wanted.includes(li.dataset.status))""",
        arg=[filename, wanted],
        timeout=JOB_TIMEOUT_MS,
    )
    return str(row(page, filename).get_attribute("data-status"))


def record_progress(page: Any) -> None:
    """Collect every text the jobs list's live progress shows (a MutationObserver in the page)."""
    page.evaluate(
        """() => {
            window.seen = [];
            new MutationObserver(() => {
                for (const li of document.querySelectorAll('#job-list li.job')) {
                    const t = li.querySelector('.live-text').textContent;
                    const bar = li.querySelector('progress');
                    const last = window.seen[window.seen.length - 1];
                    const item = {status: li.dataset.status, text: t, value: bar.value, shown: !bar.hidden};
                    if (!last || JSON.stringify(last) !== JSON.stringify(item)) window.seen.push(item);
                }
            }).observe(document.querySelector('#job-list'), {subtree: true, childList: true, characterData: true,
                                                          attributes: true});
        }"""
    )


def drop_file(page: Any, path: Path, mime: str = "audio/wav") -> None:
    """Drop `path` on the drop zone as a browser does (a `drop` event carrying a File with the
    file's modification time, as a dragged file has: tus-js-client's fingerprint includes it)."""
    data = base64.b64encode(path.read_bytes()).decode()
    page.evaluate(
        """([name, mime, b64, mtime]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: mime, lastModified: mtime}));
            const dz = document.querySelector('#dropzone');
            dz.dispatchEvent(new DragEvent('dragover', {dataTransfer: dt, bubbles: true, cancelable: true}));
            dz.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
        }""",
        [path.name, mime, data, int(path.stat().st_mtime * 1000)],
    )


def set_tus_sizes(page: Any) -> None:
    """Lower the page's tus threshold and PATCH size to TUS_THRESHOLD and TUS_CHUNK (its
    localStorage settings, kept by the page's origin across reloads)."""
    page.evaluate(
        "([t, c]) => { localStorage.setItem('wxs.tusThresholdBytes', t);"
        "              localStorage.setItem('wxs.tusChunkBytes', c); }",
        [str(TUS_THRESHOLD), str(TUS_CHUNK)],
    )


def upload_dirs(web: Web) -> set[str]:
    """The ids of the resumable uploads in the service's storage."""
    root = web.svc.storage / "uploads"
    return {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()


def wait_until(check: Any, page: Any, timeout_s: float = 30.0) -> None:
    """Poll `check()` every 50 ms of the page's time (its routes keep being served) until true."""
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"not true within {timeout_s} s: {check}")


def gone(page: Any, job_id: str) -> None:
    """Wait until the jobs list has no row for `job_id`.

    (Every page-side wait is a function, not an expression string: the page's CSP forbids eval.)
    """
    page.wait_for_function("id => !document.querySelector(`#job-list li.job[data-id='${id}']`)", arg=job_id)


def audio_time(page: Any) -> float:
    return float(page.evaluate("document.querySelector('#audio').currentTime"))


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Web]:
    env = {"AUTH_ENABLED": "true"}
    if os.environ.get("E2E_REDIS_URL"):
        env["REDIS_URL"] = os.environ["E2E_REDIS_URL"]
    svc = start_service(tmp_path_factory.mktemp("web"), redis_url, models_dir, **env)
    try:
        key = create_key(svc, "web")
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--autoplay-policy=no-user-gesture-required", "--mute-audio"]
            )
            yield Web(svc, key, browser)
            browser.close()
    finally:
        stop_service(svc)


@pytest.fixture(scope="module")
def looped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample call four times over (2 min): a job that runs long enough to be cancelled."""
    out = tmp_path_factory.mktemp("loop") / "looped-call.wav"
    subprocess.run(["sox", str(SAMPLE_WAV), str(out), "repeat", "3"], check=True)
    return out


@dataclass
class SampleRun:
    """The sample call uploaded through the page, with what the page showed on the way.

    patches: `Upload-Offset` of each PATCH the page sent (bytes), in order, the dropped and the
    held one included. resumed: the page's upload text after the reload, once it went on.
    """

    page: Any
    job: dict[str, Any]
    result: dict[str, Any]
    seen: list[dict[str, Any]]
    patches: list[int]
    resumed: str


def choose_sample(page: Any) -> None:
    """Drop the sample call on the page and ask for exactly two speakers."""
    drop_file(page, SAMPLE_WAV)
    item = page.locator("#pending li").first
    item.locator("[name=speaker-mode]").select_option("exact")
    item.locator("[name=num_speakers]").fill("2")


@pytest.fixture(scope="module")
def sample(web: Web) -> SampleRun:
    page = web.page()
    sign_in(page, web.key)
    shot(page, "02-signed-in")
    set_tus_sizes(page)
    # The network between page and gateway: one PATCH's connection is reset (tus-js-client asks
    # HEAD and sends it again), a later one never answered, and the page reloaded while it waits.
    # The answer to the last PATCH loses its Job-Id (as when it never arrives): the page asks for
    # the job of the finished upload itself (`POST /v1/jobs` with `upload_id`: the same job).
    patches: list[int] = []
    held: list[Any] = []
    job_ids: list[str | None] = []
    job_posts: list[str | None] = []
    last_part = (SAMPLE_WAV.stat().st_size - 1) // TUS_CHUNK * TUS_CHUNK

    def network(route: Any) -> None:
        if route.request.method != "PATCH":
            route.continue_()
            return
        patches.append(int(route.request.headers["upload-offset"]))
        if len(patches) == DROPPED_PATCH:
            route.abort("connectionreset")
        elif len(patches) == HELD_PATCH:
            held.append(route)
        elif patches[-1] == last_part:
            answer = route.fetch()
            job_ids.append(answer.headers.get("job-id"))
            route.fulfill(response=answer, headers={k: v for k, v in answer.headers.items() if k != "job-id"})
        else:
            route.continue_()

    page.on(
        "request",
        lambda r: job_posts.append(r.post_data) if r.method == "POST" and r.url.endswith("/v1/jobs") else None,
    )
    page.route("**/v1/uploads/*", network)
    choose_sample(page)
    shot(page, "03-file-chosen")
    page.click("#upload-button")
    assert page.get_attribute("#pending li[data-via]", "data-via") == "tus"  # not the one-request form
    wait_until(lambda: bool(held), page)
    shot(page, "03b-resumable-upload")
    page.reload()
    page.wait_for_selector("#app:not([hidden])")  # the key is still in this tab's sessionStorage
    # The same file and options again: the page finds the upload in localStorage and goes on.
    choose_sample(page)
    record_progress(page)
    page.click("#upload-button")
    page.wait_for_function("() => /resumed at/.test(document.querySelector('#pending .up-text')?.textContent || '')")
    resumed = page.inner_text("#pending .up-text")
    page.wait_for_selector("#job-list li.job[data-status=running]", timeout=JOB_TIMEOUT_MS)
    page.unroute("**/v1/uploads/*")
    shot(page, "04-running")
    assert wait_status(page, SAMPLE_WAV.name, "succeeded failed cancelled") == "succeeded"
    shot(page, "05-succeeded")
    job_id = row(page, SAMPLE_WAV.name).get_attribute("data-id")
    job = web.api(f"/v1/jobs/{job_id}").json()
    result = web.api(f"/v1/jobs/{job_id}/result").json()
    row(page, SAMPLE_WAV.name).get_by_role("button", name=f"Open {SAMPLE_WAV.name}").click()
    page.wait_for_selector("#segments .w")
    page.wait_for_function("() => document.querySelector('#audio').readyState >= 1")
    assert job_ids == [job_id], job_ids  # the last PATCH made the job; its answer lost the Job-Id
    assert len(job_posts) == 1 and json.loads(job_posts[0] or "{}")["num_speakers"] == "2", job_posts
    return SampleRun(page, job, result, page.evaluate("window.seen"), patches, resumed)


def test_a_wrong_key_shows_a_clear_message(web: Web) -> None:
    page = web.page()
    page.fill("#key", "wxs_not-a-real-key")
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#signin-error:not(:empty)")
    assert "not accepted" in page.inner_text("#signin-error")
    assert page.is_hidden("#app") and page.get_attribute("#key", "aria-invalid") == "true"
    assert page.evaluate("sessionStorage.length") == 0
    # The system's light scheme (app.css's light background #f7f7f9).
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(247, 247, 249)"
    shot(page, "01-wrong-key")
    page.context.close()


def test_progress_reaches_100_with_stages(sample: SampleRun) -> None:
    running = [s for s in sample.seen if s["status"] == "running" and s["shown"]]
    assert any(0 < s["value"] < 100 for s in running), sample.seen
    assert any(stage in s["text"] for s in running for stage in ("Transcribing", "Finding speakers")), sample.seen
    assert sample.seen[-1]["status"] == "succeeded" and sample.seen[-1]["value"] == 100
    # The list shows what the job record says: duration, language, speakers.
    meta = row(sample.page, SAMPLE_WAV.name).locator(".job-meta").inner_text()
    assert sample.job["language"] == "en" and sample.job["speakers"] == 2
    assert "30 s" in meta and "en" in meta and "2 speakers" in meta


def test_a_resumable_upload_survives_a_dropped_connection_and_a_reload(web: Web, sample: SampleRun) -> None:
    c = list(range(0, SAMPLE_WAV.stat().st_size, TUS_CHUNK))  # each part's offset
    assert len(c) == 8 and (DROPPED_PATCH, HELD_PATCH) == (2, 5)  # what the offsets below assume
    # The reset 2nd PATCH was sent again at its offset; the held 5th (the 4th part) never reached
    # the gateway, so after the reload the page went on there (the offset HEAD told it), not from
    # zero; after that every part once.
    assert sample.patches == c[:2] + c[1:4] + c[3:], sample.patches
    assert f"resumed at {c[3] // 1024} KB" in sample.resumed, sample.resumed
    # One upload in storage, made the job; the job's file is the call, byte for byte.
    uploads = [json.loads(p.read_text()) for p in (web.svc.storage / "uploads").glob("*/info.json")]
    assert [u["job_id"] for u in uploads] == [sample.job["id"]], uploads
    assert uploads[0]["metadata"]["num_speakers"] == "2"
    source = web.svc.storage / "jobs" / sample.job["id"] / "source"
    assert hashlib.sha256(source.read_bytes()).hexdigest() == hashlib.sha256(SAMPLE_WAV.read_bytes()).hexdigest()
    assert sample.job["filename"] == SAMPLE_WAV.name and sample.job["options"]["num_speakers"] == 2
    # The page keeps no upload URL once the upload is done.
    assert sample.page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tus::'))") == []


def test_transcript_matches_the_script_with_two_speakers(sample: SampleRun) -> None:
    page = sample.page
    text = page.evaluate("[...document.querySelectorAll('#segments .turn p')].map(p => p.textContent).join(' ')")
    w = wer(" ".join(t.text for t in read_stm()), text)
    assert w <= MAX_WER, f"WER {w:.3f}: {text}"
    shown = set(page.eval_on_selector_all("#segments .turn", "els => els.map(e => e.dataset.speaker)"))
    assert shown == {s["id"] for s in sample.result["speakers"]} and len(shown) == 2
    assert page.locator("#speakers input").count() == 2
    # One colour per speaker.
    colours = page.eval_on_selector_all(
        "#segments .turn", "els => [...new Set(els.map(e => e.dataset.speaker + getComputedStyle(e).borderLeftColor))]"
    )
    assert len(colours) == 2
    assert page.get_attribute("#audio", "data-source") == "service-worker"  # streamed with ranges, not downloaded
    shot(page, "06-transcript")


def test_clicking_a_word_seeks_the_audio_to_it(sample: SampleRun) -> None:
    page = sample.page
    words = [w for s in sample.result["segments"] for w in s["words"]]
    for k in (len(words) // 3, 2 * len(words) // 3):
        page.locator("#segments .w").nth(k).click()
        assert page.locator("#segments .w").nth(k).inner_text() == words[k]["word"]
        assert abs(audio_time(page) - words[k]["start"]) <= SEEK_TOL_S, (k, audio_time(page), words[k])


def test_the_highlighted_word_follows_playback(sample: SampleRun) -> None:
    page = sample.page
    words = [w for s in sample.result["segments"] for w in s["words"]]
    # Play from the first word of the segment with the most words: speech without long pauses.
    longest = max(sample.result["segments"], key=lambda s: len(s["words"]))
    first = words.index(longest["words"][0])
    page.locator("#segments .w").nth(first).click()
    page.evaluate("document.querySelector('#audio').play()")
    highlighted = []
    for _ in range(6):
        page.wait_for_timeout(400)
        # Read the time and the highlight in one go, while it plays.
        t, i = page.evaluate(
            """() => { const a = document.querySelector('#audio'); const now = document.querySelector('.w.now');
                       return [a.currentTime, now ? Number(now.dataset.i) : -1]; }"""
        )
        if i >= 0:
            # The word shown is the one being spoken (a frame's lag allowed).
            assert words[i]["start"] <= t + 0.1 and t <= words[i]["end"] + HIGHLIGHT_SLACK_S + 0.1, (t, words[i])
            highlighted.append(i)
    page.evaluate("document.querySelector('#audio').pause()")
    assert audio_time(page) > words[first]["start"] + 2.0, "the audio did not play"
    assert len(set(highlighted)) >= 3 and highlighted == sorted(highlighted), highlighted
    shot(page, "07-playing")


def test_renamed_speaker_reaches_the_srt_download(sample: SampleRun) -> None:
    page = sample.page
    label = sample.result["speakers"][0]["id"]
    page.get_by_label(f"Name for {label}").fill("Alice Example")
    assert "Alice Example" in page.locator("#segments .who").all_inner_texts()
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download SRT").click()
    srt = Path(dl.value.path()).read_text(encoding="utf-8")
    assert "[Alice Example]" in srt and f"[{label}]" not in srt
    other = sample.result["speakers"][1]["id"]
    assert f"[{other}]" in srt
    shot(page, "08-renamed")


def test_cancel_an_upload_and_a_running_job_queue_and_failure(web: Web, looped: Path) -> None:
    page = web.page()
    sign_in(page, web.key)
    before = len(web.api("/v1/jobs").json()["jobs"])
    # A slow link (Chromium's network emulation: 256 KB/s up) to see the upload's progress and cancel it.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 256 * 1024},
    )
    # Over the (lowered) tus threshold, but the tus-js-client bundle is missing (an install
    # without npm): the page says so and sends the file in one request, which can be cancelled.
    set_tus_sizes(page)
    page.route("**/static/vendor/tus.min.js", lambda route: route.fulfill(status=404))
    page.set_input_files("#files", str(looped))
    page.click("#upload-button")
    page.wait_for_function("() => / of .*\\/s/.test(document.querySelector('#pending .up-text')?.textContent || '')")
    progress = page.inner_text("#pending .up-text")
    assert "MB" in progress and "/s" in progress, progress
    assert page.get_attribute("#pending li", "data-via") == "form"
    assert "not available" in page.inner_text("#pending .up-note")
    shot(page, "09-uploading")
    page.get_by_role("button", name="Cancel upload").click()
    page.wait_for_function("() => document.querySelectorAll('#pending li').length === 0")
    assert len(web.api("/v1/jobs").json()["jobs"]) == before
    # With the bundle back, the same file goes as a resumable upload; cancelling it deletes the
    # upload on the gateway (tus termination) and the page forgets its URL.
    page.unroute("**/static/vendor/tus.min.js")
    uploads_before = upload_dirs(web)
    page.set_input_files("#files", str(looped))
    page.click("#upload-button")
    page.wait_for_function("() => / of .*\\/s/.test(document.querySelector('#pending .up-text')?.textContent || '')")
    assert page.get_attribute("#pending li", "data-via") == "tus"
    assert page.inner_text("#pending .up-note") == ""
    wait_until(lambda: len(upload_dirs(web)) == len(uploads_before) + 1, page)
    shot(page, "09b-uploading-resumable")
    page.get_by_role("button", name="Cancel upload").click()
    page.wait_for_function("() => document.querySelectorAll('#pending li').length === 0")
    wait_until(lambda: upload_dirs(web) == uploads_before, page)
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tus::'))") == []
    assert len(web.api("/v1/jobs").json()["jobs"]) == before
    page.evaluate("() => localStorage.clear()")  # the tus threshold back at 64 MiB: one request again
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": -1})  # fmt: skip
    # Now the whole file. Once a worker (the only one, one slot) runs it, a second job waits in
    # the queue and shows its place; then the first is cancelled and the second, a file ffmpeg
    # cannot decode, runs and fails with its message and code.
    page.set_input_files("#files", str(looped))
    page.click("#upload-button")
    page.wait_for_selector("#job-list li.job[data-status=running]", timeout=JOB_TIMEOUT_MS)
    page.set_input_files("#files", files=[{"name": "bad-codec.wav", "mimeType": "audio/wav",
                                           "buffer": unknown_codec_wav()}])  # fmt: skip
    page.click("#upload-button")
    waiting = row(page, "bad-codec.wav")
    waiting.locator(".live-text", has_text="position 1 among this key's queued jobs").wait_for()
    assert waiting.get_attribute("data-status") == "queued"
    shot(page, "10-queued")
    target = row(page, looped.name)
    target.get_by_role("button", name=f"Cancel {looped.name}").click()
    assert wait_status(page, looped.name, "succeeded failed cancelled") == "cancelled"
    job_id = target.get_attribute("data-id")
    assert web.api(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    assert target.locator(".badge").inner_text() == "cancelled"
    assert wait_status(page, "bad-codec.wav", "succeeded failed cancelled") == "failed"
    error = waiting.locator(".error").inner_text()
    assert error == f"{AudioDecodeFailed.public_message} (audio_decode_failed)", error
    shot(page, "11-cancelled-and-failed")
    page.context.close()


def tab_to(page: Any, selector: str, max_tabs: int = 40) -> None:
    """Press Tab until the focused element matches `selector` (fails if it is never reached)."""
    path = []
    for _ in range(max_tabs):
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
        path.append(page.evaluate("() => document.activeElement?.outerHTML.slice(0, 80)"))
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} is not reachable with Tab; focus went {path}")


def test_phone_width_dark_keyboard_only(web: Web, sample: SampleRun, tmp_path: Path) -> None:
    clip = tmp_path / "short-clip.wav"
    synth(SHORT_TEXT, "A", clip)
    page = web.page(width=375, height=812, scheme="dark")
    # The system's dark scheme: the page follows it (app.css's dark background #121317).
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(18, 19, 23)"
    page.bring_to_front()  # the active tab: only it may open a file chooser from a key press
    # Sign in, choose the file, set its options and submit with the keyboard alone.
    tab_to(page, "#key")
    page.keyboard.type(web.key)
    page.keyboard.press("Enter")
    page.wait_for_selector("#app:not([hidden])")
    tab_to(page, "#files")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(str(clip))
    tab_to(page, "#pending [name=diarize]")
    page.keyboard.press("Space")  # no speaker labels for one voice
    assert not page.is_checked("#pending [name=diarize]")
    tab_to(page, "#upload-button")
    shot(page, "12-phone-keyboard")
    page.keyboard.press("Enter")
    assert wait_status(page, clip.name, "succeeded failed cancelled") == "succeeded"
    job_id = row(page, clip.name).get_attribute("data-id")
    assert web.api(f"/v1/jobs/{job_id}").json()["options"]["diarize"] is False
    text = " ".join(s["text"] for s in web.api(f"/v1/jobs/{job_id}/result").json()["segments"])
    assert wer(SHORT_TEXT, text) <= MAX_WER, text
    # Nothing is wider than the phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # Open the sample call's transcript with the keyboard; seek by a segment's time button.
    tab_to(page, f'button[aria-label="Open {SAMPLE_WAV.name}"]')
    page.keyboard.press("Enter")
    page.wait_for_selector("#segments .w")
    page.wait_for_function("() => document.querySelector('#audio').readyState >= 1")
    third = "#segments .turn:nth-child(3) .at"
    start = float(page.get_attribute(third, "data-seek"))
    assert any(abs(s["start"] - start) < 1e-6 for s in sample.result["segments"])
    tab_to(page, third, max_tabs=80)
    page.keyboard.press("Enter")
    assert abs(audio_time(page) - start) <= SEEK_TOL_S
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    # A word tapped at phone width seeks too.
    words = [w for s in sample.result["segments"] for w in s["words"]]
    page.locator("#segments .w").nth(len(words) // 2).click()
    assert abs(audio_time(page) - words[len(words) // 2]["start"]) <= SEEK_TOL_S
    shot(page, "13-phone-transcript")
    # Delete the short job from the phone (Delete, then Confirm delete).
    page.click("#close-transcript")
    target = row(page, clip.name)
    target.get_by_role("button", name=f"Delete {clip.name}").click()
    target.get_by_role("button", name=f"Delete {clip.name}").click()
    gone(page, job_id)
    assert web.api(f"/v1/jobs/{job_id}").status_code == 404
    page.context.close()


def test_delete_a_finished_job(web: Web, sample: SampleRun) -> None:
    page = sample.page
    job_id = sample.job["id"]
    target = page.locator(f'#job-list li.job[data-id="{job_id}"]')
    target.get_by_role("button", name=f"Delete {SAMPLE_WAV.name}").click()
    assert target.get_by_role("button", name=f"Delete {SAMPLE_WAV.name}").inner_text() == "Confirm delete"
    target.get_by_role("button", name=f"Delete {SAMPLE_WAV.name}").click()
    gone(page, job_id)
    assert page.is_hidden("#transcript")
    assert web.api(f"/v1/jobs/{job_id}").status_code == 404
    assert web.api(f"/v1/jobs/{job_id}/audio").status_code == 404
    shot(page, "14-deleted")
