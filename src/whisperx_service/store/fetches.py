"""A job whose source is fetched from a URL, in Redis: its fetch's start, progress and end.

Such a job is created `queued` with `fetching` = 1 and its `source_url` in its hash, and put on
the outbound schedule as `fetch:<id>` instead of its owner's pending list (scripts.CREATE). The
outbound worker takes the item like a webhook delivery (a lease ahead, so a killed worker's fetch
comes due again) and:

- `start`: counts the fetch's try (`fetch_attempts`, the fence of the writes that follow), sets
  the `fetch` stage and publishes a progress event (`bytes` = 0);
- `progress`: the bytes so far, one event each (`bytes`, `total_bytes` when announced), and the
  item's lease pushed ahead;
- `fetched`: the source is stored: its size and duration are recorded, the job leaves the
  schedule and is held on its owner's pending list for the dispatcher, as an upload's job is
  at creation;
- `fail`: the job ends `failed` with the fetch's code, exactly as FINISH ends one.

Every write is fenced: it is refused (0) once the job is no longer queued and fetching (cancelled,
purged) or another try started after a lease ran out. The URL leaves the hash when the fetch ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import redis

from whisperx_service.domain.jobs import utcnow
from whisperx_service.store import scripts
from whisperx_service.store.jobs import end_keys
from whisperx_service.store.keys import Keys
from whisperx_service.store.records import as_str

#: The schedule's member prefix of a job's fetch.
FETCH_ITEM = "fetch:"

# Lua helper: whether the job is queued, fetching and (ARGV try given) still fetched by this try.
_FETCHING = """
local function fetching(job, try)
  if redis.call('HGET', job, 'status') ~= 'queued' then return false end
  if redis.call('HGET', job, 'fetching') ~= '1' then return false end
  return try == '' or redis.call('HGET', job, 'fetch_attempts') == try
end
"""

# KEYS[1]=job hash KEYS[2]=events stream ARGV[1]=maxlen ARGV[2]=max tries
# Returns {outcome, try, url}: 'go' (this try may fetch `url`), 'done' (not fetching any more:
# ended or fetched) or 'exhausted' (max tries started already; the caller fails the job).
START = (
    _FETCHING
    + """
if not fetching(KEYS[1], '') then return {'done', 0, ''} end
local try = tonumber(redis.call('HGET', KEYS[1], 'fetch_attempts') or '0')
if try >= tonumber(ARGV[2]) then return {'exhausted', try, ''} end
try = redis.call('HINCRBY', KEYS[1], 'fetch_attempts', 1)
redis.call('HSET', KEYS[1], 'stage', 'fetch', 'fetched_bytes', '0')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'type', 'progress', 'status', 'queued', 'stage', 'fetch',
           'percent', '0', 'bytes', '0')
return {'go', try, redis.call('HGET', KEYS[1], 'source_url') or ''}
"""
)

# KEYS[1]=job hash KEYS[2]=events stream KEYS[3]=outbound schedule KEYS[4]=the item's lock
# ARGV[1]=try ARGV[2]=maxlen ARGV[3]=bytes ARGV[4]=total bytes ('' = not announced) ARGV[5]=item
# ARGV[6]=the item's next due ms ARGV[7]=lease ms (the item and its lock pushed a lease ahead).
# Returns 1, or 0 when fenced.
PROGRESS = (
    _FETCHING
    + """
if not fetching(KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'fetched_bytes', ARGV[3])
local ev = {'type', 'progress', 'status', 'queued', 'stage', 'fetch', 'percent', '0', 'bytes', ARGV[3]}
if ARGV[4] ~= '' then ev[#ev + 1] = 'total_bytes'; ev[#ev + 1] = ARGV[4] end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ev))
redis.call('ZADD', KEYS[3], 'XX', tonumber(ARGV[6]), ARGV[5])
redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[7]))
return 1
"""
)

# KEYS[1]=job hash KEYS[2]=events stream KEYS[3]=outbound schedule KEYS[4]=owner's pending list
# KEYS[5]=dispatch ring KEYS[6]=dispatch served hash KEYS[7]=metrics
# ARGV[1]=try ARGV[2]=maxlen ARGV[3]=id ARGV[4]=ring member of the owner ARGV[5]=item
# ARGV[6]=size bytes ARGV[7]=duration s ('' = unknown)
# Returns 1 (the job is held for the dispatcher), or 0 when fenced.
FETCHED = (
    scripts._HOLD
    + _FETCHING
    + """
if not fetching(KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'fetching', '0', 'stage', '', 'size_bytes', ARGV[6], 'fetched_bytes', ARGV[6],
           'duration_s', ARGV[7])
redis.call('HDEL', KEYS[1], 'source_url')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', 'progress', 'status', 'queued', 'stage', 'fetch',
           'percent', '0', 'bytes', ARGV[6], 'total_bytes', ARGV[6])
redis.call('ZREM', KEYS[3], ARGV[5])
redis.call('HINCRBY', KEYS[7], 'upload_bytes', tonumber(ARGV[6]))
hold(KEYS[4], KEYS[5], KEYS[6], ARGV[4], ARGV[3])
return 1
"""
)

# KEYS[1..5]=end_keys (job hash, events, metrics, running set, finished zset) KEYS[6]=outbound schedule
# ARGV[1]=try ('' = unfenced: the tries ran out) ARGV[2]=now_iso ARGV[3]=now_ms ARGV[4]=maxlen
# ARGV[5]=error code ARGV[6]=error message ARGV[7]=item
# Returns 1 (ended `failed`), or 0 when fenced.
FAIL = (
    scripts._END
    + _FETCHING
    + """
if not fetching(KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'fetching', '0')
redis.call('HDEL', KEYS[1], 'source_url')
redis.call('ZREM', KEYS[6], ARGV[7])
end_job(KEYS, 'failed', ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
"""
)


@dataclass(frozen=True, slots=True)
class FetchStart:
    """What `FetchStore.start` found: `go` (fetch `url` as try number `attempt`), `done` (nothing
    to fetch: the job ended or its source is stored) or `exhausted` (FETCH_MAX_ATTEMPTS tries started)."""

    outcome: Literal["go", "done", "exhausted"]
    attempt: int
    url: str


class FetchStore:
    """The outbound worker's view of jobs being fetched (sync client)."""

    def __init__(self, client: redis.Redis, keys: Keys, *, events_maxlen: int = 10_000) -> None:
        self.r, self.keys, self.maxlen = client, keys, events_maxlen
        self._start = client.register_script(START)
        self._progress = client.register_script(PROGRESS)
        self._fetched = client.register_script(FETCHED)
        self._fail = client.register_script(FAIL)

    def start(self, job_id: str, max_attempts: int) -> FetchStart:
        """Begin a try of the job's fetch (see `FetchStart`)."""
        out = self._start(keys=[self.keys.job(job_id), self.keys.events(job_id)], args=[self.maxlen, max_attempts])
        outcome, attempt, url = as_str(out[0]), int(out[1]), as_str(out[2])
        return FetchStart(outcome, attempt, url)  # type: ignore[arg-type]

    def progress(self, job_id: str, attempt: int, fetched: int, total: int | None, lease_ms: int) -> bool:
        """Record `fetched` bytes (of `total`, when announced) and push the item and its lock
        `lease_ms` ahead; False when fenced (the job was cancelled or purged, or another try took over)."""
        return bool(
            self._progress(
                keys=[
                    self.keys.job(job_id),
                    self.keys.events(job_id),
                    self.keys.outbound_due(),
                    self.keys.outbound_lock(FETCH_ITEM + job_id),
                ],
                args=[
                    attempt,
                    self.maxlen,
                    fetched,
                    "" if total is None else total,
                    FETCH_ITEM + job_id,
                    int(time.time() * 1000) + lease_ms,
                    lease_ms,
                ],
            )
        )

    def fetched(self, job_id: str, attempt: int, owner: str, size_bytes: int, duration_s: float | None) -> bool:
        """The source is stored: record it and hold the job for the dispatcher; False when fenced.

        Args:
            owner: the job's dispatch owner (its key's id, `-` without one).
        """
        return bool(
            self._fetched(
                keys=[
                    self.keys.job(job_id),
                    self.keys.events(job_id),
                    self.keys.outbound_due(),
                    self.keys.pending(owner),
                    self.keys.dispatch_ring(),
                    self.keys.dispatch_served(),
                    self.keys.metrics(),
                ],
                args=[
                    attempt,
                    self.maxlen,
                    job_id,
                    owner,
                    FETCH_ITEM + job_id,
                    size_bytes,
                    "" if duration_s is None else f"{duration_s:.3f}",
                ],
            )
        )

    def fail(self, job_id: str, attempt: int | None, code: str, message: str) -> bool:
        """End the job `failed` with `code` and `message`; False when fenced.

        Args:
            attempt: this try (fencing); None = unfenced (no try is left to fence against).
        """
        return bool(
            self._fail(
                keys=[*end_keys(self.keys, job_id), self.keys.outbound_due()],
                args=[
                    "" if attempt is None else attempt,
                    utcnow().isoformat(),
                    int(time.time() * 1000),
                    self.maxlen,
                    code,
                    message[:2000],
                    FETCH_ITEM + job_id,
                ],
            )
        )

    def owner(self, job_id: str) -> str:
        """The job's dispatch owner: its key's id, `-` without one."""
        return as_str(self.r.hget(self.keys.job(job_id), "owner_id") or b"") or "-"

    def drop(self, job_id: str) -> None:
        """Take the job's item off the schedule (nothing is left to fetch)."""
        self.r.zrem(self.keys.outbound_due(), FETCH_ITEM + job_id)
