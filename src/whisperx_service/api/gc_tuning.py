"""The gateway process's garbage collector: what it loaded at start frozen, young collections rarer.

With 1,000 open event streams the gateway holds some hundred thousand objects that CPython's
cyclic collector tracks; a full (generation 2) collection walks all of them while the event loop
waits. Measured with `gc.callbacks` during `bench/sse_bench.py` (1,000 streams, 2 cores): full
collections of 70-215 ms, several during the events, the tail of the SSE delay. Two measures
from CPython's `gc` documentation:

- `gc.freeze()` once the app is built (`app_factory`): the modules, routes and schemas loaded at
  start go to the permanent generation and no collection walks them again.
- A first-generation threshold of `YOUNG_THRESHOLD` allocations instead of CPython's 700: young
  collections, and so the older ones that follow every `threshold1`-th of them, come about 70
  times less often. Garbage cycles are still collected, only later; reference counting frees the
  rest at once as before. Measured: no full collection while 1,000 streams got 50 events.

Only the real gateway process does this (`app_factory`); tests that build apps with
`create_app` in one long process keep CPython's defaults.
"""

from __future__ import annotations

import gc

#: Allocations (minus deallocations) of tracked objects between two young collections (CPython: 700).
YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect once, freeze what survives (the process's start-up state) and set the young threshold."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
