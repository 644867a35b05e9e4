#!lua
-- Creates tasks in order, atomically: one call of TaskStore::create.
-- A task is written only if its idempotency key is free and its id unused; a key taken
-- by an earlier task of the same call is seen as taken, because the tasks run in order.
--
-- KEYS[1]  the unfinished index      KEYS[2]  the recent index
-- KEYS[3]  the holders set
-- then per task: its record hash, its idempotency key (the hash again when it has none),
-- and the owner set of the node that holds it (the hash again when it has no node)
-- ARGV per task: id, has_key ('1' or '0'), node ('' for none), field count n, then n
-- field/value pairs
-- Returns per task, flattened: 0 and the id (created) or 1 and the first task's id.
-- A created task with a node joins that node's owner set (and the node the holders set)
-- here, so it is the node's to recover, or a survivor's to claim, from the moment it
-- exists.
--
-- The shebang (Redis >= 7.0) makes Redis refuse the script up front when it is out of
-- memory, so it never fails halfway through.
local out = {}
local arg = 1
for k = 4, #KEYS, 3 do
  local task, idem, owner = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local id, has_key, node, n = ARGV[arg], ARGV[arg + 1] == '1', ARGV[arg + 2], tonumber(ARGV[arg + 3])
  local first = has_key and redis.call('GET', idem)
  if first then
    out[#out + 1] = 1
    out[#out + 1] = first
  elseif redis.call('EXISTS', task) == 1 then
    out[#out + 1] = 1
    out[#out + 1] = id
  else
    redis.call('HSET', task, unpack(ARGV, arg + 4, arg + 3 + 2 * n))
    if has_key then
      redis.call('HSET', task, 'idem', idem)
      redis.call('SET', idem, id)
    end
    redis.call('ZADD', KEYS[1], 0, id)
    redis.call('ZADD', KEYS[2], 0, id)
    if owner ~= task then
      redis.call('SADD', owner, id)
      redis.call('SADD', KEYS[3], node)
    end
    out[#out + 1] = 0
    out[#out + 1] = id
  end
  arg = arg + 4 + 2 * n
end
return out
