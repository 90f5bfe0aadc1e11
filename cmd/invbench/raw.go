package main

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
)

// The raw baselines measure what the servers can do at most for this
// workload: the stock statement and nothing else. Each is an
// inventory.Strategy only so that the same hammer drives it and checks its
// accounting; it keeps its reservations in process, takes no lock of its own,
// never expires holds, and skips validation.
//
//   - raw-postgres: one autocommit conditional UPDATE per line
//     (UPDATE stock SET available = available - n WHERE sku = $1 AND
//     available >= n), in sorted SKU order; a refused line gives back the
//     lines taken before it. Release is one autocommit UPDATE per line.
//   - raw-redis: one Lua script per cart that checks every line and
//     decrements them all, or none; Release is one script that increments.

// ledger keeps the reservations of a raw baseline in process.
type ledger struct {
	seed   maphash.Seed
	shards [64]ledgerShard
}

type ledgerShard struct {
	mu  sync.Mutex
	res map[string]*inventory.Reservation
	_   [40]byte // keep shards' mutexes on separate cache lines
}

func newLedger() *ledger {
	l := &ledger{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].res = make(map[string]*inventory.Reservation)
	}
	return l
}

func (l *ledger) shard(id string) *ledgerShard {
	return &l.shards[maphash.String(l.seed, id)%uint64(len(l.shards))]
}

func (l *ledger) get(id string) (inventory.Reservation, bool) {
	sh := l.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, ok := sh.res[id]
	if !ok {
		return inventory.Reservation{}, false
	}
	return *r, true
}

func (l *ledger) put(r inventory.Reservation) {
	sh := l.shard(r.ID)
	sh.mu.Lock()
	sh.res[r.ID] = &r
	sh.mu.Unlock()
}

// all returns every reservation the ledger holds.
func (l *ledger) all() []inventory.Reservation {
	var out []inventory.Reservation
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for _, r := range sh.res {
			out = append(out, *r)
		}
		sh.mu.Unlock()
	}
	return out
}

// settle moves a Held reservation to state and returns its lines, or says
// why it cannot.
func (l *ledger) settle(id, op string, to inventory.State) ([]inventory.Line, error) {
	sh := l.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, ok := sh.res[id]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %q", inventory.ErrNotFound, id)
	case r.State == to:
		return nil, nil
	case r.State != inventory.Held:
		return nil, &inventory.StateError{ID: id, Op: op, State: r.State}
	}
	r.State = to
	return r.Lines, nil
}

// rawOps is what differs between the raw baselines: how a cart is taken and
// given back, and the stock administration.
type rawOps interface {
	take(ctx context.Context, lines []inventory.Line) error
	give(ctx context.Context, lines []inventory.Line) error
	available(ctx context.Context, sku string) (int64, error)
	setStock(ctx context.Context, sku string, n int64) error
	addStock(ctx context.Context, sku string, delta int64) (int64, error)
}

// raw is a baseline as an inventory.Strategy.
type raw struct {
	ops    rawOps
	ledger *ledger
}

var _ inventory.Strategy = (*raw)(nil)

func (r *raw) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	if res, ok := r.ledger.get(req.ID); ok {
		return res, nil
	}
	lines := inventory.SortLines(req.Lines)
	if err := r.ops.take(ctx, lines); err != nil {
		return inventory.Reservation{}, err
	}
	res := inventory.Reservation{ID: req.ID, Lines: lines, State: inventory.Held}
	r.ledger.put(res)
	return res, nil
}

func (r *raw) Commit(_ context.Context, id string) error {
	_, err := r.ledger.settle(id, "commit", inventory.Committed)
	return err
}

func (r *raw) Release(ctx context.Context, id string) error {
	lines, err := r.ledger.settle(id, "release", inventory.Released)
	if err != nil || lines == nil {
		return err
	}
	return r.ops.give(context.WithoutCancel(ctx), lines)
}

// Cancel releases a held reservation. A baseline keeps no tombstones: an
// unknown ID is nil, and a later Reserve with it takes units.
func (r *raw) Cancel(ctx context.Context, id string) error {
	if err := r.Release(ctx, id); !errors.Is(err, inventory.ErrNotFound) {
		return err
	}
	return nil
}

func (r *raw) Available(ctx context.Context, sku string) (int64, error) {
	return r.ops.available(ctx, sku)
}

func (r *raw) SetStock(ctx context.Context, sku string, n int64) error {
	return r.ops.setStock(ctx, sku, n)
}

func (r *raw) AddStock(ctx context.Context, sku string, delta int64) (int64, error) {
	return r.ops.addStock(ctx, sku, delta)
}

// ExpireDue does nothing: a baseline's holds never expire.
func (r *raw) ExpireDue(context.Context, int) (int, error) { return 0, nil }

func (r *raw) Lookup(_ context.Context, id string) (inventory.Reservation, error) {
	res, ok := r.ledger.get(id)
	if !ok {
		return inventory.Reservation{}, fmt.Errorf("%w: %q", inventory.ErrNotFound, id)
	}
	return res, nil
}

// rawPostgres issues the bare statements through pgx.
type rawPostgres struct {
	pool                       *pgxpool.Pool
	takeSQL, giveSQL, availSQL string
	setSQL, addSQL             string
}

// openRawPostgres creates schema with a stock table and returns the
// baseline on it.
func openRawPostgres(ctx context.Context, pool *pgxpool.Pool, schema string) (*raw, error) {
	t := pgx.Identifier{schema, "stock"}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()+";\n"+
		"CREATE TABLE IF NOT EXISTS "+t+" (sku text PRIMARY KEY, available bigint NOT NULL CHECK (available >= 0))"); err != nil {
		return nil, err
	}
	ops := &rawPostgres{
		pool:     pool,
		takeSQL:  "UPDATE " + t + " SET available = available - $2 WHERE sku = $1 AND available >= $2",
		giveSQL:  "UPDATE " + t + " SET available = available + $2 WHERE sku = $1",
		availSQL: "SELECT available FROM " + t + " WHERE sku = $1",
		setSQL:   "INSERT INTO " + t + " (sku, available) VALUES ($1, $2) ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available",
		addSQL:   "UPDATE " + t + " SET available = available + $2 WHERE sku = $1 AND available + $2 >= 0 RETURNING available",
	}
	return &raw{ops: ops, ledger: newLedger()}, nil
}

func (p *rawPostgres) take(ctx context.Context, lines []inventory.Line) error {
	for i, l := range lines {
		tag, err := p.pool.Exec(ctx, p.takeSQL, l.SKU, l.Qty)
		if err == nil && tag.RowsAffected() == 1 {
			continue
		}
		if gerr := p.give(context.WithoutCancel(ctx), lines[:i]); gerr != nil {
			err = errors.Join(err, gerr)
		}
		if err != nil {
			return err
		}
		return &inventory.InsufficientStockError{SKU: l.SKU, Requested: l.Qty}
	}
	return nil
}

func (p *rawPostgres) give(ctx context.Context, lines []inventory.Line) error {
	for _, l := range lines {
		if _, err := p.pool.Exec(ctx, p.giveSQL, l.SKU, l.Qty); err != nil {
			return err
		}
	}
	return nil
}

func (p *rawPostgres) available(ctx context.Context, sku string) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx, p.availSQL, sku).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, &inventory.UnknownSKUError{SKU: sku}
	}
	return n, err
}

func (p *rawPostgres) setStock(ctx context.Context, sku string, n int64) error {
	_, err := p.pool.Exec(ctx, p.setSQL, sku, n)
	return err
}

func (p *rawPostgres) addStock(ctx context.Context, sku string, delta int64) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx, p.addSQL, sku, delta).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, aerr := p.available(ctx, sku); aerr != nil {
			return 0, aerr
		}
		return 0, &inventory.InsufficientStockError{SKU: sku, Requested: -delta}
	}
	return n, err
}

// rawRedis runs one Lua script per cart.
type rawRedis struct {
	c      redis.UniversalClient
	prefix string
}

// takeScript checks every line, then decrements them all. It returns 0, or
// the 1-based index of the first line refused.
var takeScript = redis.NewScript(`
for i, k in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', k) or '-1')
  if n < tonumber(ARGV[i]) then return i end
end
for i, k in ipairs(KEYS) do redis.call('DECRBY', k, ARGV[i]) end
return 0`)

var giveScript = redis.NewScript(`
for i, k in ipairs(KEYS) do redis.call('INCRBY', k, ARGV[i]) end
return 0`)

var addScript = redis.NewScript(`
local n = redis.call('GET', KEYS[1])
if not n then return {-1, 0} end
n = tonumber(n) + tonumber(ARGV[1])
if n < 0 then return {-2, 0} end
redis.call('SET', KEYS[1], n)
return {0, n}`)

func openRawRedis(c redis.UniversalClient, prefix string) *raw {
	return &raw{ops: &rawRedis{c: c, prefix: prefix}, ledger: newLedger()}
}

// key returns the key of sku. The prefix carries one hash tag, so that a
// cart's keys share a cluster slot.
func (r *rawRedis) key(sku string) string { return r.prefix + "{stock}:" + sku }

func (r *rawRedis) args(lines []inventory.Line) ([]string, []any) {
	keys := make([]string, len(lines))
	argv := make([]any, len(lines))
	for i, l := range lines {
		keys[i] = r.key(l.SKU)
		argv[i] = l.Qty
	}
	return keys, argv
}

func (r *rawRedis) take(ctx context.Context, lines []inventory.Line) error {
	keys, argv := r.args(lines)
	i, err := takeScript.Run(ctx, r.c, keys, argv...).Int()
	if err != nil {
		return err
	}
	if i > 0 && i <= len(lines) {
		return &inventory.InsufficientStockError{SKU: lines[i-1].SKU, Requested: lines[i-1].Qty}
	}
	return nil
}

func (r *rawRedis) give(ctx context.Context, lines []inventory.Line) error {
	keys, argv := r.args(lines)
	return giveScript.Run(ctx, r.c, keys, argv...).Err()
}

func (r *rawRedis) available(ctx context.Context, sku string) (int64, error) {
	s, err := r.c.Get(ctx, r.key(sku)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, &inventory.UnknownSKUError{SKU: sku}
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

func (r *rawRedis) setStock(ctx context.Context, sku string, n int64) error {
	return r.c.Set(ctx, r.key(sku), n, 0).Err()
}

func (r *rawRedis) addStock(ctx context.Context, sku string, delta int64) (int64, error) {
	v, err := addScript.Run(ctx, r.c, []string{r.key(sku)}, delta).Int64Slice()
	if err != nil {
		return 0, err
	}
	switch v[0] {
	case -1:
		return 0, &inventory.UnknownSKUError{SKU: sku}
	case -2:
		return 0, &inventory.InsufficientStockError{SKU: sku, Requested: -delta}
	}
	return v[1], nil
}
