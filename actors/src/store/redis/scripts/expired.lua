#!lua flags=allow-oom
-- TaskStore::expired_holders: the nodes of the holders set whose owner set is not empty
-- and whose lease key is gone, sorted. Drops from the holders set every node whose owner
-- set is empty; since every script that adds to an owner set also adds its node to the
-- holders set, a node holding a live task is never dropped. It only deletes, so it may
-- run when Redis is out of memory (allow-oom): finding lost nodes matters most then.
--
-- KEYS[1]  the holders set
-- ARGV[1]  owner-set key prefix       ARGV[2]  lease key prefix
-- Returns the expired holders.
local out = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('SCARD', ARGV[1] .. node) == 0 then
    redis.call('SREM', KEYS[1], node)
  elseif redis.call('EXISTS', ARGV[2] .. node) == 0 then
    out[#out + 1] = node
  end
end
table.sort(out)
return out
