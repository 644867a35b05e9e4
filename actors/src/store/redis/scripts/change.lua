#!lua
-- Applies start, requeue, finish or progress to one task if its current status, holder and lease
-- token allow it: the first terminal write wins, and only the holder, with the record's
-- current token, may act on a held task.
-- Keeps the unfinished, finished and owner indexes (and the holders set) in step.
--
-- KEYS[1]  the record hash           KEYS[2]  the unfinished index
-- KEYS[3]  the finished index        KEYS[4]  the owner set of the starting node
--                                             (the record hash again when not a start)
-- KEYS[5]  the holders set
-- ARGV[1]  task id
-- ARGV[2]  owner-set key prefix, completed with the record's previous node
-- ARGV[3]  new status; '' only reads the status (a finish with a live status); '=' keeps
--          the current status and writes only the fields (a progress report)
-- ARGV[4]  the starting node, or '' when not a start
-- ARGV[5]  finished_at_ms, or '' when the new status is not terminal
-- ARGV[6]  the node that must hold the task (fencing), or '' for none
-- ARGV[7]  the lease token the change carries (decimal); it must equal the record's
--          `lease` field (absent: 0). Claims and reassigns bump it (transfer.lua); a
--          requeue bumps it too: its fields set `lease` to ARGV[7] + 1, written only
--          after the check below found the record's token equal to ARGV[7], so the bump
--          is atomic with the change (start, progress and finish never set it).
-- ARGV[8]  n, then n field/value pairs to set, then the fields to delete
-- Returns {0, ''} no such task, {1, new status} applied, {2, current status} rejected,
-- {3, holder} refused because another node holds the task or the token is stale
-- (holder '' when nobody holds it). Checked in that order: terminal, then holder, then
-- token, then a finish with a live status.
-- A start adds the id to the starting node's owner set (fencing means the task was held
-- by nobody or by that node already); a requeue leaves it where it is (the retry waits on
-- that node); a finish removes it.
--
-- The shebang (Redis >= 7.0) makes Redis refuse the script up front when it is out of
-- memory, so it never fails halfway through.
local current = redis.call('HGET', KEYS[1], 'status')
if not current then
  return {0, ''}
end
if current == 'succeeded' or current == 'failed' or current == 'cancelled' then
  return {2, current}
end
local previous = redis.call('HGET', KEYS[1], 'node')
if ARGV[6] ~= '' and previous and previous ~= ARGV[6] then
  return {3, previous}
end
if (redis.call('HGET', KEYS[1], 'lease') or '0') ~= ARGV[7] then
  return {3, previous or ''}
end
if ARGV[3] == '' then
  return {2, current}
end
local id = ARGV[1]
local status = ARGV[3]
if status == '=' then
  status = current
end
local n = tonumber(ARGV[8])
-- Attempts never go down (rules::apply): a start counts at least one more than recorded.
local floor = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') or 0
if ARGV[4] ~= '' then
  floor = floor + 1
end
redis.call('HSET', KEYS[1], 'status', status, unpack(ARGV, 9, 8 + 2 * n))
if #ARGV > 8 + 2 * n then
  redis.call('HDEL', KEYS[1], unpack(ARGV, 9 + 2 * n))
end
if (tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') or 0) < floor then
  redis.call('HSET', KEYS[1], 'attempts', floor)
end
if ARGV[4] ~= '' then
  if previous and previous ~= ARGV[4] then
    redis.call('SREM', ARGV[2] .. previous, id)
  end
  redis.call('SADD', KEYS[4], id)
  redis.call('SADD', KEYS[5], ARGV[4])
end
if ARGV[5] ~= '' then
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[3], ARGV[5], id)
  if previous then
    redis.call('SREM', ARGV[2] .. previous, id)
  end
end
return {1, status}
