"""A small Server-Sent Events reader for tests (parses the wire format itself)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SseEvent:
    """One event: its `id`, `event` type and JSON-decoded `data`."""

    id: str | None
    event: str
    data: Any


def iter_sse(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> Iterator[SseEvent]:
    """Yield events from `url` until the server closes the stream (pings/comments skipped)."""
    with client.stream("GET", url, headers=headers or {}) as resp:
        resp.raise_for_status()
        ev: dict[str, str] = {}
        data: list[str] = []
        for line in resp.iter_lines():
            if line == "":
                if data:
                    yield SseEvent(ev.get("id"), ev.get("event", "message"), json.loads("\n".join(data)))
                ev, data = {}, []
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "data":
                data.append(value)
            else:
                ev[key] = value


def stream_id(i: str) -> tuple[int, int]:
    """Redis stream id `ms-seq` as a sortable tuple."""
    a, _, b = i.partition("-")
    return int(a), int(b or 0)
