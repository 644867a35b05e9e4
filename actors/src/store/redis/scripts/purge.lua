#!lua flags=allow-oom
-- Deletes one bounded batch of terminal tasks that finished before a cut-off, with their
-- idempotency keys (only while a key still names the deleted task) and index entries.
-- It only deletes, so it may run when Redis is out of memory (allow-oom): purging is how
-- a full store recovers.
--
-- KEYS[1]  the finished index        KEYS[2]  the recent index
-- ARGV[1]  record key prefix, completed with ids from the finished index
-- ARGV[2]  cut-off in milliseconds (exclusive)
-- ARGV[3]  at most this many tasks
-- Returns how many tasks were deleted.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local task = ARGV[1] .. id
  local idem = redis.call('HGET', task, 'idem')
  if idem and redis.call('GET', idem) == id then
    redis.call('DEL', idem)
  end
  redis.call('DEL', task)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return #ids
