"""The worker's Prometheus exporter: prometheus-client's multiprocess mode, served by the main process.

Why multiprocess mode and not one `start_http_server` per pool process: Celery's prefork pool runs
jobs in child processes that come and go (WORKER_MAX_TASKS_PER_CHILD recycles them, a crashed one
is replaced), so a listener per child would change hands, reset its counters with each child and
need one port per child. prometheus-client's documented answer for pre-forking servers (its
"Multiprocess Mode" docs, written for gunicorn) is a directory of per-process files
(PROMETHEUS_MULTIPROC_DIR) that every process writes and one `MultiProcessCollector` merges at
scrape time. So each worker's main process serves one address (WORKER_METRICS_ADDRESS) for all its
pool processes, counters and histograms outlive a recycled child, and Prometheus needs one target
per worker (one per GPU).

What those docs require, and where it is done:

- PROMETHEUS_MULTIPROC_DIR is set before prometheus-client is first imported (it picks its value
  store then): `start` runs in the main process at Celery's `worker_init`, before any pool process
  exists and before anything builds a metric (`metrics.py` builds them on first use), and refuses
  to run when prometheus-client was imported in single-process mode already.
- The directory is wiped at start: the `*.db` files of an operator's PROMETHEUS_MULTIPROC_DIR are
  removed; without one, a fresh private directory is made (and removed when the worker exits).
- Gauges name a `multiprocess_mode` (`metrics.py`).
- A dead child's live-gauge files are removed with `mark_process_dead(pid)`: by the child as it
  exits (Celery's `worker_process_shutdown`), and, for a child killed without that chance
  (SIGKILL, the kernel's OOM killer), at each scrape for every file whose process is gone.
- The exposition registry is a fresh `CollectorRegistry` holding only the multiprocess collector
  (the default registry would count this process twice).

The listener is prometheus-client's `start_http_server` (a daemon thread of the main process).
It opens before the pool forks, so pool processes hold a copy of its socket; they never accept on
it, and they exit with the main process.
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from celery.signals import worker_init, worker_process_shutdown, worker_shutdown

from whisperx_service.config import Settings, split_address
from whisperx_service.logs import configure_logging

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

log = structlog.get_logger(__name__)

#: The environment variable prometheus-client reads for the multiprocess directory.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: A live gauge's file: `gauge_live<mode>_<pid>.db` (prometheus_client/values.py names them so).
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")

_server: WSGIServer | None = None
#: The worker's main process (the one serving), once `start` ran.
_main_pid: int | None = None


def prepare_multiprocess_dir() -> Path:
    """Make PROMETHEUS_MULTIPROC_DIR an empty directory for this worker and set it in the environment.

    An operator's PROMETHEUS_MULTIPROC_DIR is created if missing and its `*.db` files removed
    (prometheus-client: wipe it between runs); without one, a new private directory under the
    temp dir is made and removed at exit. Pool processes inherit the variable when they fork.

    Returns:
        The directory.
    Raises:
        RuntimeError: prometheus-client was imported before, in single-process mode (its metrics
            would never reach the directory).
        OSError: the directory cannot be made or cleaned.
    """
    values = sys.modules.get("prometheus_client.values")
    if values is not None and getattr(values, "ValueClass", None) is getattr(values, "MutexValue", None):
        raise RuntimeError(
            "prometheus_client was imported before the worker set PROMETHEUS_MULTIPROC_DIR; "
            "its metrics would stay in one process"
        )
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for f in path.glob("*.db"):
            f.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix="wxs-metrics-"))
        owner = os.getpid()

        def remove() -> None:
            if os.getpid() == owner:  # never from a forked child that happens to run exit handlers
                shutil.rmtree(path, ignore_errors=True)

        atexit.register(remove)
        os.environ[MULTIPROC_ENV] = str(path)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def sweep_dead(path: Path) -> list[int]:
    """`mark_process_dead` for every process with live-gauge files in `path` that no longer runs.

    Returns:
        The pids marked dead.
    """
    from prometheus_client import multiprocess

    dead = sorted(
        {
            pid
            for f in glob.glob(str(path / "gauge_live*.db"))
            if (m := _LIVE_FILE.search(os.path.basename(f))) and not _pid_alive(pid := int(m.group(1)))
        }
    )
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return dead


def make_registry(path: Path) -> CollectorRegistry:
    """A `CollectorRegistry` with only the multiprocess collector of `path`, which sweeps dead
    processes' live gauges away before each scrape."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.registry import Collector

    merged = MultiProcessCollector(None, path=str(path))  # type: ignore[no-untyped-call]

    class _Sweeping(Collector):
        def collect(self) -> Iterable[Metric]:
            sweep_dead(path)
            found: Iterable[Metric] = merged.collect()  # type: ignore[no-untyped-call]
            return found

    registry = CollectorRegistry()
    registry.register(_Sweeping())
    return registry


def start(settings: Settings) -> tuple[str, int] | None:
    """Prepare the multiprocess directory and serve the merged metrics on WORKER_METRICS_ADDRESS.

    Returns:
        The (host, port) served, or None when WORKER_METRICS_ADDRESS is unset.
    Raises:
        RuntimeError: prometheus-client was imported too early (see `prepare_multiprocess_dir`).
        OSError: the directory cannot be prepared, or the address cannot be bound (in use, not local).
    """
    global _server, _main_pid
    address = settings.observability.worker_metrics_address
    if not address:
        return None
    host, port = split_address(address)
    path = prepare_multiprocess_dir()
    from prometheus_client import start_http_server

    _server, _ = start_http_server(port, addr=host, registry=make_registry(path))
    _main_pid = os.getpid()
    bound = _server.server_address
    log.info("worker_metrics_serving", address=f"{host}:{bound[1]}", directory=str(path))
    return host, int(bound[1])


@worker_init.connect
def _start(sender: Any = None, **_: Any) -> None:
    # Raised as SystemExit: Celery logs and ignores a signal handler's ordinary exception, and a
    # worker that cannot serve the metrics it was told to should not start.
    settings: Settings = sender.app.wxs_settings
    configure_logging(settings)  # this handler may run before heartbeat.py's (idempotent)
    try:
        start(settings)
    except (OSError, RuntimeError) as e:
        log.error("worker_metrics_failed", error=str(e))
        raise SystemExit(f"cannot serve WORKER_METRICS_ADDRESS: {e}") from e


@worker_process_shutdown.connect
def _child_exits(pid: int | None = None, **_: Any) -> None:
    # In the pool process, as it exits: its live gauges stop counting.
    path, me = os.environ.get(MULTIPROC_ENV), pid or os.getpid()
    if path and _main_pid is not None and me != _main_pid:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(me, path)  # type: ignore[no-untyped-call]


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    global _server
    if _server is not None:
        _server.shutdown()
        _server.server_close()
        _server = None
