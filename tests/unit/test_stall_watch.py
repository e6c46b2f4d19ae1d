"""The stall watchdog's clock (`worker/stall.py`), on a clock the test moves by hand."""

from __future__ import annotations

import pytest

from whisperx_service.worker.stall import StallWatch, not_counted, watching


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stalls_after_stall_s_without_a_beat_and_a_beat_restarts_it() -> None:
    clock = Clock()
    watch = StallWatch(10.0, clock)
    clock.now += 9.9
    assert not watch.stalled() and watch.idle_s() == pytest.approx(9.9)
    watch.beat("vad", 0, 50.0)
    assert watch.where == ("vad", 0, 50.0)
    clock.now += 9.9
    assert not watch.stalled()
    clock.now += 0.1
    assert watch.stalled() and watch.idle_s() == pytest.approx(10.0)


def test_held_blocks_do_not_count_and_the_clock_restarts_at_their_end() -> None:
    clock = Clock()
    watch = StallWatch(10.0, clock)
    clock.now += 5.0
    with watch.held():
        clock.now += 60.0  # a model's first load
        assert not watch.stalled() and watch.idle_s() == 0.0
        with watch.held():  # nested: still held until the outer block ends
            clock.now += 60.0
        assert not watch.stalled()
    assert watch.idle_s() == 0.0
    clock.now += 9.0
    assert not watch.stalled()
    clock.now += 1.0
    assert watch.stalled()


def test_not_counted_holds_the_running_jobs_watch_only() -> None:
    clock = Clock()
    watch = StallWatch(10.0, clock)
    with not_counted():  # no job in this process: nothing to hold, no error
        clock.now += 20.0
    assert watch.stalled(), "a watch that is not the running job's is not held"
    watch.beat("transcribe", 0, 0.0)
    with watching(watch):
        with not_counted():
            clock.now += 20.0
            assert not watch.stalled()
        clock.now += 10.0
        assert watch.stalled()
    with not_counted():  # the job ended: its watch is no longer held
        clock.now += 1.0
        assert watch.idle_s() == pytest.approx(11.0)


def test_stall_s_must_be_positive() -> None:
    with pytest.raises(ValueError, match="stall_s"):
        StallWatch(0.0)
