package redislock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/rediswait"
	"github.com/oversell/inventory/internal/unreach"
)

// acquireScript takes the locks of some SKUs, all or none, and returns a
// fence per SKU.
//
// KEYS: lock key and fence key of each SKU, in sorted SKU order.
// ARGV[1]: owner token; ARGV[2]: lock TTL in milliseconds.
// Returns {1, fence...} when every lock was taken, or {0, i} when the lock of
// the i-th SKU (1-based) is held by another owner; then nothing was written.
//
// A lock that already holds this owner counts as taken and keeps the fence it
// was taken with: it can only be there because this same call ran before and
// its reply was lost (the client retried it), so a retry neither blocks on
// itself nor draws new fences (nobody can have drawn one since: drawing
// takes the lock). Should the fence key be gone, a new fence is drawn. A lock taken afresh draws the next fence from
// the SKU's counter, floored at the server clock in microseconds, so fences
// keep growing even when Redis restarts empty or fails over to a replica
// that missed the last increments.
var acquireScript = redis.NewScript(`
local owner, ttl = ARGV[1], ARGV[2]
local n = #KEYS / 2
local held = {}
for i = 1, n do
  local cur = redis.call('GET', KEYS[2*i-1])
  if cur and cur ~= owner then
    return {0, i}
  end
  held[i] = cur == owner
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {1}
for i = 1, n do
  local lk, fk = KEYS[2*i-1], KEYS[2*i]
  local f = nil
  if held[i] then
    redis.call('PEXPIRE', lk, ttl)
    f = tonumber(redis.call('GET', fk))
  else
    redis.call('SET', lk, owner, 'PX', ttl)
  end
  if not f then
    f = redis.call('INCR', fk)
    if f < now then
      f = now
      redis.call('SET', fk, string.format('%.0f', f))
    end
  end
  out[i+1] = f
end
return out
`)

// releaseScript deletes each lock in KEYS that holds the owner ARGV[1]
// (compare-and-delete) and returns how many it deleted.
var releaseScript = redis.NewScript(`
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return n
`)

// extendScript resets to ARGV[2] milliseconds the TTL of each lock in KEYS
// that holds the owner ARGV[1] (compare-and-pexpire) and returns how many
// locks it extended.
var extendScript = redis.NewScript(`
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    n = n + 1
  end
end
return n
`)

// locker takes the locks of a request's SKUs in Redis.
type locker struct {
	client     redis.UniversalClient
	prefix     string
	ttl        time.Duration
	wait       time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	// bySlot splits a request's SKUs into one script call per cluster slot,
	// because Redis Cluster refuses a script whose keys span slots.
	bySlot bool
	// waitN, when positive, is the number of replicas that must confirm
	// a lease's locks, within waitFor, before it is used (Options.WaitReplicas).
	waitN   int
	waitFor time.Duration
	// noWatchdog leaves leases unextended (tests only: it simulates a holder
	// whose whole process stalls).
	noWatchdog bool
}

// lease is the locks of one request, taken by one owner.
type lease struct {
	lk     *locker
	owner  string
	skus   []string // sorted
	fences []int64  // fences[i] is the fence of skus[i]
	groups []lockGroup

	// released is set by releaseOnce. A lease is released by the
	// goroutine that took it.
	released bool

	stop     chan struct{}
	stopped  chan struct{}
	stopOnce sync.Once
	lost     atomic.Bool
}

// lockGroup is the SKUs of a lease whose keys share a slot: one script call.
type lockGroup struct {
	idx        []int    // indices into lease.skus, ascending
	lockKeys   []string // lock key per SKU
	scriptKeys []string // lock key, fence key per SKU
}

// newOwner returns 128 random bits, hex-encoded.
func newOwner() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("redislock: owner token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// newLease prepares the keys of skus, which must be sorted and distinct.
func (l *locker) newLease(skus []string) (*lease, error) {
	owner, err := newOwner()
	if err != nil {
		return nil, err
	}
	ls := &lease{lk: l, owner: owner, skus: skus, fences: make([]int64, len(skus))}
	slotGroup := map[int]int{}
	for i, sku := range skus {
		lockKey, fenceKey := skuKeys(l.prefix, sku)
		g := 0
		if l.bySlot {
			slot := keySlot(lockKey)
			var ok bool
			if g, ok = slotGroup[slot]; !ok {
				g = len(ls.groups)
				slotGroup[slot] = g
			}
		}
		if g == len(ls.groups) {
			ls.groups = append(ls.groups, lockGroup{})
		}
		grp := &ls.groups[g]
		grp.idx = append(grp.idx, i)
		grp.lockKeys = append(grp.lockKeys, lockKey)
		grp.scriptKeys = append(grp.scriptKeys, lockKey, fenceKey)
	}
	return ls, nil
}

// acquire takes the locks of skus (sorted, distinct), waiting with
// exponential backoff and jitter while another owner holds any of them. It
// returns a *ContendedError when the wait runs out, ctx's error when ctx
// ends, and an error wrapping the Redis error when Redis fails; in each case
// it holds nothing afterwards (or, if Redis could not be told, holds locks
// that expire after the TTL).
func (l *locker) acquire(ctx context.Context, skus []string) (*lease, error) {
	ls, err := l.newLease(skus)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	backoff := l.minBackoff
	for {
		busy, err := ls.try(ctx)
		if err != nil {
			// The script may have run with its reply lost: give back
			// whatever it took.
			_ = ls.releaseKeys(ctx)
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			err = fmt.Errorf("redislock: take locks: %w", err)
			if errors.Is(err, ErrNotReplicated) {
				return nil, &inventory.UnavailableError{Op: "reserve", Server: "redis", Err: err}
			}
			if u := unreach.Wrap("reserve", unreach.Redis, err); u != nil {
				return nil, u
			}
			// The locks it may have taken are given back (or lapse):
			// nothing changed.
			if u := unreach.Lost("reserve", unreach.Redis, err); u != nil {
				return nil, u
			}
			return nil, err
		}
		if busy < 0 {
			if !l.noWatchdog {
				ls.startWatchdog()
			}
			return ls, nil
		}
		waited := time.Since(start)
		left := l.wait - waited
		if left <= 0 {
			return nil, &ContendedError{SKU: skus[busy], Waited: waited}
		}
		// Jitter over the upper half: sleep for [backoff/2, backoff].
		d := backoff/2 + mathrand.N(backoff/2+1)
		d = min(d, left)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, l.maxBackoff)
	}
}

// try runs the acquire script for every slot group of the lease. It returns
// -1 when every lock was taken, or the index in ls.skus of a busy SKU, after
// releasing whatever this try took.
func (ls *lease) try(ctx context.Context) (busy int, err error) {
	l := ls.lk
	ttl := l.ttl.Milliseconds()
	calls := make([]scriptCall, len(ls.groups))
	for g := range ls.groups {
		calls[g] = scriptCall{keys: ls.groups[g].scriptKeys, args: []any{ls.owner, ttl}}
	}
	var cmds []*redis.Cmd
	replicas := int64(-1)
	if l.waitN > 0 && len(calls) == 1 {
		var cmd *redis.Cmd
		cmd, replicas, err = rediswait.Run(ctx, l.client, acquireScript, calls[0].keys, calls[0].args, l.waitN, l.waitFor)
		cmds = []*redis.Cmd{cmd}
	} else {
		cmds, err = runScript(ctx, l.client, acquireScript, calls)
	}
	if err != nil {
		return 0, err
	}
	busy = -1
	taken := false
	for g, cmd := range cmds {
		grp := &ls.groups[g]
		res, err := cmd.Int64Slice()
		if err != nil || len(res) == 0 {
			return 0, fmt.Errorf("acquire script: unexpected reply %v: %w", cmd.Val(), err)
		}
		if res[0] == 0 {
			if len(res) != 2 || res[1] < 1 || int(res[1]) > len(grp.idx) {
				return 0, fmt.Errorf("acquire script: unexpected reply %v", res)
			}
			if i := grp.idx[res[1]-1]; busy < 0 || i < busy {
				busy = i
			}
			continue
		}
		if len(res) != len(grp.idx)+1 {
			return 0, fmt.Errorf("acquire script: unexpected reply %v", res)
		}
		taken = true
		for j, i := range grp.idx {
			ls.fences[i] = res[j+1]
		}
	}
	if busy >= 0 && taken {
		// Some slot groups were taken, another was busy: give back the
		// taken ones so that no one waits while holding locks.
		if err := ls.releaseKeys(ctx); err != nil {
			return 0, err
		}
	}
	if busy < 0 && replicas >= 0 && replicas < int64(l.waitN) {
		// The caller gives the locks back.
		return 0, fmt.Errorf("%w: %d of %d replicas within %s", ErrNotReplicated, replicas, l.waitN, l.waitFor)
	}
	return busy, nil
}

// releaseOnce releases the lease the first time it is called and does
// nothing after. Its error is dropped: locks Redis could not be told to drop
// expire after the TTL, and the reservation stands either way.
func (ls *lease) releaseOnce(ctx context.Context) {
	if ls.released {
		return
	}
	ls.released = true
	_ = ls.release(ctx)
}

// release stops the watchdog and deletes the locks this lease still holds.
// It runs even when ctx is already cancelled, bounded by the lock TTL, after
// which the locks would have gone anyway.
func (ls *lease) release(ctx context.Context) error {
	ls.stopWatchdog()
	return ls.releaseKeys(ctx)
}

func (ls *lease) releaseKeys(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ls.lk.ttl)
	defer cancel()
	_, err := ls.runEach(ctx, releaseScript, ls.owner)
	return err
}

// extend resets the TTL of the locks this lease holds and reports whether it
// still held all of them.
func (ls *lease) extend(ctx context.Context) (bool, error) {
	n, err := ls.runEach(ctx, extendScript, ls.owner, ls.lk.ttl.Milliseconds())
	if err != nil {
		return false, err
	}
	return n == len(ls.skus), nil
}

// runEach runs a compare-and-act script over the lock keys of every slot
// group and returns the sum of the counts it returned.
func (ls *lease) runEach(ctx context.Context, s *redis.Script, args ...any) (int, error) {
	calls := make([]scriptCall, len(ls.groups))
	for g := range ls.groups {
		calls[g] = scriptCall{keys: ls.groups[g].lockKeys, args: args}
	}
	cmds, err := runScript(ctx, ls.lk.client, s, calls)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, cmd := range cmds {
		v, err := cmd.Int()
		if err != nil {
			return 0, err
		}
		n += v
	}
	return n, nil
}

// startWatchdog extends the lease every TTL/3 until stopWatchdog. When an
// extension finds a lock gone (it expired and maybe another owner took it)
// the lease is marked lost and the watchdog ends: the fence is then what
// keeps the stale holder from writing.
func (ls *lease) startWatchdog() {
	ls.stop = make(chan struct{})
	ls.stopped = make(chan struct{})
	every := ls.lk.ttl / 3
	go func() {
		defer close(ls.stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ls.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), every)
			ok, err := ls.extend(ctx)
			cancel()
			if err == nil && !ok {
				ls.lost.Store(true)
				return
			}
			// On an error, try again at the next tick: the lock may
			// still be there.
		}
	}()
}

// stopWatchdog stops the watchdog and waits for it to end, so that no
// extension runs after it returns.
func (ls *lease) stopWatchdog() {
	if ls.stop == nil {
		return
	}
	ls.stopOnce.Do(func() { close(ls.stop) })
	<-ls.stopped
}

// scriptCall is the keys and arguments of one script invocation.
type scriptCall struct {
	keys []string
	args []any
}

// runScript runs s once per call: a single call as EVALSHA (EVAL if the
// server lost the script), several calls in one pipeline, which a cluster
// client splits per node and sends in parallel. It returns the error of the
// first failed call.
func runScript(ctx context.Context, c redis.UniversalClient, s *redis.Script, calls []scriptCall) ([]*redis.Cmd, error) {
	if len(calls) == 1 {
		cmd := s.Run(ctx, c, calls[0].keys, calls[0].args...)
		if err := cmd.Err(); err != nil {
			return nil, err
		}
		return []*redis.Cmd{cmd}, nil
	}
	cmds := make([]*redis.Cmd, len(calls))
	_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, call := range calls {
			cmds[i] = s.EvalSha(ctx, p, call.keys, call.args...)
		}
		return nil
	})
	var missing []int
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			missing = append(missing, i) // not run: safe to send again
		}
	}
	if len(missing) > 0 {
		_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range missing {
				cmds[i] = s.Eval(ctx, p, calls[i].keys, calls[i].args...)
			}
			return nil
		})
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return nil, err
		}
	}
	return cmds, nil
}

// Lock timing defaults; Options documents them.
const (
	defaultLockTTL     = 5 * time.Second
	defaultWaitTimeout = 5 * time.Second
	minBackoff         = time.Millisecond
	maxBackoff         = 32 * time.Millisecond
)

// newLocker returns a locker on client. A *redis.ClusterClient gets one
// script call per slot group; other clients (a single server, Sentinel) one
// call for every lock of a request.
func newLocker(client redis.UniversalClient, prefix string, ttl, wait time.Duration) (*locker, error) {
	if client == nil {
		return nil, errors.New("redislock: nil redis client")
	}
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = defaultLockTTL
	}
	if ttl < 3*time.Millisecond {
		return nil, fmt.Errorf("redislock: lock TTL %v is below 3ms", ttl)
	}
	switch {
	case wait == 0:
		wait = defaultWaitTimeout
	case wait < 0:
		wait = 0 // one try, no waiting
	}
	_, cluster := client.(*redis.ClusterClient)
	return &locker{
		client: client, prefix: prefix, ttl: ttl, wait: wait,
		minBackoff: minBackoff, maxBackoff: maxBackoff, bySlot: cluster,
	}, nil
}
