#!lua
-- Moves live tasks from one holder to another, atomically: TaskStore::claim (every task
-- in the old holder's owner set) or TaskStore::reassign (the ids given). A task moves
-- only if it is queued or running and its record names the old holder; a running one
-- goes back to queued with its attempts kept and the given error. Every move bumps the
-- record's lease token (`lease`, absent: 0) by one, so the old holder's writes, which
-- carry the old token, are refused by change.lua from now on, even if the task comes
-- back to it; the old attempt's `progress` field is deleted. Because the whole
-- check-and-move runs in one script, each task moves once, whoever else claims it.
--
-- KEYS[1]  the old holder's owner set    KEYS[2]  the new holder's owner set
-- KEYS[3]  the holders set
-- ARGV[1]  record key prefix, completed with ids
-- ARGV[2]  the old holder                ARGV[3]  the new holder
-- ARGV[4]  the error a running task gets
-- ARGV[5]  'claim' (every member of KEYS[1], oldest id first) or 'ids' (ARGV[7 + nf]..)
-- ARGV[6]  nf, then the nf record fields to return for each moved task
-- Returns, flattened, per moved task: its id and the values of the fields after the move.
-- A claim also drops members of the old set whose record is gone, terminal or held
-- elsewhere, so a stale member cannot make a node look like a holder forever.
--
-- The shebang (Redis >= 7.0) makes Redis refuse the script up front when it is out of
-- memory, so it never fails halfway through.
local prefix, from, to, err, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local nf = tonumber(ARGV[6])
local fields = {}
for i = 1, nf do
  fields[i] = ARGV[6 + i]
end
local ids = {}
if mode == 'claim' then
  ids = redis.call('SMEMBERS', KEYS[1])
  table.sort(ids)
else
  for i = 7 + nf, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
end
local out = {}
local seen = {}
for _, id in ipairs(ids) do
  if not seen[id] then
    seen[id] = true
    local task = prefix .. id
    local status, node = unpack(redis.call('HMGET', task, 'status', 'node'))
    local live = status == 'queued' or status == 'running'
    if live and node == from then
      if status == 'running' then
        redis.call('HSET', task, 'status', 'queued', 'error', err)
      end
      redis.call('HSET', task, 'node', to)
      redis.call('HINCRBY', task, 'lease', 1)
      redis.call('HDEL', task, 'progress')
      redis.call('SREM', KEYS[1], id)
      redis.call('SADD', KEYS[2], id)
      out[#out + 1] = id
      out[#out + 1] = redis.call('HMGET', task, unpack(fields))
    elseif mode == 'claim' then
      redis.call('SREM', KEYS[1], id)
    end
  end
end
if #out > 0 then
  redis.call('SADD', KEYS[3], to)
end
return out
