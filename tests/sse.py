"""A small Server-Sent Events reader for tests (parses the wire format itself)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class SseEvent:
    """One event: its `id`, `event` type and JSON-decoded `data`."""

    id: str | None
    event: str
    data: Any


@dataclass
class _Parser:
    """The SSE wire format, one line at a time (pings and other comments skipped)."""

    fields: dict[str, str] = field(default_factory=dict)
    data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> SseEvent | None:
        """The event that `line` completes, if it does."""
        if line == "":
            out = None
            if self.data:
                out = SseEvent(
                    self.fields.get("id"), self.fields.get("event", "message"), json.loads("\n".join(self.data))
                )
            self.fields, self.data = {}, []
            return out
        if not line.startswith(":"):
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "data":
                self.data.append(value)
            else:
                self.fields[key] = value
        return None


def iter_sse(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> Iterator[SseEvent]:
    """Yield events from `url` until the server closes the stream."""
    with client.stream("GET", url, headers=headers or {}) as resp:
        resp.raise_for_status()
        parser = _Parser()
        for line in resp.iter_lines():
            if (event := parser.feed(line)) is not None:
                yield event


async def aiter_sse(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SseEvent]:
    """`iter_sse` for an async client."""
    async with client.stream("GET", url, headers=headers or {}) as resp:
        resp.raise_for_status()
        parser = _Parser()
        async for line in resp.aiter_lines():
            if (event := parser.feed(line)) is not None:
                yield event


def stream_id(i: str) -> tuple[int, int]:
    """Redis stream id `ms-seq` as a sortable tuple."""
    a, _, b = i.partition("-")
    return int(a), int(b or 0)
