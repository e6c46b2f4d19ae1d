"""The `whisperx-client` command line.

    whisperx-client transcribe FILE|URL... [--format srt|vtt|txt|tsv|json] [-o DIR] [--speakers N]
                               [--language xx] [--no-diarize] [--concurrency N] [--resume]
    whisperx-client jobs list [--status S] [--limit N] [--owner NAME]
    whisperx-client jobs status|cancel|result|wait JOB_ID ...

Every command takes `--url` (default `$WHISPERX_URL`, else http://127.0.0.1:8000), `--api-key`
(default `$WHISPERX_API_KEY`) and `--json` (one JSON document on stdout, nothing else there).
`transcribe` shows a progress bar per file on a terminal (upload bytes, then stage, percent and
the worker's ETA from the job's event stream), plain lines when stdout is not a terminal, and
writes one output per input, `<DIR>/<input stem>.<format>` (temp file, fsync, rename). Files over
64 MiB go as resumable uploads (tus): a dropped connection is retried from the gateway's offset,
and `--resume` continues the upload an interrupted earlier run left (same file, size and mtime);
the bar (or a line) says where it resumed. An http(s) URL is not uploaded: the service fetches it
(the stem is the URL's last path segment's, else `download`). Ctrl-C
asks whether to cancel the unfinished jobs when stdin is a terminal, and cancels them otherwise.

Exit codes: 0 every file or job succeeded; 1 some failed (a refused upload, a failed or
cancelled job, an error answer); 2 a usage error; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO
from urllib.parse import unquote, urlsplit

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn

from whisperx_client import __version__
from whisperx_client._core import source_url
from whisperx_client.async_client import AsyncClient
from whisperx_client.client import Client
from whisperx_client.errors import (
    ApiError,
    Conflict,
    JobFailed,
    ProtocolError,
    TransportError,
    WaitTimeout,
    WhisperXError,
)
from whisperx_client.models import FORMATS, Event, Job

#: Where the gateway listens when neither `--url` nor `$WHISPERX_URL` says (`make run`'s default).
DEFAULT_URL = "http://127.0.0.1:8000"
#: Exit codes.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: Plain progress lines are printed at each stage change and every this many percent.
LINE_STEP_PERCENT = 10.0


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all: a temp file in the same folder, fsync, rename.

    The file gets mode 0644 (mkstemp's 0600 is for secrets). Raises OSError when it cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _eta(seconds: float | None) -> str:
    """`ETA 1:02:03` / `ETA 4:05` for seconds left, "" when unknown."""
    if seconds is None:
        return ""
    s = max(0, round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"ETA {h}:{m:02d}:{s:02d}" if h else f"ETA {m}:{s:02d}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@dataclass
class Run:
    """One input file's way through `transcribe` (or one job's through `jobs wait`)."""

    name: str
    path: Path | None = None
    source: str | None = None  # an http(s) URL the service fetches (then no `path`)
    output: Path | None = None
    job_id: str | None = None
    status: str = "pending"
    error: dict[str, str] | None = None
    stage: str | None = None
    percent: float = 0.0
    terminal: bool = False

    def summary(self) -> dict[str, Any]:
        """The `--json` record of this run."""
        return {
            "file": str(self.path) if self.path else self.source,
            "job_id": self.job_id,
            "status": self.status,
            "output": str(self.output) if self.output and self.status == "succeeded" else None,
            "error": self.error,
        }


class Display(Protocol):
    """How a command shows progress: a bar per run, plain lines, or nothing."""

    def add(self, run: Run) -> None:
        """A run starts (before its upload)."""

    def upload(self, run: Run, sent: int, total: int | None) -> None:
        """`sent` of `total` bytes of the run's file went out."""

    def event(self, run: Run, event: Event) -> None:
        """An event of the run's job arrived (`run.stage`/`run.percent` already updated)."""

    def done(self, run: Run) -> None:
        """The run ended (`run.status`, `run.error`, `run.output` set)."""

    def close(self) -> None:
        """Stop drawing (idempotent)."""


class NullDisplay:
    """Shows nothing (`--json`)."""

    def add(self, run: Run) -> None:
        """Nothing."""

    def upload(self, run: Run, sent: int, total: int | None) -> None:
        """Nothing."""

    def event(self, run: Run, event: Event) -> None:
        """Nothing."""

    def done(self, run: Run) -> None:
        """Nothing."""

    def close(self) -> None:
        """Nothing."""


class LineDisplay:
    """Plain lines, for a stdout that is not a terminal: the upload, each stage change, every
    `LINE_STEP_PERCENT` percent, and the outcome."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._shown: dict[int, tuple[str | None, float]] = {}
        self._upload_started: set[int] = set()

    def _say(self, run: Run, text: str) -> None:
        print(f"{run.name}: {text}", file=self.out, flush=True)

    def add(self, run: Run) -> None:
        """Nothing until bytes move."""

    def upload(self, run: Run, sent: int, total: int | None) -> None:
        """One line when the upload starts (or resumes) and one when it is complete."""
        if id(run) not in self._upload_started:
            self._upload_started.add(id(run))
            size = f" {_mb(total)}" if total is not None else ""
            self._say(run, f"upload{size}" + (f", resumed at {_mb(sent)}" if sent else ""))
        if total is not None and sent == total:
            self._say(run, f"uploaded {_mb(sent)}")

    def event(self, run: Run, event: Event) -> None:
        """A line per stage change, per `LINE_STEP_PERCENT` percent, and per other event type."""
        if event.type == "progress":
            last_stage, last_pct = self._shown.get(id(run), (None, -LINE_STEP_PERCENT))
            if run.stage != last_stage or run.percent >= last_pct + LINE_STEP_PERCENT:
                self._shown[id(run)] = (run.stage, run.percent)
                eta = _eta(event.eta_s)
                self._say(run, f"{run.stage} {run.percent:.0f}%" + (f" ({eta})" if eta else ""))
        elif event.type == "snapshot":
            self._say(run, f"job {run.job_id} {event.data.get('status', '')}")
        elif not event.terminal:
            self._say(run, event.type)

    def done(self, run: Run) -> None:
        """The outcome line."""
        if run.status == "succeeded":
            self._say(run, "succeeded 100%" + (f" -> {run.output}" if run.output else ""))
        else:
            err = run.error or {}
            self._say(run, f"{run.status}: {err.get('code', '')}: {err.get('message', '')}")

    def close(self) -> None:
        """Nothing to stop."""


class BarDisplay:
    """A rich progress bar per run on a terminal: name, stage, bar, percent, detail (upload MB,
    the worker's ETA, the outcome)."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.fields[name]}"),
            TextColumn("{task.fields[stage]:<10}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
            refresh_per_second=8,
        )
        self.tasks: dict[int, TaskID] = {}
        self._resumed: dict[int, str] = {}
        self.progress.start()

    def add(self, run: Run) -> None:
        """A bar for the run, waiting to upload."""
        self.tasks[id(run)] = self.progress.add_task("", total=None, name=run.name, stage="waiting", detail="")

    def upload(self, run: Run, sent: int, total: int | None) -> None:
        """Bytes sent of the file's size (and where a resumed upload started)."""
        if id(run) not in self._resumed:
            self._resumed[id(run)] = f" (resumed at {_mb(sent)})" if sent else ""
        detail = f"{_mb(sent)}/{_mb(total)}" if total is not None else _mb(sent)
        detail += self._resumed[id(run)]
        self.progress.update(self.tasks[id(run)], total=total, completed=sent, stage="upload", detail=detail)

    def event(self, run: Run, event: Event) -> None:
        """The job's stage, percent and ETA."""
        stage = run.stage or (event.data.get("status") if event.type == "snapshot" else event.type)
        detail = _eta(event.eta_s) if event.type == "progress" else f"job {run.job_id}"
        self.progress.update(self.tasks[id(run)], total=100, completed=run.percent, stage=str(stage), detail=detail)

    def done(self, run: Run) -> None:
        """The outcome: 100% and the output file, or the error code."""
        task = self.tasks[id(run)]
        if run.status == "succeeded":
            detail = f"→ {run.output}" if run.output else ""
            self.progress.update(task, total=100, completed=100, stage="done", detail=detail)
        else:
            err = (run.error or {}).get("code", "")
            self.progress.update(task, stage=run.status, detail=f"[red]{err}")

    def close(self) -> None:
        """Draw the last frame and stop."""
        self.progress.stop()


def _make_display(json_mode: bool) -> Display:
    """Nothing with --json, bars on a terminal, else plain lines."""
    if json_mode:
        return NullDisplay()
    if sys.stdout.isatty():
        return BarDisplay(Console(file=sys.stdout))
    return LineDisplay(sys.stdout)


def _error_dict(e: BaseException) -> dict[str, str]:
    """`{code, message}` of an error for output."""
    if isinstance(e, ApiError | JobFailed):
        return {"code": e.code, "message": e.message}
    if isinstance(e, TransportError):
        return {"code": "connection_failed", "message": str(e)}
    if isinstance(e, WaitTimeout):
        return {"code": "timeout", "message": str(e)}
    if isinstance(e, WhisperXError):
        return {"code": "protocol_error" if isinstance(e, ProtocolError) else type(e).__name__, "message": str(e)}
    if isinstance(e, OSError):
        return {"code": "os_error", "message": f"{e.strerror or e}"}
    return {"code": type(e).__name__, "message": str(e)}


def _apply_event(run: Run, event: Event) -> None:
    """Track the job's stage and percent from an event (percent never goes down)."""
    if event.type == "snapshot":
        run.stage = event.data.get("stage") or None
    elif event.stage:
        run.stage = event.stage
    if event.percent is not None:
        run.percent = max(run.percent, event.percent)
    if event.terminal:
        run.terminal = True


async def _transcribe_one(
    client: AsyncClient, run: Run, args: argparse.Namespace, display: Display, gate: asyncio.Semaphore
) -> None:
    """Upload one file, follow its job, write its output; failures land in `run` (never raised)."""
    async with gate:
        display.add(run)
        try:
            source = run.source or run.path
            assert source is not None and run.output is not None
            accepted = await client.submit(
                source,
                language=args.language,
                diarize=False if args.no_diarize else None,
                num_speakers=args.speakers,
                on_progress=lambda sent, total: display.upload(run, sent, total),
                resume=args.resume,
            )
            run.job_id, run.status = accepted.id, accepted.status
            async for event in client.events(accepted.id):
                _apply_event(run, event)
                display.event(run, event)
            job = await client.status(accepted.id)
            run.status, run.terminal = job.status, job.terminal
            if job.status != "succeeded":
                raise JobFailed(job)
            text = await client.result_text(accepted.id, args.format)
            atomic_write(run.output, text.encode("utf-8"))
        except (WhisperXError, OSError) as e:
            if run.status not in ("failed", "cancelled"):
                run.status = "failed"
            run.error = _error_dict(e)
        display.done(run)


async def _transcribe_all(runs: list[Run], args: argparse.Namespace, display: Display) -> None:
    """Every run, at most `--concurrency` at a time."""
    gate = asyncio.Semaphore(args.concurrency)
    async with AsyncClient(args.url, args.api_key) as client:
        await asyncio.gather(*(_transcribe_one(client, run, args, display, gate) for run in runs))


def _ask(question: str) -> bool:
    """Ask a yes/no question on the terminal (default yes); a second Ctrl-C or EOF answers no."""
    try:
        answer = input(f"{question} [Y/n] ")
    except (KeyboardInterrupt, EOFError):
        print(file=sys.stderr)
        return False
    return answer.strip().lower() in ("", "y", "yes")


def _interrupted(runs: list[Run], args: argparse.Namespace) -> int:
    """After Ctrl-C: cancel the unfinished jobs (asking first when stdin is a terminal)."""
    pending = [r for r in runs if r.job_id and not r.terminal]
    if not pending:
        return EXIT_INTERRUPTED
    ids = ", ".join(str(r.job_id) for r in pending)
    if sys.stdin.isatty() and not _ask(f"Cancel {len(pending)} unfinished job(s) ({ids})?"):
        print(f"left running: {ids} (follow with: whisperx-client jobs wait ID)", file=sys.stderr)
        return EXIT_INTERRUPTED
    with Client(args.url, args.api_key) as client:
        for run in pending:
            assert run.job_id is not None
            try:
                client.cancel(run.job_id)
                run.status = "cancelled"
                print(f"{run.name}: cancelled job {run.job_id}", file=sys.stderr)
            except Conflict:
                pass  # it ended meanwhile
            except WhisperXError as e:
                print(f"{run.name}: cancel failed: {_error_dict(e)['message']}", file=sys.stderr)
    return EXIT_INTERRUPTED


def cmd_transcribe(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`transcribe FILE...`: see the module docstring."""
    out_dir = Path(args.output_dir)
    runs: list[Run] = []
    seen: dict[Path, Path] = {}
    for name in args.files:
        url = source_url(name)
        path = Path(unquote(urlsplit(url).path).rsplit("/", 1)[-1] or "download") if url else Path(name)
        if url is None and not path.is_file():
            parser.error(f"{name}: no such file")
        output = out_dir / f"{path.stem or 'download'}.{args.format}"
        if output in seen:
            parser.error(f"{name} and {seen[output]} would both write {output}")
        seen[output] = path
        if url is not None:
            runs.append(Run(name=path.name, source=url, output=output))
        else:
            runs.append(Run(name=path.name, path=path, output=output))
    display = _make_display(args.json)
    try:
        asyncio.run(_transcribe_all(runs, args, display))
    except KeyboardInterrupt:
        display.close()
        return _interrupted(runs, args)
    finally:
        display.close()
    if args.json:
        _print_json({"results": [r.summary() for r in runs]})
    return EXIT_OK if all(r.status == "succeeded" for r in runs) else EXIT_FAILED


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _fail(args: argparse.Namespace, e: BaseException) -> int:
    """Report an error (JSON on stdout with --json, else a line on stderr); exit code 1."""
    err = _error_dict(e)
    if isinstance(e, ApiError):
        err["status"] = str(e.status)
    if args.json:
        _print_json({"error": err})
    else:
        print(f"error: {err['code']}: {err['message']}", file=sys.stderr)
    return EXIT_FAILED


def _job_line(job: Job) -> str:
    created = job.created_at.strftime("%Y-%m-%d %H:%M:%S") if job.created_at else "-"
    return f"{job.id}  {job.status:<9}  {job.stage or '-':<10}  {job.percent:5.1f}%  {created}  {job.filename or ''}"


def cmd_jobs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """`jobs list|status|cancel|result|wait`."""
    with Client(args.url, args.api_key) as client:
        try:
            if args.action == "list":
                jobs = list(client.list(status=args.status, owner=args.owner, limit=args.limit))
                if args.json:
                    _print_json([j.raw for j in jobs])
                else:
                    for job in jobs:
                        print(_job_line(job))
                return EXIT_OK
            if args.action == "status":
                job = client.status(args.job_id)
                if args.json:
                    _print_json(job.raw)
                else:
                    for key, value in job.raw.items():
                        print(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")
                return EXIT_OK
            if args.action == "cancel":
                code, records = EXIT_OK, []
                for job_id in args.job_ids:
                    try:
                        job = client.cancel(job_id)
                    except WhisperXError as e:
                        code = EXIT_FAILED
                        records.append({"id": job_id, "error": _error_dict(e)})
                        if not args.json:
                            print(f"{job_id}: {_error_dict(e)['code']}: {_error_dict(e)['message']}", file=sys.stderr)
                        continue
                    records.append(job.raw)
                    if not args.json:
                        print(f"{job_id}: {'cancel requested' if job.cancel_requested else job.status}")
                if args.json:
                    _print_json(records)
                return code
            if args.action == "result":
                text = client.result_text(args.job_id, args.format)
                if args.output:
                    atomic_write(Path(args.output), text.encode("utf-8"))
                    if args.json:
                        _print_json({"id": args.job_id, "format": args.format, "output": args.output})
                elif args.json and args.format != "json":
                    _print_json({"id": args.job_id, "format": args.format, "text": text})
                else:
                    sys.stdout.write(text)
                return EXIT_OK
            if args.action == "wait":
                return _wait(client, args)
        except (WhisperXError, OSError) as e:
            return _fail(args, e)
    parser.error("unknown jobs action")
    return EXIT_USAGE  # not reached: parser.error exits


def _wait(client: Client, args: argparse.Namespace) -> int:
    """`jobs wait ID`: follow the job's events (bar, lines or nothing) until it ends."""
    display = _make_display(args.json)
    run = Run(name=args.job_id[:12], job_id=args.job_id)
    display.add(run)

    def on_event(event: Event) -> None:
        _apply_event(run, event)
        display.event(run, event)

    try:
        job = client.wait(args.job_id, timeout=args.timeout, on_event=on_event)
    except BaseException:
        display.close()
        raise
    run.status = job.status
    if job.error:
        run.error = {"code": job.error.code, "message": job.error.message}
    display.done(run)
    display.close()
    if args.json:
        _print_json(job.raw)
    return EXIT_OK if job.status == "succeeded" else EXIT_FAILED


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    """The argument parser. `--url`, `--api-key` and `--json` go before or after the command."""

    def common(p: argparse.ArgumentParser, default: Any) -> None:
        p.add_argument("--url", default=default, help=f"gateway URL (default: $WHISPERX_URL, else {DEFAULT_URL})")
        p.add_argument("--api-key", default=default, help="API key (default: $WHISPERX_API_KEY)")
        p.add_argument("--json", action="store_true", default=default, help="print one JSON document on stdout")

    parser = argparse.ArgumentParser(prog="whisperx-client", description="Client of whisperx-service.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common(parser, None)
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("transcribe", help="transcribe files and write one output per input")
    common(tr, argparse.SUPPRESS)
    tr.add_argument(
        "files", nargs="+", metavar="FILE", help="audio or video files, or http(s) URLs the service fetches"
    )
    tr.add_argument("--format", choices=FORMATS, default="srt", help="output format (default srt)")
    tr.add_argument("-o", "--output-dir", default=".", help="folder for the outputs (default: .)")
    tr.add_argument("--speakers", type=_positive, help="exact number of speakers")
    tr.add_argument("--language", help="ISO 639-1 code (default: detect)")
    tr.add_argument("--no-diarize", action="store_true", help="no speaker labels")
    tr.add_argument("--concurrency", type=_positive, default=2, help="files in flight at once (default 2)")
    tr.add_argument(
        "--resume",
        action="store_true",
        help="continue the resumable uploads an interrupted run left (same file, size and mtime)",
    )

    jobs = sub.add_parser("jobs", help="list, inspect, cancel, fetch or wait for jobs")
    common(jobs, argparse.SUPPRESS)
    actions = jobs.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="the key's jobs, newest first")
    ls.add_argument("--status", choices=("queued", "running", "succeeded", "failed", "cancelled"))
    ls.add_argument("--limit", type=_positive, default=50, help="at most this many jobs (default 50)")
    ls.add_argument("--owner", help="(admin key) only this key's jobs")
    st = actions.add_parser("status", help="a job's status")
    st.add_argument("job_id")
    ca = actions.add_parser("cancel", help="cancel jobs")
    ca.add_argument("job_ids", nargs="+", metavar="job_id")
    re_ = actions.add_parser("result", help="a succeeded job's transcript (stdout, or -o FILE)")
    re_.add_argument("job_id")
    re_.add_argument("--format", choices=FORMATS, default="srt")
    re_.add_argument("-o", "--output", help="write to this file (atomically) instead of stdout")
    wa = actions.add_parser("wait", help="follow a job until it ends (exit 0 if it succeeded)")
    wa.add_argument("job_id")
    wa.add_argument("--timeout", type=float, help="give up after this many seconds (exit 1)")
    for p in (ls, st, ca, re_, wa):
        common(p, argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.url = args.url or os.environ.get("WHISPERX_URL") or DEFAULT_URL
    args.api_key = args.api_key or os.environ.get("WHISPERX_API_KEY") or None
    args.json = bool(args.json)
    try:
        if args.command == "transcribe":
            return cmd_transcribe(args, parser)
        return cmd_jobs(args, parser)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
