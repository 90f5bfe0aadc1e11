-- The one script of the redisstock strategy. ARGV[1] names the operation;
-- every key it touches comes in KEYS, all of one bucket (one hash slot).
-- KEYS[1] is always the bucket's "loaded" marker (a hash: e the epoch of
-- the Load that wrote it, q the bucket's sequence): without it the bucket's
-- data is gone (a restart without persistence, a failover that lost it),
-- and every operation refuses with {'nl'} instead of reading a missing key
-- as zero stock or an unknown SKU. KEYS[2] is the bucket's event stream
-- when the operation changes anything: every change appends its event here,
-- in the same script, so a change and its event are one atomic step.
--
-- K and A are the keys and arguments of the operation at hand: KEYS and
-- ARGV, or one request's share of them when ARGV[1] is 'multi', which runs
-- several requests of one bucket, one after another, in one call (see the
-- end of the script).
--
-- Numbers cross the script as decimal strings; they stay below 2^53, which
-- Lua's doubles hold exactly, and are written back with %d. Every number
-- converted costs Redis a formatting (a number passed to redis.call is
-- written with %.17g, one in table.concat with %.14g, both slower than
-- %d): the hot paths keep the strings they were given (a line's units as
-- a request or a record has them, an attempt taken from the clock) and
-- pass strings to redis.call.
--
-- Hold states: T taken, U undone (a refused or abandoned attempt), G given
-- back (released or expired). Reservation states: 0 pending (lines being
-- taken, invisible), 1 held, 2 committed, 3 released, 4 expired, 9 aborted
-- (an attempt that was refused or abandoned; the ID is free again, unless
-- the record carries cx: a Cancel aborted it, and it becomes a tombstone
-- once its holds are undone). A tombstone (Cancel of an ID never reserved)
-- is a record in state 3 without lines; a Reserve of its ID is refused.
--
-- Retention: the operations that finish a reservation (settle, sweep,
-- settle1, cancel, give, undo, sell, their +done forms, done) may carry,
-- after their own arguments, the store's retention in milliseconds
-- (Options.Retention; none, or 0, keeps everything). With it, a record
-- leaves for good the retention after it left the due set in a final
-- state (committed, released, expired, a tombstone, or aborted), and a
-- hold key the retention after it was given back, undone or sold: the
-- script that finishes it sets the key's expiry (PEXPIRE, NX: a script
-- run again keeps the first), on Redis's clock. A record never expires
-- while it is held, pending or in the due set: whatever is left to do
-- for it is still there to be done.

local K, A = KEYS, ARGV

local function fmt(n) return string.format('%d', n) end

-- str returns x as a decimal string: a number written with %d, a string
-- as it is.
local function str(x)
  if type(x) == 'number' then return fmt(x) end
  return x
end

-- Numbers go to redis.call and into replies as they are: Redis writes an
-- integral number below 2^53 as its decimal digits, and replies with it as
-- an integer, which costs less than a conversion in Lua.

-- nm returns the field name p..k (s1, q1, ...), built once per call.
local names = {}
local function nm(p, k)
  local t = names[p]
  if not t then t = {}; names[p] = t end
  local v = t[k]
  if not v then v = p .. fmt(k); t[k] = v end
  return v
end

-- lines reads n lines from A starting at i: sku, qty pairs. A line is
-- {sku, qty, the qty's digits}: the third, when there, is the second as
-- the caller wrote it (see qs).
local function lines(i, n)
  local out = {}
  for k = 1, n do
    local q = A[i + 2*k - 1]
    out[k] = {A[i + 2*k - 2], tonumber(q), q}
  end
  return out
end

-- qs returns the units of line l as a decimal string.
local function qs(l) return l[3] or fmt(l[2]) end

-- The bucket's sequence: every event carries the next number (field sq),
-- kept in the marker's field q. Within a script call every request is of
-- one bucket, so the number is read once and written back once, at the
-- end (flushSeq). PostgreSQL keeps the highest it applied: an event that
-- comes with a number it already applied from another entry, or a Redis
-- whose number is below it, is a Redis that went back in time.
local seqs = {}
local function nextSeq(mk)
  local q = seqs[mk]
  if not q then q = tonumber(redis.call('HGET', mk, 'q') or '0') end
  q = q + 1
  seqs[mk] = q
  return q
end


-- eventLine is a line's part of an event (see event): sku and qty, and
-- with s (available and version after) those two.
local function eventLine(l, s)
  if s then return '\31' .. l[1] .. '\31' .. qs(l) .. '\31' .. fmt(s[1]) .. '\31' .. fmt(s[2]) end
  return '\31' .. l[1] .. '\31' .. qs(l)
end

-- event appends an entry to the stream: one field p, the event's values
-- joined by the unit separator (byte 31, which no ID or SKU holds): 'e2'
-- (the format), the sequence, type t, reservation id, attempt at, state
-- st, expiry exp, created cr, versions vs, backorder b, then from x the
-- buyer y, partial p ('1'), limit l and the counted flags c of the lines
-- (one '1' or '0' per line: its units count against the buyer's usage),
-- each empty when the event has none, the number of lines, then per line
-- sku and qty and, for stock changes (stock given), available and version
-- after. K[1] is the bucket's marker, whose sequence numbers the event.
-- (The format before, 'e1', had no y, p, l and c.)
local function event(ek, t, id, at, st, exp, cr, vs, b, ls, stock, x)
  local y, pt, l, c = '', '', '', ''
  if x then
    y, l, c = x.y or '', str(x.l or ''), x.c or ''
    if x.p then pt = '1' end
  end
  if type(st) == 'number' then st = nm('', st) end
  -- One concatenation of strings (no table, no number for Lua to
  -- convert), then the lines.
  local p = 'e2\31' .. fmt(nextSeq(K[1])) .. '\31' .. t .. '\31' .. (id or '') .. '\31' .. str(at or '') .. '\31' .. (st or '') ..
    '\31' .. (exp or '') .. '\31' .. (cr or '') .. '\31' .. (vs or '') .. '\31' .. str(b or '') .. '\31' .. y .. '\31' .. pt ..
    '\31' .. l .. '\31' .. c .. '\31' .. nm('', #ls)
  if #ls == 1 then
    p = p .. eventLine(ls[1], stock and stock[1])
  elseif #ls > 1 then
    local parts = {p}
    for k, ln in ipairs(ls) do parts[k+1] = eventLine(ln, stock and stock[k]) end
    p = table.concat(parts)
  end
  redis.call('XADD', ek, '*', 'p', p)
end

-- record reads a reservation record: state, attempt, exp, created, lines,
-- hs, the state of the hold it keeps itself (see hold), the buyer y (''
-- for none), partial p, and hc, the counted flags of its lines (see
-- event; nil when none counts). The first line comes with the rest, in
-- one call.
local function record(rk)
  local a = redis.call('HGETALL', rk)
  local h = {}
  for k = 1, #a, 2 do h[a[k]] = a[k+1] end
  if not h.st then return nil end
  local r = {st = tonumber(h.st), at = tonumber(h.at), as = h.at, exp = h.exp, cr = h.cr, ls = {}, vs = h.vs, cx = h.cx, hs = h.hs,
    y = h.y or '', p = h.p == '1', hc = h.hc}
  for k = 1, tonumber(h.n) do
    local q = h[nm('q', k)]
    r.ls[k] = {h[nm('s', k)], tonumber(q), q}
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

-- reply is a record reply: kind, state, attempt, exp, created, n, the
-- lines, then the buyer ('' for none) and partial ('1' or '').
local function reply(kind, r)
  local out = {kind, r.st, r.at, r.exp, r.cr, #r.ls}
  for _, l in ipairs(r.ls) do out[#out+1] = l[1]; out[#out+1] = l[2] end
  out[#out+1] = r.y or ''
  if r.p then out[#out+1] = '1' else out[#out+1] = '' end
  return out
end

-- the record's extra event fields (see event).
local function extra(r) return {y = r.y, p = r.p, c = r.hc} end

-- old is the record rk held before (nil for none): its fields go first.
local function write(rk, r, old)
  if old then redis.call('DEL', rk) end
  local as = r.as
  if not as then as = fmt(r.at) end
  local args = {'HSET', rk, 'st', nm('', r.st), 'at', as, 'exp', r.exp, 'cr', r.cr, 'n', nm('', #r.ls)}
  if r.hs then args[#args+1] = 'hs'; args[#args+1] = r.hs end
  if r.y and r.y ~= '' then args[#args+1] = 'y'; args[#args+1] = r.y end
  if r.p then args[#args+1] = 'p'; args[#args+1] = '1' end
  if r.hc then args[#args+1] = 'hc'; args[#args+1] = r.hc end
  for k, l in ipairs(r.ls) do
    args[#args+1] = nm('s', k); args[#args+1] = l[1]
    args[#args+1] = nm('q', k); args[#args+1] = qs(l)
  end
  redis.call(unpack(args))
end

-- nextAttempt returns the attempt number of a new attempt of an ID whose
-- record is r (nil for none) at now (microseconds, the caller's clock):
-- past r's, and never below now. A record that expired (see Retention
-- above) takes its attempt numbers with it; an ID taken anew then numbers
-- its attempts past every one it had before (they came earlier), which is
-- how the ledger's redisstock_hold rows tell the takes of the new
-- reservation from those of the old.
-- The second result is the attempt's digits (now itself when it is now).
local function nextAttempt(r, now)
  local at = tonumber(now)
  if r and r.at >= at then return r.at + 1, fmt(r.at + 1) end
  return at, now
end

-- begin looks for the reservation id of buyer y, partial p: 'done' for
-- one held or settled (the caller compares it with its request), 'pending'
-- for one whose lines are being taken under the same request, 'conflict'
-- for one being taken under another, 'new' (with the attempt to use) when
-- the id is free; now is the caller's clock (see nextAttempt).
local function begin(rk, dk, id, ls, y, p, now)
  local r = record(rk)
  if r and ((r.st == 3 and #r.ls == 0) or (r.st == 9 and r.cx)) then return 'cancelled', r end
  if r and r.st ~= 9 then
    if r.st ~= 0 then return 'done', r end
    if not same(r.ls, ls) or r.y ~= y or r.p ~= p then return 'conflict', r end
    return 'pending', r
  end
  -- An aborted attempt whose holds are not all undone yet: the caller
  -- undoes them first.
  if r and redis.call('ZSCORE', dk, id) then return 'busy', r end
  local at, as = nextAttempt(r, now)
  return 'new', {at = at, as = as}, r
end

-- The stock of the SKUs a script call touches (a hash per SKU: a
-- available, v version) is read once and written back once, at the end
-- (flush), as the sequence is: the requests of a batch on one SKU read and
-- change it in Lua instead of asking Redis every time. stockOf returns the
-- SKU's entry, or false for a SKU without stock.
local stocks = {}
local function stockOf(sk)
  local s = stocks[sk]
  if s == nil then
    local h = redis.call('HMGET', sk, 'a', 'v', 'b', 'r', 'o', 'l')
    s = false
    if h[1] then
      s = {a = tonumber(h[1]), v = tonumber(h[2] or '0'), b = tonumber(h[3] or '0'), r = tonumber(h[4] or ''), o = tonumber(h[5] or '0'),
        l = tonumber(h[6] or '0')}
    end
    stocks[sk] = s
  end
  return s
end

-- setStock sets the available units of sk and moves its version on,
-- creating the entry of a SKU without one (as HINCRBY would).
local function setStock(sk, a)
  local s = stockOf(sk)
  if not s then
    s = {a = 0, v = 0, b = 0, o = 0, l = 0}
    stocks[sk] = s
  end
  s.a, s.v, s.dirty = a, s.v + 1, true
  return s
end

-- ask reads what a request asks beyond its lines, from A[i] on: the
-- buyer ('' for none), partial ('1'), and with partial the n lines' Min.
local function ask(i, n)
  local q = {y = A[i] or '', p = A[i + 1] == '1'}
  if q.p then
    q.mn = {}
    for k = 1, n do q.mn[k] = tonumber(A[i + 1 + k]) end
  end
  return q
end

-- decide decides every line of ls for the request q (see ask), their stock
-- keys from K[first] on and, when q names a buyer, their usage keys (a
-- hash per SKU: buyer -> units held and committed) from K[ufirst] on. A
-- line of a SKU with a limit (l) needs a buyer, and holds at most what is
-- left of the limit; with partial a line holds as much as it can, down to
-- its Min (at least 1), without all of it or nothing. It returns the
-- refusal of the first line that cannot be held ({'unknown', k},
-- {'short', k, available}, {'limit', k, limit, usage}), or nil, the units
-- each line holds, and the counted flags (see event).
local function decide(first, ufirst, ls, q)
  local held, cnt = {}, {}
  for k, l in ipairs(ls) do
    local s = stockOf(K[first + k - 1])
    if not s then return {'unknown', fmt(k)} end
    local want, lo = l[2], l[2]
    if q.p then lo = math.max(q.mn[k] or 0, 1) end
    cnt[k] = '0'
    if s.l > 0 then
      if q.y == '' or not K[ufirst + k - 1] then return {'limit', fmt(k), fmt(s.l), '0'} end
      local had = tonumber(redis.call('HGET', K[ufirst + k - 1], q.y) or '0')
      if had + lo > s.l then return {'limit', fmt(k), fmt(s.l), fmt(had)} end
      want = math.min(want, s.l - had)
      cnt[k] = '1'
    end
    if q.p then want = math.min(want, s.a) end
    if want < lo or s.a < want then return {'short', fmt(k), fmt(s.a)} end
    held[k] = want
  end
  return nil, held, table.concat(cnt)
end

-- counts reports whether the counted flags c count any line (c may be
-- nil, or false as HMGET gives a missing field to Lua).
local function counts(c) return type(c) == 'string' and string.find(c, '1', 1, true) ~= nil end

-- heldLines returns the lines of ls holding held[k] units each: ls itself
-- when each holds what it asked for.
local function heldLines(ls, held)
  for k, l in ipairs(ls) do
    if held[k] ~= nil and held[k] ~= l[2] then
      local out = {}
      for j, m in ipairs(ls) do
        if held[j] == nil or held[j] == m[2] then out[j] = m else out[j] = {m[1], held[j]} end
      end
      return out
    end
  end
  return ls
end

-- use adds sign*qty of each counted line of ls (flags c) to the usage of
-- buyer y, the usage keys from K[ufirst] on; a usage that reaches 0 goes.
local function use(ufirst, ls, c, y, sign)
  if not counts(c) or not y or y == '' then return end
  for k, l in ipairs(ls) do
    local uk = K[ufirst + k - 1]
    if uk and string.sub(c, k, k) == '1' then
      local n = redis.call('HINCRBY', uk, y, sign * l[2])
      if n <= 0 then redis.call('HDEL', uk, y) end
    end
  end
end

-- nums joins numbers with commas.
local function nums(t)
  local out = {}
  for k, v in ipairs(t) do out[k] = fmt(v) end
  return table.concat(out, ',')
end

-- split splits a comma list of numbers ('' for none).
local function split(s)
  local out = {}
  if not s or s == '' then return out end
  for v in string.gmatch(s, '[^,]+') do out[#out+1] = tonumber(v) end
  return out
end

-- move adds sign*qty to every line's stock and returns available and
-- version after, per line.
local function move(first, ls, sign)
  local out = {}
  for k, l in ipairs(ls) do
    local sk = K[first + k - 1]
    local s = stocks[sk] or stockOf(sk)
    s = setStock(sk, (s and s.a or 0) + sign * l[2])
    out[k] = {s.a, s.v}
  end
  return out
end

-- addUnits adds d units (d < 0 takes them) to the stock s at K[3], named
-- name, with its event: an AddStock, or one step of a move between stock
-- buckets. The caller checked that the stock keeps within its bounds.
local function addUnits(s, name, d)
  s.r, s.x = (s.r or s.a) + d, true
  local st = move(3, {{name, d}}, 1)
  event(K[2], 'st', nil, nil, nil, nil, nil, nil, s.b, {{name, 0}}, st, {l = s.l})
end

-- take holds the lines in this bucket under id and attempt for the
-- request q (see ask). K: mk, ek, hold, stock keys from 4, with a buyer
-- the usage keys after them. The hold keeps, beside its attempt and
-- state, the units each line holds (hq, with partial), the counted flags
-- (hc) and the buyer (y), so that an undo or a give returns exactly what
-- it took. The reply: 'ok', the stock versions, hq and hc.
local function take(id, at, ls, q)
  local h = redis.call('HMGET', K[3], 'at', 'st', 'vs', 'hq', 'hc')
  if h[1] then
    local hat = tonumber(h[1])
    if hat == at and h[2] == 'T' then return {'ok', h[3], h[4] or '', h[5] or ''} end
    if hat >= at or h[2] == 'T' then return {'stale'} end
  end
  local refused, held, cnt = decide(4, 4 + #ls, ls, q)
  if refused then return refused end
  local hl = heldLines(ls, held)
  local st = move(4, hl, -1)
  use(4 + #ls, hl, cnt, q.y, 1)
  local vs = {}
  for k, s in ipairs(st) do vs[k] = fmt(s[2]) end
  vs = table.concat(vs, ',')
  if h[1] then redis.call('DEL', K[3]) end
  local args = {'HSET', K[3], 'at', fmt(at), 'st', 'T', 'vs', vs}
  local hq = ''
  if q.p then hq = nums(held); args[#args+1] = 'hq'; args[#args+1] = hq end
  if counts(cnt) then args[#args+1] = 'hc'; args[#args+1] = cnt; args[#args+1] = 'y'; args[#args+1] = q.y end
  redis.call(unpack(args))
  event(K[2], 'tk', id, at, nil, nil, nil, nil, nil, hl, st)
  return {'ok', vs, hq, cnt}
end

-- keepMs is the retention of the operation at hand in milliseconds (nil:
-- none), set by dispatch (see Retention above).
local keepMs

-- retire makes key expire after the retention, once (NX).
local function retire(key)
  if keepMs and keepMs > 0 then redis.call('PEXPIRE', key, keepMs, 'NX') end
end

-- retireRecord retires the record rk when it is in a final state or
-- aborted: the callers have just taken it out of the due set.
local function retireRecord(rk)
  if not keepMs or keepMs <= 0 or not rk then return end
  local st = redis.call('HGET', rk, 'st')
  if st == '2' or st == '3' or st == '4' or st == '9' then redis.call('PEXPIRE', rk, keepMs, 'NX') end
end

-- A record state that settle decided for settle1 and has not written yet
-- (pendSt, of the record pendKey): the hold the record keeps is written
-- with it, in one HSET (setHold), or it goes alone (flushState), before
-- settle1 ends; flush writes it too, should an operation fail part way.
local pendSt, pendKey

-- setState writes the state st of the record rk, or with defer leaves it
-- pending (see pendSt).
local function setState(rk, st, defer)
  if defer then
    pendSt, pendKey = st, rk
  else
    redis.call('HSET', rk, 'st', st)
  end
end

-- flushState writes the pending record state, if any.
local function flushState()
  if pendSt then
    redis.call('HSET', pendKey, 'st', pendSt)
    pendSt = nil
  end
end

-- setHold sets field f of the hold key to v, with the pending state of
-- the record when key is that record.
local function setHold(key, f, v)
  if pendSt and key == pendKey then
    redis.call('HSET', key, f, v, 'st', pendSt)
    pendSt = nil
  else
    redis.call('HSET', key, f, v)
  end
end

-- hold finds the hold of a reservation on this bucket's lines. A
-- reservation reserved in one call on an ID new to the bucket keeps its
-- hold in its record (field hs, under the record's attempt); any other
-- keeps it in its hold key hk (fields at, st), as do the holds Load
-- writes. rk is the record's key where the record may hold it (nil: the
-- hold key alone), r the record when already read. It returns the key
-- and field of the hold's state, its attempt, its state (nil for no
-- hold), and what it took: q the units of each line (nil: the lines'
-- own), c the counted flags, y the buyer.
local function hold(hk, rk, r)
  if rk and r == nil then
    local h = redis.call('HMGET', rk, 'hs', 'at', 'hc', 'y')
    if h[1] then return rk, 'hs', tonumber(h[2]), h[1], {c = h[3], y = h[4]} end
  elseif r and r.hs then
    return rk, 'hs', r.at, r.hs, {c = r.hc, y = r.y}
  end
  local h = redis.call('HMGET', hk, 'at', 'st', 'hc', 'y', 'hq')
  local q
  if h[5] and h[5] ~= '' then q = split(h[5]) end
  return hk, 'st', tonumber(h[1]), h[2], {c = h[3], y = h[4], q = q}
end

-- back returns the units of the hold hk of id and attempt (to 'U' undone
-- or 'G' given), the lines' stock keys from K[first] on and their usage
-- keys, when passed, from K[ufirst] on; rk and r as for hold. The units
-- are those the hold took, and its counted ones leave the buyer's usage
-- in the same step. An undo with no hold leaves a tombstone, so that a
-- late take of the same attempt (a duplicate submission) cannot take
-- afterwards.
local function back(id, at, to, hk, first, ufirst, ls, rk, r)
  local key, f, hat, hst, took = hold(hk, rk, r)
  if hat == at and hst == 'T' then
    if took.q then ls = heldLines(ls, took.q) end
    local st = move(first, ls, 1)
    use(ufirst, ls, took.c, took.y, -1)
    setHold(key, f, to)
    if key ~= rk then retire(key) end
    local t = 'gv'
    if to == 'U' then t = 'ud' end
    event(K[2], t, id, at, nil, nil, nil, nil, nil, ls, st)
    return {'ok'}
  end
  if to == 'U' and (not hat or hat < at) then
    redis.call('HSET', hk, 'at', fmt(at), 'st', 'U')
    retire(hk)
  end
  return {'ok'}
end

-- final appends the event of a reservation's move to a state; versions
-- (the stock versions its takes left) ride along so the writer can wait
-- for them.
local function final(ek, id, r)
  event(ek, 'rs', id, nil, r.st, r.exp, r.cr, r.vs, nil, r.ls, nil, extra(r))
end

-- trim deletes the applied entries of stream ek.
local function trim(ek, group)
  -- Entries are delivered in stream order, so every entry below the
  -- oldest one still pending, or with none pending every entry up to
  -- the last one delivered, has been applied: trim them at once, far
  -- cheaper than deleting them one by one.
  local p = redis.call('XPENDING', ek, group)
  local keep = p[2]
  if not keep or tonumber(p[1]) == 0 then
    keep = nil
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', ek)) do
      local f = {}
      for k = 1, #g, 2 do f[g[k]] = g[k+1] end
      if f['name'] == group then keep = f['last-delivered-id'] end
    end
    if keep then
      local ms, seq = string.match(keep, '^(%d+)-(%d+)$')
      keep = ms .. '-' .. fmt(tonumber(seq) + 1)
    end
  end
  if keep then redis.call('XTRIM', ek, 'MINID', keep) end
end

-- loaded reports whether the marker mk is there, asking Redis once per
-- script call: the requests of a batch share their bucket's marker, and no
-- operation deletes one.
local markers = {}
local function loaded(mk)
  local v = markers[mk]
  if v == nil then
    v = redis.call('EXISTS', mk) == 1
    markers[mk] = v
  end
  return v
end

-- setOnHand sets the units on hand of a SKU to onhand, its backorder to
-- bo and its limit per buyer to lim (nil: it keeps its own). K: mk, ek,
-- stock. The stock hash's fields: a available (on hand plus the unused
-- backorder), v version, b backorder, l limit per buyer (0: none), r
-- received (what setting and adding stock changed a by, summed, b
-- included), o sold; held is r - a - o. The event carries the backorder
-- (b) and the limit (l), which the writer keeps in PostgreSQL by the
-- version.
local function setOnHand(sku, onhand, bo, lim)
  local old = stockOf(K[3])
  local was = old and old.a or 0
  local r = old and old.r or was
  if not bo then bo = old and old.b or 0 end
  if not lim then lim = old and old.l or 0 end
  local s = setStock(K[3], onhand + bo)
  s.b, s.l, s.r, s.x = bo, lim, r + s.a - was, true
  event(K[2], 'st', nil, nil, nil, nil, nil, nil, bo, {{sku, 0}}, {{s.a, s.v}}, {l = lim})
  return {'ok'}
end

-- sell moves the units of the hold hk of attempt at from held to sold in
-- this bucket (the lines' stock keys from K[first] on; rk and r as for
-- hold), once: the hold goes from T to S, and each line's units
-- are added to its SKU's sold count. It writes no event: PostgreSQL counts
-- what is sold from the committed reservations.
local function sell(at, hk, first, ls, rk, r)
  local key, f, hat, hst = hold(hk, rk, r)
  if hat == at and hst == 'T' then
    setHold(key, f, 'S')
    if key ~= rk then retire(key) end
    for k, l in ipairs(ls) do
      local s = stockOf(K[first + k - 1])
      if s then s.o, s.x = s.o + l[2], true end
    end
  end
  return {'ok'}
end

-- Stock buckets (inventory.StockOptions.Buckets). A SKU split into k
-- buckets keeps bucket 0 in its own stock hash, which also holds k (field
-- k), and bucket j > 0 in the stock hash of the name sku..'\30'..j, in a
-- bucket of its own (see keys.go): each is a stock of its own to every
-- operation, so a take, a give, an undo and a sale of a line act on the
-- bucket the line names, and the caller picks it. splitOf returns a SKU's
-- k, nil for a SKU kept whole.
local function splitOf(sk)
  local k = redis.call('HGET', sk, 'k')
  if k and tonumber(k) > 1 then return k end
  return nil
end

-- features runs the operations of the features beside the contract: stock
-- with settings, stock levels, longer holds and the sale of committed
-- units. nil for any other operation.
local function features(op)
  if op == 'stockwith' then
    -- K: mk, ek, stock. A: op, sku, units on hand, backorder, limit. A
    -- SKU split into stock buckets is refused with {'split', k}: its
    -- buckets are set one by one (see splitOf).
    local k = splitOf(K[3])
    if k then return {'split', k} end
    return setOnHand(A[2], tonumber(A[3]), tonumber(A[4]), tonumber(A[5] or '0'))

  elseif op == 'split' then
    -- Bucket 0 of a SKU split into k stock buckets, set last, after the
    -- other buckets (see splitOf). K: mk, ek, stock. A: op, sku, units on
    -- hand, k.
    local rep = setOnHand(A[2], tonumber(A[3]), 0, 0)
    redis.call('HSET', K[3], 'k', A[4])
    return rep

  elseif op == 'availn' then
    -- The available units of several stock buckets of one SKU in this
    -- bucket, in one snapshot (0 for one not there). K: mk, stock keys.
    local out = {'ok'}
    for k = 2, #K do
      local s = stockOf(K[k])
      if s then out[k] = fmt(s.a) else out[k] = '0' end
    end
    return out

  elseif op == 'levels' then
    -- K: mk, stock.
    local s = stockOf(K[2])
    if not s then return {'unknown'} end
    return {'ok', fmt(s.a), fmt(s.r or s.a), fmt(s.o), fmt(s.b), splitOf(K[2])}

  elseif op == 'sell' then
    -- K: mk, ek, hold, stock keys from 4. A: op, id, attempt, n, lines.
    return sell(tonumber(A[3]), K[3], 4, lines(5, tonumber(A[4])))

  elseif op == 'sell+done' then
    -- sell, then done, for a reservation whose record and lines share this
    -- bucket. K: mk, ek, hold, due, stock keys from 5, record. A: op, id,
    -- attempt, n, lines.
    local n = tonumber(A[4])
    sell(tonumber(A[3]), K[3], 5, lines(5, n), K[5 + n])
    redis.call('ZREM', K[4], A[2])
    retireRecord(K[5 + n])
    return {'ok'}

  elseif op == 'extend' then
    -- K: mk, ek, record, due. A: op, id, until, now, longest hold (all
    -- in microseconds). A held, active reservation's expiry moves to
    -- max(exp, min(until, created + longest)), streamed as its record; a
    -- due one is reported 'due' for the caller to expire.
    local id, now = A[2], tonumber(A[4])
    local r = record(K[3])
    if not r or r.st == 0 or r.st == 9 then return {'nf'} end
    if r.st ~= 1 then return reply('ok', r) end
    local exp = tonumber(r.exp)
    if exp <= now then return reply('due', r) end
    local ne = math.max(exp, math.min(tonumber(A[3]), tonumber(r.cr) + tonumber(A[5])))
    if ne ~= exp then
      r.exp = fmt(ne)
      redis.call('HSET', K[3], 'exp', r.exp)
      redis.call('ZADD', K[4], r.exp, id)
      final(K[2], id, r)
    end
    return reply('ok', r)
  end
  return nil
end

-- settle runs settle or sweep (op) on the record K[3] and due set K[4]:
-- A: op, id, to, now. It returns the reply, and the record (nil for
-- none). ls, when given, are the lines the caller finishes with in the
-- same call if they are the record's: the record does not go back into
-- the due set to wait for that, and the record's new state is left
-- pending (see pendSt) for settle1 to write with the hold's.
local function settle(op, ls)
  -- settle: Commit (A[3] = 2) or Release (3). sweep: whatever is due
  -- (A[3] = 0). K: mk, ek, record, due. A: op, id, to, now.
  -- The reply's kind says what the caller still has to do: 'give' the
  -- units back (a release or an expiry not yet propagated), 'undo' the
  -- holds of an abandoned attempt, or nothing ('ok'). Its state is the
  -- reservation's; 'expired' means this call expired it.
  local id, to, now = A[2], tonumber(A[3]), tonumber(A[4])
  local r = record(K[3])
  -- The due set's score of id, read only where it matters.
  local score
  local function due()
    if score == nil then score = redis.call('ZSCORE', K[4], id) end
    return score
  end
  if not r or (op == 'settle' and (r.st == 0 or r.st == 9)) then
    if op == 'sweep' then redis.call('ZREM', K[4], id) end
    return {'nf'}
  end
  if op == 'sweep' and (not due() or tonumber(due()) > now) then return {'nf'} end
  local kind = 'ok'
  local fin = ls and same(r.ls, ls)
  if r.st == 0 then
    -- an attempt abandoned past its deadline: abort it; its holds must be
    -- undone before the entry leaves the due set.
    r.st = 9
    redis.call('HSET', K[3], 'st', '9')
    return reply('undo', r), r
  elseif r.st == 9 then
    return reply('undo', r), r
  elseif r.st == 1 and tonumber(r.exp) <= now then
    r.st = 4
    setState(K[3], '4', ls ~= nil)
    if not fin then redis.call('ZADD', K[4], fmt(now), id) end
    final(K[2], id, r)
    return reply('expired', r), r
  elseif r.st == 1 and to ~= 0 then
    r.st = to
    setState(K[3], nm('', to), ls ~= nil)
    if to == 2 and #r.ls == 0 then
      redis.call('ZREM', K[4], id)
      retire(K[3])
    elseif to == 2 then
      -- The lines' units move from held to sold in their buckets
      -- ('sell'); the record stays in the due set until they have.
      if not fin then redis.call('ZADD', K[4], fmt(now), id) end
      kind = 'sell'
    else
      if not fin then redis.call('ZADD', K[4], fmt(now), id) end
      kind = 'give'
    end
    final(K[2], id, r)
    return reply(kind, r), r
  elseif (r.st == 3 or r.st == 4) and due() then
    return reply('give', r), r
  elseif r.st == 2 and score then
    return reply('sell', r), r
  elseif op == 'sweep' and r.st ~= 1 then
    redis.call('ZREM', K[4], id)
    retire(K[3])
  end
  return reply(kind, r), r
end

-- keepAt is where the retention comes in the arguments of each operation
-- that may carry it: after the lines ('lines': A[5 + 2n], 'lines1': A[6 +
-- 2n]) or at a fixed place.
local keepAt = {settle = 5, sweep = 5, cancel = 5, done = 3, settle1 = 'lines1', give = 'lines', undo = 'lines', sell = 'lines',
  ['give+done'] = 'lines', ['undo+done'] = 'lines', ['sell+done'] = 'lines'}

-- dispatch runs the operation A[1] on K and A.
local function dispatch()
  local op = A[1]
  local mk = K[1]
  keepMs = nil
  local kp = keepAt[op]
  if kp == 'lines' then
    kp = 5 + 2 * tonumber(A[4])
  elseif kp == 'lines1' then
    kp = 6 + 2 * tonumber(A[5])
  end
  if kp then keepMs = tonumber(A[kp]) end

  if op == 'ack' or op == 'dead' then
    -- The writer's bookkeeping. K: mk, ek, dead-letter stream. A: op,
    -- group, then entry ids ('ack'), or one id and its fields ('dead').
    -- Either deletes the applied entries from the stream.
    if op == 'ack' then
      local ids = {}
      for k = 3, #A do ids[#ids+1] = A[k] end
      redis.call('XACK', K[2], A[2], unpack(ids))
    else
      local args = {'XADD', K[3], '*', 'from', A[3]}
      for k = 4, #A do args[#args+1] = A[k] end
      redis.call(unpack(args))
      redis.call('XACK', K[2], A[2], A[3])
      redis.call('XDEL', K[2], A[3])
    end
    trim(K[2], A[2])
    return {'ok'}
  end

  if op == 'unload' then
    -- The writer found the bucket behind PostgreSQL, or following another
    -- Load's history. K: mk. A: op, the epoch its batch was read under.
    -- The marker goes only if it still carries that epoch: a Load since
    -- then is kept.
    if redis.call('HGET', mk, 'e') == A[2] then
      redis.call('DEL', mk)
      return {'ok'}
    end
    return {'gone'}
  end

  if not loaded(mk) then
    return {'nl'}
  end

  if op == 'seq' then
    -- The writer's view of the bucket before it applies what it read. K:
    -- mk, ek. The sequence, the stream's last entry ID and the epoch of the
    -- Load that wrote the marker, read together:
    -- within one history the pair grows as any event's does. The write to
    -- the marker gives a WAIT after it something to wait for: every event
    -- the writer read came before it.
    redis.call('HINCRBY', mk, 'w', 1)
    local last = '0-0'
    if redis.call('EXISTS', K[2]) == 1 then
      local info = redis.call('XINFO', 'STREAM', K[2])
      for k = 1, #info, 2 do
        if info[k] == 'last-generated-id' then last = info[k+1] end
      end
    end
    local h = redis.call('HMGET', mk, 'q', 'e')
    return {'ok', h[1] or '0', last, h[2] or ''}

  elseif op == 'stock' then
    -- K: mk, ek, stock. A: op, sku, units on hand, and 'b' from a caller
    -- that sets one stock bucket. The SKU keeps its backorder (see
    -- setOnHand). A SKU split into stock buckets (field k) is refused with
    -- {'split', k} unless the caller sets a bucket (see splitOf).
    if A[4] ~= 'b' then
      local k = splitOf(K[3])
      if k then return {'split', k} end
    end
    return setOnHand(A[2], tonumber(A[3]), nil, nil)

  elseif op == 'add' then
    -- K: mk, ek, stock, op token key. A: op, sku, delta, max, and 'b'
    -- from a caller that adds to one stock bucket (see 'stock').
    local done = redis.call('GET', K[4])
    if done then return {'ok', done} end
    local s = stockOf(K[3])
    if not s then return {'unknown'} end
    if A[5] ~= 'b' then
      local k = splitOf(K[3])
      if k then return {'split', k} end
    end
    local a = fmt(s.a)
    local na = s.a + tonumber(A[3])
    if na < 0 then return {'short', a} end
    if na > tonumber(A[4]) + s.b then return {'over', a} end
    addUnits(s, A[2], tonumber(A[3]))
    redis.call('SET', K[4], fmt(na), 'EX', 3600)
    return {'ok', fmt(na)}

  -- A move of units between two stock buckets of one SKU (Rebalance), in
  -- four steps on two buckets, each once whatever is run again: 'mvarm'
  -- arms the move's token in the bucket the units go to; 'mvout' takes
  -- them from the bucket they leave and records the move there (to, q, t),
  -- due for a sweeper to finish; 'mvin' adds them to the other bucket
  -- while its token is armed, and disarms it; 'mvend' deletes the record,
  -- and 'mvdrop' the token. A move cut off after 'mvout' is finished by
  -- ExpireDue from its due time on ('mvread' reads its record): 'mvin'
  -- adds its units once, since the token it disarms is there until the
  -- record is gone.
  elseif op == 'mvarm' then
    -- K: mk, token.
    redis.call('SET', K[2], 'armed', 'NX')
    return {'ok'}

  elseif op == 'mvout' then
    -- K: mk, ek, stock, move record, due. A: op, bucket name, units, the
    -- name of the bucket they go to, token key, due time, due member. It
    -- takes what the bucket has, up to the units, and answers how many.
    local q = redis.call('HGET', K[4], 'q')
    if q then return {'ok', q} end
    local s = stockOf(K[3])
    if not s then return {'unknown'} end
    local n = math.min(s.a, tonumber(A[3]))
    if n <= 0 then return {'short', fmt(s.a)} end
    addUnits(s, A[2], -n)
    redis.call('HSET', K[4], 'to', A[4], 'q', fmt(n), 't', A[5])
    redis.call('ZADD', K[5], A[6], A[7])
    return {'ok', fmt(n)}

  elseif op == 'mvread' then
    -- K: mk, move record.
    local h = redis.call('HMGET', K[2], 'to', 'q', 't')
    if not h[1] then return {'nf'} end
    return {'ok', h[1], h[2], h[3]}

  elseif op == 'mvin' then
    -- K: mk, ek, stock, token. A: op, bucket name, units.
    if redis.call('GET', K[4]) ~= 'armed' then return {'done'} end
    local s = stockOf(K[3])
    if not s then return {'unknown'} end
    addUnits(s, A[2], tonumber(A[3]))
    redis.call('SET', K[4], 'in')
    return {'ok'}

  elseif op == 'mvend' then
    -- K: mk, move record, due. A: op, due member.
    redis.call('DEL', K[2])
    redis.call('ZREM', K[3], A[2])
    return {'ok'}

  elseif op == 'mvdrop' then
    -- K: mk, token.
    redis.call('DEL', K[2])
    return {'ok'}

  elseif op == 'avail' then
    -- K: mk, stock. The reply carries the SKU's stock buckets when it is
    -- split (see splitOf).
    local s = stockOf(K[2])
    if not s then return {'unknown'} end
    return {'ok', fmt(s.a), splitOf(K[2])}

  elseif op == 'lookup' then
    -- K: mk, record.
    local r = record(K[2])
    if not r or r.st == 0 or r.st == 9 then return {'nf'} end
    return reply('ok', r)

  elseif op == 'reserve' then
    -- The whole cart in one bucket. K: mk, ek, record, due, hold, stock
    -- keys from 6, with a buyer their usage keys after them. A: op, id,
    -- now, exp, n, lines, then what the request asks beyond its lines (see
    -- ask; nothing for a request without a buyer or partial).
    local id, now, exp, n = A[2], A[3], A[4], tonumber(A[5])
    local ls = lines(6, n)
    local q = ask(6 + 2*n, n)
    local kind, r, old = begin(K[3], K[4], id, ls, q.y, q.p, now)
    if kind ~= 'new' then return reply(kind, r) end
    -- An ID new to the bucket keeps its hold in its record: no attempt
    -- before it can have left a hold here that is still taken (every hold
    -- key of an ID comes after its record, and a record expires only once
    -- its holds are given back, undone or sold; such a hold key, of an
    -- attempt below this one, expires on its own). One with an earlier
    -- attempt keeps it in the hold key, which may hold that attempt's.
    local h
    if old then
      h = redis.call('HMGET', K[5], 'at', 'st')
      if h[1] and (tonumber(h[1]) >= r.at or h[2] == 'T') then return {'stale'} end
    end
    local refused, held, cnt = decide(6, 6 + n, ls, q)
    if refused then return refused end
    local hl = heldLines(ls, held)
    local st = move(6, hl, -1)
    use(6 + n, hl, cnt, q.y, 1)
    if not counts(cnt) then cnt = nil end
    local hs
    if old then
      if h[1] then redis.call('DEL', K[5]) end
      local args = {'HSET', K[5], 'at', r.as, 'st', 'T'}
      if cnt then args[#args+1] = 'hc'; args[#args+1] = cnt; args[#args+1] = 'y'; args[#args+1] = q.y end
      redis.call(unpack(args))
    else
      hs = 'T'
    end
    r = {st = 1, at = r.at, as = r.as, exp = exp, cr = now, ls = hl, hs = hs, y = q.y, p = q.p, hc = cnt}
    write(K[3], r, old)
    redis.call('ZADD', K[4], exp, id)
    -- One event carries the take and the reservation.
    event(K[2], 'rv', id, r.as, '1', exp, now, nil, nil, hl, st, extra(r))
    -- The caller knows the reservation it asked for; with partial, the
    -- units each line holds.
    if q.p then
      local out = {'new'}
      for k = 1, n do out[k+1] = held[k] end
      return out
    end
    return {'new'}

  elseif op == 'begin' then
    -- K: mk, record, due. A: op, id, now, exp, deadline, n, lines, then
    -- the buyer and partial (see ask).
    local id, now, exp, n = A[2], A[3], A[4], tonumber(A[6])
    local ls = lines(7, n)
    local q = ask(7 + 2*n, 0)
    local kind, r, old = begin(K[2], K[3], id, ls, q.y, q.p, now)
    if kind ~= 'new' then return reply(kind, r) end
    r = {st = 0, at = r.at, as = r.as, exp = exp, cr = now, ls = ls, y = q.y, p = q.p}
    write(K[2], r, old)
    redis.call('ZADD', K[3], A[5], id)
    return reply('new', r)

  elseif op == 'take' then
    -- K: mk, ek, hold, stock keys from 4, with a buyer the usage keys
    -- after them. A: op, id, attempt, n, lines, then what the request asks
    -- beyond its lines (see ask).
    local n = tonumber(A[4])
    return take(A[2], tonumber(A[3]), lines(5, n), ask(5 + 2*n, n))

  elseif op == 'undo' or op == 'give' then
    -- K: mk, ek, hold, stock keys from 4, then the usage keys of a
    -- reservation with a buyer. A: op, id, attempt, n, lines.
    local to = 'G'
    if op == 'undo' then to = 'U' end
    local n = tonumber(A[4])
    return back(A[2], tonumber(A[3]), to, K[3], 4, 4 + n, lines(5, n))

  elseif op == 'undo+done' or op == 'give+done' then
    -- undo or give, then done, for a reservation whose record and lines
    -- share this bucket. K: mk, ek, hold, due, stock keys from 5, record,
    -- then the usage keys of a reservation with a buyer. A: op, id,
    -- attempt, n, lines.
    local to = 'G'
    if op == 'undo+done' then to = 'U' end
    local n = tonumber(A[4])
    back(A[2], tonumber(A[3]), to, K[3], 5, 6 + n, lines(5, n), K[5 + n])
    redis.call('ZREM', K[4], A[2])
    retireRecord(K[5 + n])
    return {'ok'}

  elseif op == 'grant' then
    -- K: mk, ek, record, due. A: op, id, attempt, versions, the units each
    -- line holds ('' when all it asked for), the counted flags of the
    -- lines ('' when none counts).
    local id, at = A[2], tonumber(A[3])
    local r = record(K[3])
    if not r or r.at ~= at or r.st == 9 then return {'gone'} end
    if r.st ~= 0 then return reply('ok', r) end
    r.st = 1
    r.vs = A[4]
    local args = {'HSET', K[3], 'st', '1', 'vs', r.vs}
    for k, q in ipairs(split(A[5])) do
      r.ls[k] = {r.ls[k][1], q}
      args[#args+1] = nm('q', k); args[#args+1] = q
    end
    if counts(A[6]) then
      r.hc = A[6]
      args[#args+1] = 'hc'; args[#args+1] = r.hc
    end
    redis.call(unpack(args))
    redis.call('ZADD', K[4], r.exp, id)
    final(K[2], id, r)
    return reply('ok', r)

  elseif op == 'abort' then
    -- K: mk, record, due. A: op, id, attempt, now.
    -- The record stays in the due set until its holds are undone ('done').
    -- The reply is the record as it is now: granted by a duplicate
    -- submission, the caller must not undo anything.
    local r = record(K[2])
    if not r then return {'nf'} end
    if r.st == 0 and r.at == tonumber(A[3]) then
      r.st = 9
      redis.call('HSET', K[2], 'st', '9')
      redis.call('ZADD', K[3], A[4], A[2])
    end
    return reply('ok', r)

  elseif op == 'settle' or op == 'sweep' then
    return (settle(op))

  elseif op == 'settle1' then
    -- settle, then what its reply asks (sell, give or undo the holds, and
    -- leave the due set), for a reservation whose record and lines share
    -- this bucket, in one call. K: mk, ek, record, due, hold, stock keys
    -- from 6. A: op, id, to, now, n, lines: the lines the caller expects,
    -- which name the stock keys. When the record's lines are others, the
    -- reply is settle's, and the caller finishes as after a settle. A
    -- kind followed by '+' says that nothing is left to do. The usage
    -- keys of the lines follow their stock keys for a reservation with a
    -- buyer.
    local ls = lines(6, tonumber(A[5]))
    local out, r = settle('settle', ls)
    local kind = out[1]
    -- A record that counts lines against its buyer finishes here only
    -- with their usage keys.
    local usable = r and (not counts(r.hc) or K[6 + #ls])
    if usable and (kind == 'give' or kind == 'expired' or kind == 'sell' or kind == 'undo') and same(r.ls, ls) then
      if kind == 'sell' then
        sell(r.at, K[5], 6, ls, K[3], r)
      elseif kind == 'undo' then
        back(A[2], r.at, 'U', K[5], 6, 6 + #ls, ls, K[3], r)
      else
        back(A[2], r.at, 'G', K[5], 6, 6 + #ls, ls, K[3], r)
      end
      flushState()
      redis.call('ZREM', K[4], A[2])
      retire(K[3])
      out[1] = kind .. '+'
    end
    flushState()
    return out

  elseif op == 'cancel' then
    -- K: mk, ek, record, due. A: op, id, to (unused), now.
    -- Like settle to 3, except that an ID without a reservation gets a
    -- tombstone, and an attempt still being taken is aborted for good: the
    -- reply 'undo' asks the caller to undo its holds and call again, which
    -- then writes the tombstone.
    local id, now = A[2], A[4]
    local r = record(K[3])
    local score = redis.call('ZSCORE', K[4], id)
    if r and (r.st == 0 or (r.st == 9 and score)) then
      if r.st == 0 or not r.cx then
        redis.call('HSET', K[3], 'st', '9', 'cx', '1')
        redis.call('ZADD', K[4], now, id)
      end
      r.st = 9
      return reply('undo', r)
    end
    if not r or r.st == 9 then
      -- A new attempt number, so that the grant of the aborted one finds
      -- its attempt gone.
      local t = {st = 3, at = nextAttempt(r, now), exp = now, cr = now, ls = {}}
      write(K[3], t, r)
      retire(K[3])
      final(K[2], id, t)
      return reply('ok', t)
    end
    if r.st == 1 and tonumber(r.exp) <= tonumber(now) then
      r.st = 4
      redis.call('HSET', K[3], 'st', '4')
      redis.call('ZADD', K[4], now, id)
      final(K[2], id, r)
      return reply('expired', r)
    elseif r.st == 1 then
      r.st = 3
      redis.call('HSET', K[3], 'st', '3')
      redis.call('ZADD', K[4], now, id)
      final(K[2], id, r)
      return reply('give', r)
    elseif (r.st == 3 or r.st == 4) and score then
      return reply('give', r)
    end
    return reply('ok', r)

  elseif op == 'done' then
    -- K: mk, due, and the record when the call carries the retention. A:
    -- op, id, the retention.
    redis.call('ZREM', K[2], A[2])
    retireRecord(K[3])
    return {'ok'}

  elseif op == 'due' then
    -- K: mk, due. A: op, now, limit.
    return redis.call('ZRANGEBYSCORE', K[2], '-inf', A[2], 'LIMIT', 0, A[3])

  end
  local out = features(op)
  if out then return out end
  return redis.error_reply('redisstock: unknown operation ' .. tostring(op))
end

-- multi runs several requests of one bucket, one after another.
local function multi()
  -- ARGV: 'multi', count, then per request: its number of keys, its
  -- number of arguments, its arguments. KEYS: every request's keys, in
  -- order. The reply holds each request's reply, in order.
  local out = {}
  local ki, ai = 0, 3
  for j = 1, tonumber(ARGV[2]) do
    local nk, na = tonumber(ARGV[ai]), tonumber(ARGV[ai + 1])
    K = {unpack(KEYS, ki + 1, ki + nk)}
    A = {unpack(ARGV, ai + 2, ai + 1 + na)}
    ki, ai = ki + nk, ai + 2 + na
    out[j] = dispatch()
  end
  return out
end

-- flush writes back what the call changed in Lua: the sequence numbers
-- and the stock. It runs even when an operation fails part way (the
-- error is raised again after it), so that Redis keeps every event's
-- change whatever came after it.
local function flush()
  flushState()
  for mk, q in pairs(seqs) do redis.call('HSET', mk, 'q', fmt(q)) end
  for sk, st in pairs(stocks) do
    if st and st.x then
      -- b, r and o changed too (x): stock set, added, or sold.
      local args = {'HSET', sk, 'a', fmt(st.a), 'v', fmt(st.v), 'b', fmt(st.b), 'o', fmt(st.o), 'l', fmt(st.l or 0)}
      if st.r then args[#args+1] = 'r'; args[#args+1] = fmt(st.r) end
      redis.call(unpack(args))
    elseif st and st.dirty then
      redis.call('HSET', sk, 'a', fmt(st.a), 'v', fmt(st.v))
    end
  end
end

local ok, out
if ARGV[1] == 'multi' then
  ok, out = pcall(multi)
else
  ok, out = pcall(dispatch)
end
flush()
if not ok then error(out) end
return out
