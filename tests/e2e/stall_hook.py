"""Test-only worker plug-in: attempt 1 of every job hangs inside the stage `WXS_TEST_STALL_STAGE`.

Loaded into a test's worker with `--include tests.e2e.stall_hook` (never by the service), with
`WXS_TEST_STALL_STAGE` (a stage name, e.g. `transcribe`) in the worker's environment; the variable
is read here only, and without it the plug-in does nothing. It wraps the worker's progress
publisher: the first progress point of that stage in a job's attempt 1 is published as usual,
then the job's thread sleeps, as a hang inside the stage would (a deadlock, a call that never
returns), while its lease keeper thread goes on renewing the lease. Only the stall watchdog can
end it. Later attempts run normally.
"""

from __future__ import annotations

import os
import time
from typing import Any

from whisperx_service.domain.jobs import Stage
from whisperx_service.worker.progress import ProgressPublisher

#: How long the hang lasts (s): far longer than any test's WORKER_STALL_S.
HANG_S = 3600.0

_stage = os.environ.get("WXS_TEST_STALL_STAGE")
_publish = ProgressPublisher.__call__


def _hanging_publish(self: ProgressPublisher, stage: Stage, stage_percent: float, *args: Any, **kwargs: Any) -> None:
    _publish(self, stage, stage_percent, *args, **kwargs)
    if stage.value == _stage and self.attempt == 1:
        time.sleep(HANG_S)


if _stage:
    Stage(_stage)  # a misspelt stage fails the worker's start, not the test's wait
    ProgressPublisher.__call__ = _hanging_publish  # type: ignore[method-assign]
