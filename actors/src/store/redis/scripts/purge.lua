#!lua flags=allow-oom
-- Deletes one bounded batch of terminal tasks that finished before a cut-off, with their
-- idempotency keys (only while a key still names the deleted task) and index entries.
-- A finish already took the task out of its node's owner set; the purge removes it
-- again, so no owner set can keep the id of a deleted record.
-- It only deletes, so it may run when Redis is out of memory (allow-oom): purging is how
-- a full store recovers.
--
-- KEYS[1]  the finished index        KEYS[2]  the recent index
-- ARGV[1]  record key prefix, completed with ids from the finished index
-- ARGV[2]  owner-set key prefix, completed with the record's node
-- ARGV[3]  cut-off in milliseconds (exclusive)
-- ARGV[4]  at most this many tasks
-- Returns how many tasks were deleted.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  local task = ARGV[1] .. id
  local idem, node = unpack(redis.call('HMGET', task, 'idem', 'node'))
  if idem and redis.call('GET', idem) == id then
    redis.call('DEL', idem)
  end
  if node then
    redis.call('SREM', ARGV[2] .. node, id)
  end
  redis.call('DEL', task)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return #ids
