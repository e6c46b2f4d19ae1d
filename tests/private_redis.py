"""A redis-server of one test's own (never the shared one), for the tests that kill or wipe Redis."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis


@dataclass
class PrivateRedis:
    """A redis-server of one test's own, which the test may kill -9, restart or wipe.

    It runs like `scripts/ensure_redis.sh` (AOF, `appendfsync everysec`, noeviction, no RDB) on a
    free port with its data in `dir`; its log is `dir`'s sibling `<dir>.log` (kept by `wipe`).
    Never the shared Redis: only the process this object started is ever signalled.
    """

    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>/14` (db 14, like the other e2e services)."""
        return f"redis://127.0.0.1:{self.port}/14"

    def client(self) -> redis.Redis:
        """A new client on db 14 (short timeouts: it may be down)."""
        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=10)

    def start(self, timeout_s: float = 60.0) -> None:
        """Start redis-server on the same port and dir (loading the AOF there); wait until it answers PING.

        Raises:
            AssertionError: it exited or did not answer (AOF loaded) within `timeout_s` seconds.
        """
        assert self.proc is None or self.proc.poll() is not None, "redis-server is already running"
        self.dir.mkdir(parents=True, exist_ok=True)
        exe = shutil.which("redis-server")
        assert exe is not None, "redis-server is not installed"
        log = self.dir.with_name(self.dir.name + ".log").open("ab")
        self.proc = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
             "--save", "", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, f"redis-server exited ({self.proc.returncode}); see {log.name}"
            try:
                with self.client() as c:
                    if c.ping():  # a loading server answers LOADING (an error) until the AOF is in
                        return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, f"redis-server did not answer in {timeout_s} s"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no final fsync) and reap it."""
        assert self.proc is not None and self.proc.poll() is None, "redis-server is not running"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def wipe(self) -> None:
        """Delete the data directory (the server must be down): the next `start` is an empty Redis."""
        assert self.proc is None or self.proc.poll() is not None, "wipe only a stopped redis-server"
        shutil.rmtree(self.dir)
        self.dir.mkdir()

    def stop(self) -> None:
        """Terminate the server if it runs (SIGKILL after 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
