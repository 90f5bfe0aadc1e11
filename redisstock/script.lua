-- The one script of the redisstock strategy. ARGV[1] names the operation;
-- every key it touches comes in KEYS, all of one bucket (one hash slot).
-- KEYS[1] is always the bucket's "loaded" marker: without it the bucket's
-- data is gone (a restart without persistence, a failover that lost it),
-- and every operation refuses with {'nl'} instead of reading a missing key
-- as zero stock or an unknown SKU. KEYS[2] is the bucket's event stream
-- when the operation changes anything: every change appends its event here,
-- in the same script, so a change and its event are one atomic step.
--
-- Numbers cross the script as decimal strings; they stay below 2^53, which
-- Lua's doubles hold exactly, and are written back with %d.
--
-- Hold states: T taken, U undone (a refused or abandoned attempt), G given
-- back (released or expired). Reservation states: 0 pending (lines being
-- taken, invisible), 1 held, 2 committed, 3 released, 4 expired, 9 aborted
-- (an attempt that was refused or abandoned; the ID is free again, unless
-- the record carries cx: a Cancel aborted it, and it becomes a tombstone
-- once its holds are undone). A tombstone (Cancel of an ID never reserved)
-- is a record in state 3 without lines; a Reserve of its ID is refused.

local op = ARGV[1]
local mk = KEYS[1]

local function fmt(n) return string.format('%d', n) end

if op == 'ack' or op == 'dead' then
  -- The writer's bookkeeping. KEYS: mk, ek, dead-letter stream. ARGV: op,
  -- group, then entry ids ('ack'), or one id and its fields ('dead').
  if op == 'ack' then
    local ids = {}
    for k = 3, #ARGV do ids[#ids+1] = ARGV[k] end
    redis.call('XACK', KEYS[2], ARGV[2], unpack(ids))
    redis.call('XDEL', KEYS[2], unpack(ids))
  else
    local args = {'XADD', KEYS[3], '*', 'from', ARGV[3]}
    for k = 4, #ARGV do args[#args+1] = ARGV[k] end
    redis.call(unpack(args))
    redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
    redis.call('XDEL', KEYS[2], ARGV[3])
  end
  return {'ok'}
end

if redis.call('EXISTS', mk) == 0 then
  return {'nl'}
end

-- lines reads n lines from ARGV starting at i: sku, qty pairs.
local function lines(i, n)
  local out = {}
  for k = 1, n do
    out[k] = {ARGV[i + 2*k - 2], tonumber(ARGV[i + 2*k - 1])}
  end
  return out
end

-- event appends an entry to the stream: fields, then per line s<i> q<i>
-- and, for stock changes, a<i> v<i> (available after, version after).
local function event(ek, fields, ls, stock)
  local args = {'XADD', ek, '*'}
  for _, f in ipairs(fields) do args[#args+1] = f end
  args[#args+1] = 'n'; args[#args+1] = fmt(#ls)
  for k, l in ipairs(ls) do
    args[#args+1] = 's'..k; args[#args+1] = l[1]
    args[#args+1] = 'q'..k; args[#args+1] = fmt(l[2])
    if stock then
      args[#args+1] = 'a'..k; args[#args+1] = fmt(stock[k][1])
      args[#args+1] = 'v'..k; args[#args+1] = fmt(stock[k][2])
    end
  end
  redis.call(unpack(args))
end

-- record reads a reservation record: state, attempt, exp, created, lines.
local function record(rk)
  local h = redis.call('HMGET', rk, 'st', 'at', 'exp', 'cr', 'n', 'vs', 'cx')
  if not h[1] then return nil end
  local r = {st = tonumber(h[1]), at = tonumber(h[2]), exp = h[3], cr = h[4], ls = {}, vs = h[6], cx = h[7]}
  local n = tonumber(h[5])
  for k = 1, n do
    local l = redis.call('HMGET', rk, 's'..k, 'q'..k)
    r.ls[k] = {l[1], tonumber(l[2])}
  end
  return r
end

local function same(a, b)
  if #a ~= #b then return false end
  for k = 1, #a do
    if a[k][1] ~= b[k][1] or a[k][2] ~= b[k][2] then return false end
  end
  return true
end

local function reply(kind, r)
  local out = {kind, fmt(r.st), fmt(r.at), r.exp, r.cr, fmt(#r.ls)}
  for _, l in ipairs(r.ls) do out[#out+1] = l[1]; out[#out+1] = fmt(l[2]) end
  return out
end

local function write(rk, r)
  redis.call('DEL', rk)
  local args = {'HSET', rk, 'st', fmt(r.st), 'at', fmt(r.at), 'exp', r.exp, 'cr', r.cr, 'n', fmt(#r.ls)}
  for k, l in ipairs(r.ls) do
    args[#args+1] = 's'..k; args[#args+1] = l[1]
    args[#args+1] = 'q'..k; args[#args+1] = fmt(l[2])
  end
  redis.call(unpack(args))
end

-- begin looks for the reservation id: 'conflict' for other lines, 'done'
-- for one held or settled, 'pending' for one whose lines are being taken,
-- 'new' (with the attempt to use) when the id is free.
local function begin(rk, dk, id, ls)
  local r = record(rk)
  if r and ((r.st == 3 and #r.ls == 0) or (r.st == 9 and r.cx)) then return 'cancelled', r end
  if r and r.st ~= 9 then
    if not same(r.ls, ls) then return 'conflict', r end
    if r.st == 0 then return 'pending', r end
    return 'done', r
  end
  -- An aborted attempt whose holds are not all undone yet: the caller
  -- undoes them first.
  if r and redis.call('ZSCORE', dk, id) then return 'busy', r end
  local at = 1
  if r then at = r.at + 1 end
  return 'new', {at = at}
end

-- check finds the first line the stock keys from KEYS[first] on cannot
-- serve; nil when all can be taken.
local function check(first, ls)
  for k, l in ipairs(ls) do
    local a = redis.call('HGET', KEYS[first + k - 1], 'a')
    if not a then return {'unknown', fmt(k)} end
    if tonumber(a) < l[2] then return {'short', fmt(k), a} end
  end
  return nil
end

-- move adds sign*qty to every line's stock and returns available and
-- version after, per line.
local function move(first, ls, sign)
  local out = {}
  for k, l in ipairs(ls) do
    local sk = KEYS[first + k - 1]
    local a = redis.call('HINCRBY', sk, 'a', sign * l[2])
    local v = redis.call('HINCRBY', sk, 'v', 1)
    out[k] = {a, v}
  end
  return out
end

-- take holds the lines in this bucket under id and attempt. KEYS: mk, ek,
-- hold, stock keys from 4.
local function take(id, at, exp, ls)
  local h = redis.call('HMGET', KEYS[3], 'at', 'st')
  if h[1] then
    local hat = tonumber(h[1])
    if hat == at and h[2] == 'T' then return {'ok', redis.call('HGET', KEYS[3], 'vs')} end
    if hat >= at or h[2] == 'T' then return {'stale'} end
  end
  local refused = check(4, ls)
  if refused then return refused end
  local st = move(4, ls, -1)
  local vs = {}
  for k, s in ipairs(st) do vs[k] = fmt(s[2]) end
  vs = table.concat(vs, ',')
  redis.call('HSET', KEYS[3], 'at', fmt(at), 'st', 'T', 'vs', vs)
  event(KEYS[2], {'t', 'tk', 'id', id, 'at', fmt(at)}, ls, st)
  return {'ok', vs}
end

-- back returns the units of the hold of id and attempt (to 'U' undone or
-- 'G' given). An undo with no hold leaves a tombstone, so that a late take
-- of the same attempt (a duplicate submission) cannot take afterwards.
local function back(id, at, to, ls)
  local h = redis.call('HMGET', KEYS[3], 'at', 'st')
  if h[1] and tonumber(h[1]) == at and h[2] == 'T' then
    local st = move(4, ls, 1)
    redis.call('HSET', KEYS[3], 'st', to)
    local t = 'gv'
    if to == 'U' then t = 'ud' end
    event(KEYS[2], {'t', t, 'id', id, 'at', fmt(at)}, ls, st)
    return {'ok'}
  end
  if to == 'U' and (not h[1] or tonumber(h[1]) < at) then
    redis.call('HSET', KEYS[3], 'at', fmt(at), 'st', 'U')
  end
  return {'ok'}
end

-- final appends the event of a reservation's move to a state; versions
-- (the stock versions its takes left) ride along so the writer can wait
-- for them.
local function final(ek, id, r)
  local f = {'t', 'rs', 'id', id, 'st', fmt(r.st), 'exp', r.exp, 'cr', r.cr}
  if r.vs then f[#f+1] = 'vs'; f[#f+1] = r.vs end
  event(ek, f, r.ls, nil)
end

if op == 'stock' then
  -- KEYS: mk, ek, stock. ARGV: op, sku, available.
  redis.call('HSET', KEYS[3], 'a', ARGV[3])
  local v = redis.call('HINCRBY', KEYS[3], 'v', 1)
  event(KEYS[2], {'t', 'st'}, {{ARGV[2], 0}}, {{tonumber(ARGV[3]), v}})
  return {'ok'}

elseif op == 'add' then
  -- KEYS: mk, ek, stock, op token key. ARGV: op, sku, delta, max.
  local done = redis.call('GET', KEYS[4])
  if done then return {'ok', done} end
  local a = redis.call('HGET', KEYS[3], 'a')
  if not a then return {'unknown'} end
  local na = tonumber(a) + tonumber(ARGV[3])
  if na < 0 then return {'short', a} end
  if na > tonumber(ARGV[4]) then return {'over', a} end
  local st = move(3, {{ARGV[2], tonumber(ARGV[3])}}, 1)
  event(KEYS[2], {'t', 'st'}, {{ARGV[2], 0}}, st)
  redis.call('SET', KEYS[4], fmt(na), 'EX', 3600)
  return {'ok', fmt(na)}

elseif op == 'avail' then
  -- KEYS: mk, stock.
  local a = redis.call('HGET', KEYS[2], 'a')
  if not a then return {'unknown'} end
  return {'ok', a}

elseif op == 'lookup' then
  -- KEYS: mk, record.
  local r = record(KEYS[2])
  if not r or r.st == 0 or r.st == 9 then return {'nf'} end
  return reply('ok', r)

elseif op == 'reserve' then
  -- The whole cart in one bucket. KEYS: mk, ek, record, due, hold, stock
  -- keys from 6. ARGV: op, id, now, exp, n, lines.
  local id, now, exp, n = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
  local ls = lines(6, n)
  local kind, r = begin(KEYS[3], KEYS[4], id, ls)
  if kind ~= 'new' then return reply(kind, r) end
  local h = redis.call('HMGET', KEYS[5], 'at', 'st')
  if h[1] and (tonumber(h[1]) >= r.at or h[2] == 'T') then return {'stale'} end
  local refused = check(6, ls)
  if refused then return refused end
  local st = move(6, ls, -1)
  redis.call('HSET', KEYS[5], 'at', fmt(r.at), 'st', 'T')
  event(KEYS[2], {'t', 'tk', 'id', id, 'at', fmt(r.at)}, ls, st)
  r = {st = 1, at = r.at, exp = exp, cr = now, ls = ls}
  write(KEYS[3], r)
  redis.call('ZADD', KEYS[4], exp, id)
  final(KEYS[2], id, r)
  return reply('new', r)

elseif op == 'begin' then
  -- KEYS: mk, record, due. ARGV: op, id, now, exp, deadline, n, lines.
  local id, now, exp, n = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[6])
  local ls = lines(7, n)
  local kind, r = begin(KEYS[2], KEYS[3], id, ls)
  if kind ~= 'new' then return reply(kind, r) end
  r = {st = 0, at = r.at, exp = exp, cr = now, ls = ls}
  write(KEYS[2], r)
  redis.call('ZADD', KEYS[3], ARGV[5], id)
  return reply('new', r)

elseif op == 'take' then
  -- KEYS: mk, ek, hold, stock keys from 4. ARGV: op, id, attempt, n, lines.
  return take(ARGV[2], tonumber(ARGV[3]), nil, lines(5, tonumber(ARGV[4])))

elseif op == 'undo' or op == 'give' then
  -- KEYS: mk, ek, hold, stock keys from 4. ARGV: op, id, attempt, n, lines.
  local to = 'G'
  if op == 'undo' then to = 'U' end
  return back(ARGV[2], tonumber(ARGV[3]), to, lines(5, tonumber(ARGV[4])))

elseif op == 'grant' then
  -- KEYS: mk, ek, record, due. ARGV: op, id, attempt, versions.
  local id, at = ARGV[2], tonumber(ARGV[3])
  local r = record(KEYS[3])
  if not r or r.at ~= at or r.st == 9 then return {'gone'} end
  if r.st ~= 0 then return reply('ok', r) end
  r.st = 1
  r.vs = ARGV[4]
  redis.call('HSET', KEYS[3], 'st', '1', 'vs', r.vs)
  redis.call('ZADD', KEYS[4], r.exp, id)
  final(KEYS[2], id, r)
  return reply('ok', r)

elseif op == 'abort' then
  -- KEYS: mk, record, due. ARGV: op, id, attempt, now.
  -- The record stays in the due set until its holds are undone ('done').
  -- The reply is the record as it is now: granted by a duplicate
  -- submission, the caller must not undo anything.
  local r = record(KEYS[2])
  if not r then return {'nf'} end
  if r.st == 0 and r.at == tonumber(ARGV[3]) then
    r.st = 9
    redis.call('HSET', KEYS[2], 'st', '9')
    redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
  end
  return reply('ok', r)

elseif op == 'settle' or op == 'sweep' then
  -- settle: Commit (ARGV[3] = 2) or Release (3). sweep: whatever is due
  -- (ARGV[3] = 0). KEYS: mk, ek, record, due. ARGV: op, id, to, now.
  -- The reply's kind says what the caller still has to do: 'give' the
  -- units back (a release or an expiry not yet propagated), 'undo' the
  -- holds of an abandoned attempt, or nothing ('ok'). Its state is the
  -- reservation's; 'expired' means this call expired it.
  local id, to, now = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
  local r = record(KEYS[3])
  local score = redis.call('ZSCORE', KEYS[4], id)
  if not r or (op == 'settle' and (r.st == 0 or r.st == 9)) then
    if op == 'sweep' then redis.call('ZREM', KEYS[4], id) end
    return {'nf'}
  end
  if op == 'sweep' and (not score or tonumber(score) > now) then return {'nf'} end
  local kind = 'ok'
  if r.st == 0 then
    -- an attempt abandoned past its deadline: abort it; its holds must be
    -- undone before the entry leaves the due set.
    r.st = 9
    redis.call('HSET', KEYS[3], 'st', '9')
    return reply('undo', r)
  elseif r.st == 9 then
    return reply('undo', r)
  elseif r.st == 1 and tonumber(r.exp) <= now then
    r.st = 4
    redis.call('HSET', KEYS[3], 'st', '4')
    redis.call('ZADD', KEYS[4], fmt(now), id)
    final(KEYS[2], id, r)
    return reply('expired', r)
  elseif r.st == 1 and to ~= 0 then
    r.st = to
    redis.call('HSET', KEYS[3], 'st', fmt(to))
    if to == 2 then
      redis.call('ZREM', KEYS[4], id)
    else
      redis.call('ZADD', KEYS[4], fmt(now), id)
      kind = 'give'
    end
    final(KEYS[2], id, r)
    return reply(kind, r)
  elseif (r.st == 3 or r.st == 4) and score then
    return reply('give', r)
  elseif op == 'sweep' and r.st ~= 1 then
    redis.call('ZREM', KEYS[4], id)
  end
  return reply(kind, r)

elseif op == 'cancel' then
  -- KEYS: mk, ek, record, due. ARGV: op, id, to (unused), now.
  -- Like settle to 3, except that an ID without a reservation gets a
  -- tombstone, and an attempt still being taken is aborted for good: the
  -- reply 'undo' asks the caller to undo its holds and call again, which
  -- then writes the tombstone.
  local id, now = ARGV[2], ARGV[4]
  local r = record(KEYS[3])
  local score = redis.call('ZSCORE', KEYS[4], id)
  if r and (r.st == 0 or (r.st == 9 and score)) then
    if r.st == 0 or not r.cx then
      redis.call('HSET', KEYS[3], 'st', '9', 'cx', '1')
      redis.call('ZADD', KEYS[4], now, id)
    end
    r.st = 9
    return reply('undo', r)
  end
  if not r or r.st == 9 then
    -- A new attempt number, so that the grant of the aborted one finds
    -- its attempt gone.
    local at = 1
    if r then at = r.at + 1 end
    local t = {st = 3, at = at, exp = now, cr = now, ls = {}}
    write(KEYS[3], t)
    final(KEYS[2], id, t)
    return reply('ok', t)
  end
  if r.st == 1 and tonumber(r.exp) <= tonumber(now) then
    r.st = 4
    redis.call('HSET', KEYS[3], 'st', '4')
    redis.call('ZADD', KEYS[4], now, id)
    final(KEYS[2], id, r)
    return reply('expired', r)
  elseif r.st == 1 then
    r.st = 3
    redis.call('HSET', KEYS[3], 'st', '3')
    redis.call('ZADD', KEYS[4], now, id)
    final(KEYS[2], id, r)
    return reply('give', r)
  elseif (r.st == 3 or r.st == 4) and score then
    return reply('give', r)
  end
  return reply('ok', r)

elseif op == 'done' then
  -- KEYS: mk, due. ARGV: op, id.
  redis.call('ZREM', KEYS[2], ARGV[2])
  return {'ok'}

elseif op == 'due' then
  -- KEYS: mk, due. ARGV: op, now, limit.
  return redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])

end
return redis.error_reply('redisstock: unknown operation ' .. tostring(op))
