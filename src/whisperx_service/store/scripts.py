"""Lua scripts that change a job atomically: state and its event in one step.

Each script updates the job hash and appends the matching event to the job's stream in one
atomic step, so a reader never sees a status without its event or the reverse, and a terminal
event is written exactly once. Fencing: writes from a worker carry the attempt number it
claimed; a write whose attempt no longer matches is refused (returns 0).
"""

from __future__ import annotations

# Lua helper: hold job `id` for a worker slot: append it to its owner's pending list and put the
# owner in the dispatch ring (if absent) at its last served number, so a key that was served least
# recently is offered a slot first (see maintenance/dispatcher.py).
_HOLD = """
local function hold(pending, ring, served, owner, id)
  redis.call('RPUSH', pending, id)
  if not redis.call('ZSCORE', ring, owner) then
    redis.call('ZADD', ring, tonumber(redis.call('HGET', served, owner) or '0'), owner)
  end
end
"""

# KEYS[1]=job hash, KEYS[2]=events stream, KEYS[3]=jobs index, KEYS[4]=metrics, KEYS[5]=owner's jobs index
# KEYS[6]=owner's pending list KEYS[7]=dispatch ring KEYS[8]=dispatch served hash KEYS[9]=outbound schedule
# ARGV[1]=created_ms ARGV[2]=maxlen ARGV[3]=id ARGV[4]=ring member of the owner (key id, `-` = none)
# ARGV[5...]=field, value pairs
# The job enters its owner's index when the hash names an owner (`owner_id`), and is held on its
# owner's pending list in the same step, so no created job is ever outside the dispatcher's view.
# A job whose source is still to be fetched (`fetching` = 1) is not held: it goes on the outbound
# schedule as `fetch:<id>`, due now, and FETCHED holds it once its source is stored.
CREATE = (
    _HOLD
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[3])
local owner = redis.call('HGET', KEYS[1], 'owner_id')
if owner and owner ~= '' then redis.call('ZADD', KEYS[5], ARGV[1], ARGV[3]) end
redis.call('HINCRBY', KEYS[4], 'submitted', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', 'queued', 'status', 'queued')
if redis.call('HGET', KEYS[1], 'fetching') == '1' then
  redis.call('ZADD', KEYS[9], ARGV[1], 'fetch:' .. ARGV[3])
else
  hold(KEYS[6], KEYS[7], KEYS[8], ARGV[4], ARGV[3])
end
return 1
"""
)

# Lua helpers shared by the scripts that end a job. `k` = {job hash, events stream, metrics,
# running set, finished zset}. end_job writes the terminal status, its event, the counters and the
# indexes in one step (the id leaves the running set and enters the finished zset, scored by ms).
# end_if_done ends a job that must not run again: cancel requested -> cancelled; its workers were
# lost `max_attempts` times (attempts minus graceful hand-backs counted in `releases`) -> failed
# `worker_lost`. It returns the status it ended the job with, or nil.
_END = """
local function end_job(k, status, now_iso, now_ms, maxlen, code, message)
  redis.call('HSET', k[1], 'status', status, 'finished_at', now_iso, 'lease_owner', '', 'lease_expires_ms', '0')
  local ev = {'type', status, 'status', status}
  if status == 'succeeded' then
    redis.call('HSET', k[1], 'percent', '100')
    ev[#ev + 1] = 'percent'; ev[#ev + 1] = '100'
  end
  if code ~= '' then
    redis.call('HSET', k[1], 'error_code', code, 'error_message', message)
    ev[#ev + 1] = 'code'; ev[#ev + 1] = code
    ev[#ev + 1] = 'message'; ev[#ev + 1] = message
  end
  redis.call('XADD', k[2], 'MAXLEN', '~', maxlen, '*', unpack(ev))
  redis.call('HINCRBY', k[3], 'finished:' .. status, 1)
  local id = redis.call('HGET', k[1], 'id')
  redis.call('SREM', k[4], id)
  redis.call('ZADD', k[5], now_ms, id)
end

local function end_if_done(k, attempt, max_attempts, now_iso, now_ms, maxlen)
  if redis.call('HGET', k[1], 'cancel_requested') == '1' then
    end_job(k, 'cancelled', now_iso, now_ms, maxlen, '', '')
    return 'cancelled'
  end
  local lost = attempt - tonumber(redis.call('HGET', k[1], 'releases') or '0')
  if max_attempts > 0 and lost >= max_attempts then
    end_job(k, 'failed', now_iso, now_ms, maxlen, 'worker_lost',
            'the worker running this job was lost ' .. lost .. ' times; giving up after ' ..
            max_attempts .. ' attempts (WORKER_MAX_ATTEMPTS)')
    return 'failed'
  end
  return nil
end
"""

# KEYS[1]=job hash, KEYS[2]=events stream, KEYS[3]=running set, KEYS[4]=metrics, KEYS[5]=finished zset
# ARGV[1]=now_ms ARGV[2]=lease_ms ARGV[3]=owner ARGV[4]=now_iso ARGV[5]=maxlen ARGV[6]=max_attempts (0 = no cap)
# Returns {outcome, attempt, status}: outcome 'claimed' | 'busy' | 'terminal' | 'missing' | 'ended'.
# 'ended': the job was free to take (queued, or its lease expired) but must not run again (see
# end_if_done): this script ended it, `status` says how; the caller records final.json.
CLAIM = (
    _END
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing', 0, ''} end
local status = redis.call('HGET', KEYS[1], 'status')
local attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0')
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return {'terminal', attempt, status}
end
local now = tonumber(ARGV[1])
if status == 'running' then
  local expires = tonumber(redis.call('HGET', KEYS[1], 'lease_expires_ms') or '0')
  if expires > now then return {'busy', attempt, status} end
end
local ended = end_if_done({KEYS[1], KEYS[2], KEYS[4], KEYS[3], KEYS[5]}, attempt, tonumber(ARGV[6]), ARGV[4],
                          now, ARGV[5])
if ended then return {'ended', attempt, ended} end
attempt = attempt + 1
redis.call('HSET', KEYS[1], 'status', 'running', 'attempt', attempt, 'lease_owner', ARGV[3],
           'lease_expires_ms', now + tonumber(ARGV[2]))
local started = redis.call('HGET', KEYS[1], 'started_at')
if not started or started == '' then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[4])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'type', 'started', 'status', 'running',
           'attempt', tostring(attempt))
redis.call('SADD', KEYS[3], redis.call('HGET', KEYS[1], 'id'))
return {'claimed', attempt, 'running'}
"""
)

# KEYS[1]=job hash ARGV[1]=attempt ARGV[2]=now_ms ARGV[3]=lease_ms
# Returns 0 (fenced: not running or another attempt), 1 (renewed), 2 (renewed, and cancel was requested).
RENEW = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'lease_expires_ms', tonumber(ARGV[2]) + tonumber(ARGV[3]))
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return 2 end
return 1
"""

# KEYS[1]=job hash KEYS[2]=events stream
# ARGV[1]=attempt ARGV[2]=maxlen ARGV[3]=stage ARGV[4]=percent ARGV[5...]=extra event field pairs
# Percent never decreases: the stored and published value is max(new, current).
PROGRESS = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], 'percent') or '0')
local pct = math.max(tonumber(ARGV[4]), current)
redis.call('HSET', KEYS[1], 'stage', ARGV[3], 'percent', tostring(pct))
local ev = {'type', 'progress', 'status', 'running', 'stage', ARGV[3], 'percent', tostring(pct)}
for i = 5, #ARGV do ev[#ev + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ev))
return 1
"""

# KEYS[1]=job hash ARGV[1]=attempt ARGV[2...]=field, value pairs (fenced plain update, no event)
UPDATE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
return 1
"""

# KEYS[1]=job hash KEYS[2]=events stream ARGV[1]=attempt ARGV[2]=maxlen
# Graceful hand-back (the worker was asked to stop, SIGTERM): the running attempt gives its lease up
# at once (lease_expires_ms=0, no owner) so the next delivery claims the job with attempt + 1
# without waiting for the lease to run out. The status stays `running` (a poller never sees
# running -> queued); `releases` counts hand-backs (they are not lost workers, see end_if_done)
# and one `released` event (attempt) is written. Returns 1, or 0 when fenced (not running, or
# another attempt owns it).
RELEASE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'lease_expires_ms', '0', 'lease_owner', '')
redis.call('HINCRBY', KEYS[1], 'releases', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', 'released', 'status', 'running',
           'attempt', ARGV[1])
return 1
"""

# KEYS[1]=job hash KEYS[2]=events stream KEYS[3]=metrics KEYS[4]=running set KEYS[5]=finished zset
# ARGV[1]=attempt ('' = no fence: the API cancelling) ARGV[2]=status ARGV[3]=now_iso ARGV[4]=maxlen
# ARGV[5]=error code ARGV[6]=error message ARGV[7]=now_ms (the finished zset's score)
# Allowed: running -> succeeded|failed|cancelled; queued -> failed|cancelled. A terminal job never changes.
FINISH = (
    _END
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 0 end
if ARGV[1] ~= '' and (status ~= 'running' or redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1]) then
  return 0
end
if ARGV[2] == 'succeeded' and status ~= 'running' then return 0 end
end_job(KEYS, ARGV[2], ARGV[3], ARGV[7], ARGV[4], ARGV[5], ARGV[6])
return 1
"""
)

# KEYS[1]=job hash KEYS[2]=events stream KEYS[3]=metrics KEYS[4]=running set KEYS[5]=finished zset
# ARGV[1]=now_ms ARGV[2]=max_attempts (0 = no cap) ARGV[3]=now_iso ARGV[4]=maxlen ARGV[5]=requeue_after_ms
# ARGV[6]=id
# The reconciler's look at one job of the running set. Returns {outcome, status}: 'gone' (not
# running any more: dropped from the set), 'alive' (its lease is live), 'ended' (it must not run
# again: ended here, see end_if_done), 'wait' (re-enqueued less than requeue_after_ms ago) or
# 'requeue' (lease expired: marked `requeued_ms` = now; the caller enqueues its task again).
REAP = (
    _END
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' then
  redis.call('SREM', KEYS[4], ARGV[6])
  return {'gone', status or ''}
end
local now = tonumber(ARGV[1])
if tonumber(redis.call('HGET', KEYS[1], 'lease_expires_ms') or '0') > now then return {'alive', status} end
local attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0')
local ended = end_if_done(KEYS, attempt, tonumber(ARGV[2]), ARGV[3], now, ARGV[4])
if ended then return {'ended', ended} end
if now - tonumber(redis.call('HGET', KEYS[1], 'requeued_ms') or '0') < tonumber(ARGV[5]) then
  return {'wait', status}
end
redis.call('HSET', KEYS[1], 'requeued_ms', tostring(now))
return {'requeue', status}
"""
)

# KEYS[1]=job hash ARGV[1]=now_ms ARGV[2]=requeue_after_ms
# A queued job whose task message is missing: mark it re-enqueued (`requeued_ms` = now) unless that
# happened less than requeue_after_ms ago. Returns 1 when the caller should enqueue it, else 0.
MARK_REQUEUED = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 0 end
local now = tonumber(ARGV[1])
if now - tonumber(redis.call('HGET', KEYS[1], 'requeued_ms') or '0') < tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'requeued_ms', tostring(now))
return 1
"""

# KEYS[1]=job hash KEYS[2]=events stream KEYS[3]=jobs index KEYS[4]=running set KEYS[5]=finished zset
# KEYS[6]=owner's jobs index KEYS[7]=owner's pending list KEYS[8]=dispatch ring KEYS[9]=dispatch served hash
# ARGV[1]=created_ms ARGV[2]=finished_ms ('' = not ended) ARGV[3]=maxlen ARGV[4]=id
# ARGV[5]=ring member of the owner (key id, `-` = none) ARGV[6...]=field, value pairs
# A job rebuilt from storage after Redis lost it: written only when no hash exists (else returns 0),
# indexed like a live job of its status, with one `restored` event (status, attempt); an unfinished
# one is held on its owner's pending list for the dispatcher. Returns 1.
RESTORE = (
    _HOLD
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[4])
local owner = redis.call('HGET', KEYS[1], 'owner_id')
if owner and owner ~= '' then redis.call('ZADD', KEYS[6], ARGV[1], ARGV[4]) end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'running' then redis.call('SADD', KEYS[4], ARGV[4]) end
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[5], ARGV[2], ARGV[4]) end
local ev = {'type', 'restored', 'status', status, 'attempt', redis.call('HGET', KEYS[1], 'attempt') or '0'}
local code = redis.call('HGET', KEYS[1], 'error_code')
if code and code ~= '' then
  ev[#ev + 1] = 'code'; ev[#ev + 1] = code
  ev[#ev + 1] = 'message'; ev[#ev + 1] = redis.call('HGET', KEYS[1], 'error_message') or ''
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ev))
if ARGV[2] == '' then hold(KEYS[7], KEYS[8], KEYS[9], ARGV[5], ARGV[4]) end
return 1
"""
)

# KEYS[1]=job hash KEYS[2]=events stream KEYS[3]=metrics KEYS[4]=running set KEYS[5]=finished zset
# ARGV[1]=now_iso ARGV[2]=now_ms ARGV[3]=maxlen
# Returns {outcome, status}: 'cancelled' (was queued: now cancelled, terminal event written, exactly as
# FINISH would), 'cancelling' (running: cancel_requested=1 and one `cancelling` event; the worker ends it),
# 'terminal' (already ended; status says how) or 'missing'.
CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', ''} end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return {'terminal', status} end
if status == 'running' then
  if redis.call('HGET', KEYS[1], 'cancel_requested') ~= '1' then
    redis.call('HSET', KEYS[1], 'cancel_requested', '1')
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', 'cancelling', 'status', 'running')
  end
  return {'cancelling', status}
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1], 'lease_owner', '', 'lease_expires_ms', '0')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', 'cancelled', 'status', 'cancelled')
redis.call('HINCRBY', KEYS[3], 'finished:cancelled', 1)
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('SREM', KEYS[4], id)
redis.call('ZADD', KEYS[5], ARGV[2], id)
return {'cancelled', 'cancelled'}
"""

# Lua helper of the dispatcher's scripts: whether a held job may be handed to Celery: queued, or
# running with an expired lease (a job restored from storage after its worker had started it).
_DISPATCHABLE = """
local function dispatchable(job, now)
  local status = redis.call('HGET', job, 'status')
  if status == 'queued' then return true end
  return status == 'running' and tonumber(redis.call('HGET', job, 'lease_expires_ms') or '0') <= now
end
"""

# KEYS[1]=owner's pending list KEYS[2]=dispatch ring KEYS[3]=dispatch served hash KEYS[4]=dispatch seq
# KEYS[5]=dispatching zset KEYS[6]=owner's active set KEYS[7]=job hash
# ARGV[1]=id (the pending list's head as the caller read it) ARGV[2]=owner ARGV[3]=max_running (-1 = none)
# ARGV[4]=now_ms
# The dispatcher takes the head of an owner's pending list. Returns 'moved' (the head is no longer
# ARGV[1]: read it again), 'skipped' (the job cannot run: ended, purged or leased; dropped from
# the list), 'full' (the owner has max_running jobs handed out and not ended; nothing changes) or
# 'taken': the id moved from the list to the dispatching zset (score now_ms) and the owner's active
# set in one step, the owner's served number is the next dispatch number, and the owner stays in
# the ring at that number while it has held jobs. The caller enqueues the task, then DONE.
TAKE = (
    _DISPATCHABLE
    + """
local function leave_if_empty()
  if redis.call('LLEN', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[2]) end
end
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 'moved' end
local now = tonumber(ARGV[4])
if not dispatchable(KEYS[7], now) then
  redis.call('LPOP', KEYS[1])
  leave_if_empty()
  return 'skipped'
end
local max = tonumber(ARGV[3])
if max >= 0 and redis.call('SCARD', KEYS[6]) >= max then return 'full' end
redis.call('LPOP', KEYS[1])
redis.call('ZADD', KEYS[5], now, ARGV[1])
redis.call('SADD', KEYS[6], ARGV[1])
local n = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[3], ARGV[2], n)
if redis.call('LLEN', KEYS[1]) > 0 then redis.call('ZADD', KEYS[2], n, ARGV[2]) else leave_if_empty() end
return 'taken'
"""
)

# KEYS[1]=owner's pending list KEYS[2]=dispatch ring ARGV[1]=owner
# An owner whose pending list is empty leaves the ring (atomic with HOLD: a job held meanwhile keeps
# its owner in the ring). Returns 1 when the list is empty (the owner is out of the ring), else 0.
LEAVE = """
if redis.call('LLEN', KEYS[1]) > 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS[1]=dispatching zset KEYS[2]=owner's pending list KEYS[3]=dispatch ring KEYS[4]=dispatch served hash
# KEYS[5]=owner's active set KEYS[6]=job hash ARGV[1]=id ARGV[2]=owner ARGV[3]=now_ms
# A taken job whose task was not sent (the broker failed, or the dispatcher died before sending
# it): it leaves the dispatching zset and, if it can still run, the owner's active set, and goes
# back to the head of its owner's pending list (a job a worker runs stays in the active set).
# Returns 1 when held again, 0 otherwise (it was not
# in the dispatching zset, or it cannot run any more).
PUT_BACK = (
    _DISPATCHABLE
    + """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if not dispatchable(KEYS[6], tonumber(ARGV[3])) then
  -- A worker holds it (its task was sent after all): it stays counted until it ends.
  if redis.call('HGET', KEYS[6], 'status') ~= 'running' then redis.call('SREM', KEYS[5], ARGV[1]) end
  return 0
end
redis.call('SREM', KEYS[5], ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[1])
if not redis.call('ZSCORE', KEYS[3], ARGV[2]) then
  redis.call('ZADD', KEYS[3], tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0'), ARGV[2])
end
return 1
"""
)
