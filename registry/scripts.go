package registry

import "github.com/redis/go-redis/v9"

// Lua scripts run where several commands must be atomic. Every script touches only the keys of one
// function (one hash tag), so it runs on Redis Cluster too. Times come from the server (TIME), the
// same clock that stamps stream ids, so sidecar clock skew does not matter.

// luaLib is shared by the stream scripts: stream-id arithmetic and the "safe trim bound".
const luaLib = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function parse(id)
  local d = string.find(id, '-', 1, true)
  if not d then return tonumber(id), 0 end
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am < bm end
  return as < bs
end
local function nextid(id)
  local m, s = parse(id)
  return string.format('%.0f-%.0f', m, s + 1)
end
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- safe_bound: entries below the returned id were delivered to and acknowledged by every group.
-- Undelivered entries (after last-delivered-id) and pending ones are above it, so they are kept.
local function safe_bound(stream)
  local groups = redis.call('XINFO', 'GROUPS', stream)
  if #groups == 0 then return '0-0' end
  local bound = nil
  for _, g in ipairs(groups) do
    local name, last = nil, '0-0'
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    local b = nextid(last)
    local p = redis.call('XPENDING', stream, name)
    if tonumber(p[1]) > 0 and less(p[2], b) then b = p[2] end
    if bound == nil or less(b, bound) then bound = b end
  end
  return bound
end
-- trim_below removes entries with id < min(target, safe bound); legacy servers (< 6.2) have no
-- XTRIM MINID, so there the entries are deleted by id, at most batch of them.
local function trim_below(stream, target, legacy, batch)
  local x = target
  local safe = safe_bound(stream)
  if less(safe, x) then x = safe end
  if legacy ~= '1' then
    return redis.call('XTRIM', stream, 'MINID', x)
  end
  local m, s = parse(x)
  local last
  if s > 0 then last = string.format('%.0f-%.0f', m, s - 1)
  elseif m > 0 then last = string.format('%.0f', m - 1) .. '-18446744073709551615'
  else return 0 end
  local ents = redis.call('XRANGE', stream, '-', last, 'COUNT', batch)
  local removed = 0
  local ids = {}
  for _, e in ipairs(ents) do
    ids[#ids + 1] = e[1]
    if #ids == 500 then removed = removed + redis.call('XDEL', stream, unpack(ids)); ids = {} end
  end
  if #ids > 0 then removed = removed + redis.call('XDEL', stream, unpack(ids)) end
  return removed
end
-- length_bound: the id below which entries must go to bring the stream down to keep entries.
local function length_bound(stream, len, keep, batch)
  local k = len - keep
  if k <= 0 then return '0-0' end
  if k > batch then k = batch end
  local ents = redis.call('XRANGE', stream, '-', '+', 'COUNT', k)
  if #ents == 0 then return '0-0' end
  return nextid(ents[#ents][1])
end
`

// addCallScript: KEYS[1]=calls, KEYS[2]=budget (absent on Cluster); ARGV: payload, maxlen, batch,
// legacy, budget bytes. Refuses when the stream does not exist (nobody ever served the function)
// and, when the stream is full, first removes finished entries and refuses only if unfinished calls
// alone fill it. So a cap never drops a queued call (XADD MAXLEN would). With the budget key it
// refuses a payload that would take the counter past the budget ("BUDGET <used>") and counts the
// queued one, in the same step.
var addCallScript = redis.NewScript(luaLib + `
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOSTREAM') end
local maxlen = tonumber(ARGV[2])
local len = redis.call('XLEN', KEYS[1])
if len >= maxlen then
  local keep = math.floor(maxlen * 0.9)
  if keep >= maxlen then keep = maxlen - 1 end
  trim_below(KEYS[1], length_bound(KEYS[1], len, keep, tonumber(ARGV[3])), ARGV[4], tonumber(ARGV[3]))
  len = redis.call('XLEN', KEYS[1])
  if len >= maxlen then return redis.error_reply('BACKLOG ' .. len) end
end
if KEYS[2] then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used + #ARGV[1] > tonumber(ARGV[5]) then return redis.error_reply('BUDGET ' .. used) end
end
local id = redis.call('XADD', KEYS[1], '*', 'c', ARGV[1])
if KEYS[2] then redis.call('INCRBY', KEYS[2], #ARGV[1]) end
return id
`)

// trimScript: KEYS[1]=calls; ARGV: maxlen, maxAgeMs, batch, legacy. Returns {removed, length}.
var trimScript = redis.NewScript(luaLib + `
local len = redis.call('XLEN', KEYS[1])
if len == 0 then return {0, 0} end
local target = string.format('%.0f-0', nowms() - tonumber(ARGV[2]))
local lb = length_bound(KEYS[1], len, tonumber(ARGV[1]), tonumber(ARGV[3]))
if less(target, lb) then target = lb end
local removed = trim_below(KEYS[1], target, ARGV[4], tonumber(ARGV[3]))
return {removed, redis.call('XLEN', KEYS[1])}
`)

// deadLetterScript: KEYS[1]=calls, KEYS[2]=dead, KEYS[3]=budget (absent on Cluster); ARGV: group,
// entryID, reason, deadMaxLen. Moves a still-pending entry to the dead-letter stream (acknowledged
// and deleted from the calls stream, its bytes released from the budget), atomically.
// Returns {0} when the entry is no longer pending (finished meanwhile), else {1, deliveries, payload,
// deadID, bytes released}.
var deadLetterScript = redis.NewScript(luaLib + `
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 then return {0} end
local deliveries = p[1][4]
local payload = ''
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #e > 0 then
  local f = e[1][2]
  for i = 1, #f, 2 do if f[i] == 'c' then payload = f[i + 1] end end
end
local did = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'c', payload, 'entry', ARGV[2],
  'reason', ARGV[3], 'deliveries', deliveries, 'at', nowms())
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local bytes = 0
if #e > 0 then
  redis.call('XDEL', KEYS[1], ARGV[2])
  bytes = #payload
  if KEYS[3] and bytes > 0 then
    local v = redis.call('DECRBY', KEYS[3], bytes)
    if v < 0 then redis.call('SET', KEYS[3], 0) end
  end
end
return {1, deliveries, payload, did, bytes}
`)

// replayScript: KEYS[1]=dead, KEYS[2]=calls, KEYS[3]=budget (absent on Cluster); ARGV: deadID,
// payload. Re-queues a dead letter (counted in the budget: an operator's replay is not refused) and
// removes it from the dead-letter stream, atomically. Returns the new entry id.
var replayScript = redis.NewScript(`
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return redis.error_reply('NOTFOUND') end
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.error_reply('NOSTREAM') end
local id = redis.call('XADD', KEYS[2], '*', 'c', ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[1])
if KEYS[3] then redis.call('INCRBY', KEYS[3], #ARGV[2]) end
return id
`)

// keepAliveScript: KEYS[1]=calls; ARGV: group, consumer, ids... Resets the idle time of the entries
// the consumer still owns (XCLAIM JUSTID does not count a delivery) and never takes an entry from
// another consumer. Returns the ids that are not owned any more.
var keepAliveScript = redis.NewScript(`
local keep, lost = {}, {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then keep[#keep + 1] = ARGV[i] else lost[#lost + 1] = ARGV[i] end
end
local i = 1
while i <= #keep do
  local chunk = {}
  for j = i, math.min(i + 499, #keep) do chunk[#chunk + 1] = keep[j] end
  chunk[#chunk + 1] = 'JUSTID'
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(chunk))
  i = i + 500
end
return lost
`)

// heartbeatScript: KEYS[1]=live; ARGV: sidecarID, ttlMs. Marks the sidecar live for ttl (server clock).
var heartbeatScript = redis.NewScript(luaLib + `
local now = nowms()
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 1
`)

// liveScript: KEYS[1]=live. Returns the sidecar ids whose heartbeat has not expired.
var liveScript = redis.NewScript(luaLib + `
return redis.call('ZRANGEBYSCORE', KEYS[1], nowms(), '+inf')
`)

// pruneConsumersScript: KEYS[1]=calls; ARGV: group, maxIdleMs. Deletes consumers that own nothing
// and were idle longer than maxIdle (dead sidecars' names), atomically with the "owns nothing"
// check, since XGROUP DELCONSUMER drops the consumer's pending entries. Returns the count deleted.
var pruneConsumersScript = redis.NewScript(`
local n = 0
local cs = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, c in ipairs(cs) do
  local name, pending, idle = nil, 0, 0
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1]
    elseif c[i] == 'pending' then pending = tonumber(c[i + 1])
    elseif c[i] == 'idle' then idle = tonumber(c[i + 1]) end
  end
  if name and pending == 0 and idle > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    n = n + 1
  end
end
return n
`)
