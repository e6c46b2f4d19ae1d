"""Lua scripts that change a job atomically: state and its event in one step.

Each script updates the job hash and appends the matching event to the job's stream in one
atomic step, so a reader never sees a status without its event or the reverse, and a terminal
event is written exactly once. Fencing: writes from a worker carry the attempt number it
claimed; a write whose attempt no longer matches is refused (returns 0).
"""

from __future__ import annotations

# KEYS[1]=job hash, KEYS[2]=events stream, KEYS[3]=jobs index, KEYS[4]=metrics
# ARGV[1]=created_ms ARGV[2]=maxlen ARGV[3]=id ARGV[4...]=field, value pairs
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[4], 'submitted', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'type', 'queued', 'status', 'queued')
return 1
"""

# KEYS[1]=job hash, KEYS[2]=events stream, KEYS[3]=running set
# ARGV[1]=now_ms ARGV[2]=lease_ms ARGV[3]=owner ARGV[4]=now_iso ARGV[5]=maxlen
# Returns {outcome, attempt, status}: outcome 'claimed' | 'busy' | 'terminal' | 'missing'.
CLAIM = """
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

# KEYS[1]=job hash ARGV[1]=attempt ARGV[2]=now_ms ARGV[3]=lease_ms
RENEW = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'lease_expires_ms', tonumber(ARGV[2]) + tonumber(ARGV[3]))
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

# KEYS[1]=job hash KEYS[2]=events stream KEYS[3]=metrics KEYS[4]=running set
# ARGV[1]=attempt ('' = no fence: the API cancelling) ARGV[2]=status ARGV[3]=now_iso ARGV[4]=maxlen
# ARGV[5]=error code ARGV[6]=error message
# Allowed: running -> succeeded|failed|cancelled; queued -> failed|cancelled. A terminal job never changes.
FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 0 end
if ARGV[1] ~= '' and (status ~= 'running' or redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1]) then
  return 0
end
if ARGV[2] == 'succeeded' and status ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', ARGV[3], 'lease_owner', '', 'lease_expires_ms', '0')
local ev = {'type', ARGV[2], 'status', ARGV[2]}
if ARGV[2] == 'succeeded' then
  redis.call('HSET', KEYS[1], 'percent', '100')
  ev[#ev + 1] = 'percent'; ev[#ev + 1] = '100'
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'error_code', ARGV[5], 'error_message', ARGV[6])
  ev[#ev + 1] = 'code'; ev[#ev + 1] = ARGV[5]
  ev[#ev + 1] = 'message'; ev[#ev + 1] = ARGV[6]
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', unpack(ev))
redis.call('HINCRBY', KEYS[3], 'finished:' .. ARGV[2], 1)
redis.call('SREM', KEYS[4], redis.call('HGET', KEYS[1], 'id'))
return 1
"""
