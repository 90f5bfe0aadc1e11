package redisstock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
)

// ErrNotDrained reports a Reconcile called while events are still on their
// way to PostgreSQL: the two would differ by what is in flight.
var ErrNotDrained = errors.New("redisstock: events are still waiting for the writer")

// ReconcileOptions configures Reconcile. A nil *ReconcileOptions reports
// without repairing.
type ReconcileOptions struct {
	// Repair makes PostgreSQL agree with Redis, which holds the stock while
	// it is loaded: stock rows take Redis's available units and version,
	// reservations Redis's state and lines, and reservations Redis does not
	// know are deleted from the ledger. Default: false.
	Repair bool
}

// Difference is one way Redis and PostgreSQL disagree.
type Difference struct {
	// Kind is "stock", "reservation" or "usage" (the units of a SKU with
	// a limit per buyer that a buyer holds and has committed: in Redis the
	// usage the scripts keep, in PostgreSQL the counted lines of the
	// buyer's held and committed reservations).
	Kind string
	// SKU or ID names what differs; Buyer too for a usage.
	SKU, ID, Buyer string
	// Redis and Postgres say what each holds ("missing" when it has none).
	Redis, Postgres string
}

func (d Difference) String() string {
	name := d.SKU
	switch d.Kind {
	case "reservation":
		name = d.ID
	case "usage":
		name = d.SKU + " of buyer " + d.Buyer
	}
	return fmt.Sprintf("%s %q: redis %s, postgres %s", d.Kind, name, d.Redis, d.Postgres)
}

// Report is what Reconcile found.
type Report struct {
	SKUs, Reservations int // compared
	Differences        []Difference
	Repaired           bool
}

// Reconcile compares Redis with the PostgreSQL ledger, SKU by SKU (its
// available units, backorder and limit per buyer), reservation by
// reservation (state, lines, expiry, buyer, Partial) and buyer by buyer
// (the usage of each SKU with a limit), and reports every difference;
// with opts.Repair it then makes PostgreSQL agree with Redis on stock and
// reservations (a usage follows from the reservations). The streams must
// be drained first (no event waiting for a writer), else it fails with
// ErrNotDrained; a Redis that is not loaded fails with ErrNotLoaded.
// Carts still being taken (not granted) are not compared. With
// Options.Retention, a settled reservation that one side holds and the
// other does not is no difference once the retention has passed since it
// was created (by Now): each side forgets it on its own, Redis on its
// clock and the ledger when Purge runs; a held one missing on either side
// still is. It reads every key of the store: a maintenance task, not a
// hot-path call.
func (r *Reserver) Reconcile(ctx context.Context, opts *ReconcileOptions) (*Report, error) {
	if ok, err := r.Loaded(ctx); err != nil {
		return nil, err
	} else if !ok {
		return nil, &NotLoadedError{Key: r.marker(0)}
	}
	for b := range r.buckets {
		n, err := r.rdb.XLen(ctx, r.stream(b)).Result()
		if err != nil {
			return nil, failRead("reconcile", "", err)
		}
		if n > 0 {
			return nil, fmt.Errorf("%w: %d events in bucket %d", ErrNotDrained, n, b)
		}
	}
	redisStock, err := r.redisStock(ctx)
	if err != nil {
		return nil, err
	}
	redisRes, err := r.redisReservations(ctx)
	if err != nil {
		return nil, err
	}
	pgStock, err := r.pgStock(ctx)
	if err != nil {
		return nil, err
	}
	pgRes, err := r.pgReservations(ctx)
	if err != nil {
		return nil, err
	}
	redisUse, err := r.redisUsage(ctx)
	if err != nil {
		return nil, err
	}
	pgUse, err := r.pgUsage(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{SKUs: len(redisStock), Reservations: len(redisRes)}
	for _, sku := range unionKeys(redisStock, pgStock) {
		rs, rok := redisStock[sku]
		ps, pok := pgStock[sku]
		if rok && pok && rs.a == ps.a && rs.b == ps.b && rs.l == ps.l {
			continue
		}
		rep.Differences = append(rep.Differences, Difference{Kind: "stock", SKU: sku, Redis: rs.describe(rok), Postgres: ps.describe(pok)})
	}
	for _, id := range unionKeys(redisRes, pgRes) {
		rx, rok := redisRes[id]
		rr := rx.Reservation
		px, pok := pgRes[id]
		pr := px.Reservation
		if rok != pok && ((rok && r.pastRetention(rr.State, rx.cr)) || (pok && r.pastRetention(pr.State, px.cr))) {
			// Settled, and past the retention on one side: the other may
			// simply not have forgotten it yet.
			continue
		}
		if rok && pok && rr.State == pr.State && slices.Equal(rr.Lines, pr.Lines) && rr.ExpiresAt.Equal(pr.ExpiresAt) &&
			rr.Buyer == pr.Buyer && rr.Partial == pr.Partial {
			continue
		}
		rep.Differences = append(rep.Differences, Difference{Kind: "reservation", ID: id, Redis: describeRes(rr, rok), Postgres: describeRes(pr, pok)})
	}
	for _, k := range unionKeys(redisUse, pgUse) {
		if redisUse[k] == pgUse[k] {
			continue
		}
		sku, buyer, _ := strings.Cut(k, "\x00")
		rep.Differences = append(rep.Differences, Difference{Kind: "usage", SKU: sku, Buyer: buyer,
			Redis: strconv.FormatInt(redisUse[k], 10), Postgres: strconv.FormatInt(pgUse[k], 10)})
	}
	if opts != nil && opts.Repair && len(rep.Differences) > 0 {
		if err := r.repair(ctx, rep, redisStock, redisRes); err != nil {
			return rep, err
		}
		rep.Repaired = true
	}
	return rep, nil
}

type stockRow struct{ a, v, b, l int64 }

func (s stockRow) describe(ok bool) string {
	switch {
	case !ok:
		return "missing"
	case s.b != 0 || s.l != 0:
		return fmt.Sprintf("available %d (backorder %d, limit %d)", s.a, s.b, s.l)
	}
	return fmt.Sprintf("available %d", s.a)
}

func describeRes(r inventory.Reservation, ok bool) string {
	if !ok {
		return "missing"
	}
	return fmt.Sprintf("%s %v until %s (buyer %q, partial %v)", r.State, r.Lines, r.ExpiresAt.Format(time.RFC3339Nano), r.Buyer, r.Partial)
}

func unionKeys[V, W any](a map[string]V, b map[string]W) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// kindOf returns what a key of the store names: its kind ("s", "r", ...)
// and the SKU or ID after it.
func (r *Reserver) kindOf(key string) (kind, name string) {
	rest := strings.TrimPrefix(key, r.prefix)
	_, rest, ok := strings.Cut(rest, "}:")
	if !ok {
		return "", ""
	}
	kind, name, _ = strings.Cut(rest, ":")
	return kind, name
}

func (r *Reserver) redisStock(ctx context.Context) (map[string]stockRow, error) {
	out := map[string]stockRow{}
	err := r.scan(ctx, r.rdb, "{b", func(ctx context.Context, c redis.Cmdable, keys []string) error {
		var names []string
		var cmds []*redis.SliceCmd
		p := c.Pipeline()
		for _, k := range keys {
			if kind, name := r.kindOf(k); kind == "s" {
				names = append(names, name)
				cmds = append(cmds, p.HMGet(ctx, k, "a", "v", "b", "l"))
			}
		}
		if len(cmds) == 0 {
			return nil
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		for i, c := range cmds {
			v := c.Val()
			a, _ := strconv.ParseInt(fmt.Sprint(v[0]), 10, 64)
			ver, _ := strconv.ParseInt(fmt.Sprint(v[1]), 10, 64)
			var bo, lim int64
			if v[2] != nil {
				bo, _ = strconv.ParseInt(fmt.Sprint(v[2]), 10, 64)
			}
			if v[3] != nil {
				lim, _ = strconv.ParseInt(fmt.Sprint(v[3]), 10, 64)
			}
			out[names[i]] = stockRow{a, ver, bo, lim}
		}
		return nil
	})
	if err != nil {
		return nil, failRead("reconcile", "", err)
	}
	return out, nil
}

// redisRes is a reservation as Redis holds it, with the attempt of its
// takes and when it was created.
type redisRes struct {
	inventory.Reservation
	at int64
	cr time.Time
}

func (r *Reserver) redisReservations(ctx context.Context) (map[string]redisRes, error) {
	out := map[string]redisRes{}
	err := r.scan(ctx, r.rdb, "{b", func(ctx context.Context, c redis.Cmdable, keys []string) error {
		for _, k := range keys {
			kind, id := r.kindOf(k)
			if kind != "r" {
				continue
			}
			x, err := r.lookup(ctx, id)
			if errors.Is(err, inventory.ErrNotFound) {
				continue // pending or aborted: not a reservation yet
			}
			if err != nil {
				return err
			}
			out[id] = x
		}
		return nil
	})
	if err != nil {
		return nil, failRead("reconcile", "", err)
	}
	return out, nil
}

func (r *Reserver) pgStock(ctx context.Context) (map[string]stockRow, error) {
	rows, err := r.store.DB().Query(ctx, "SELECT sku, available, fence, backorder, buyer_limit FROM "+r.store.Table("stock"))
	if err != nil {
		return nil, fmt.Errorf("redisstock: reconcile: %w", err)
	}
	defer rows.Close()
	out := map[string]stockRow{}
	for rows.Next() {
		var sku string
		var s stockRow
		if err := rows.Scan(&sku, &s.a, &s.v, &s.b, &s.l); err != nil {
			return nil, fmt.Errorf("redisstock: reconcile: %w", err)
		}
		out[sku] = s
	}
	return out, rows.Err()
}

// pgReservations reads every reservation of the ledger, with when it was
// created.
func (r *Reserver) pgReservations(ctx context.Context) (map[string]redisRes, error) {
	rows, err := r.store.DB().Query(ctx, `SELECT r.id, r.state, r.expires_at, r.created_at, coalesce(r.buyer, ''), r.partial, l.sku, l.qty FROM `+r.store.Table("reservation")+` r
LEFT JOIN `+r.store.Table("reservation_line")+` l ON l.reservation_id = r.id ORDER BY r.id, l.sku`)
	if err != nil {
		return nil, fmt.Errorf("redisstock: reconcile: %w", err)
	}
	defer rows.Close()
	out := map[string]redisRes{}
	for rows.Next() {
		var id, buyer string
		var st int16
		var exp, cr time.Time
		var partial bool
		var sku *string
		var qty *int64
		if err := rows.Scan(&id, &st, &exp, &cr, &buyer, &partial, &sku, &qty); err != nil {
			return nil, fmt.Errorf("redisstock: reconcile: %w", err)
		}
		res := out[id]
		res.ID, res.State, res.ExpiresAt, res.Buyer, res.Partial, res.cr = id, inventory.State(st), exp.UTC(), buyer, partial, cr.UTC()
		if sku != nil && qty != nil { // a tombstone of Cancel has no lines
			res.Lines = append(res.Lines, inventory.Line{SKU: *sku, Qty: *qty})
		}
		out[id] = res
	}
	return out, rows.Err()
}

// redisUsage reads every buyer's usage of every SKU with a limit, keyed
// by SKU and buyer joined by a NUL byte.
func (r *Reserver) redisUsage(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	err := r.scan(ctx, r.rdb, "{b", func(ctx context.Context, c redis.Cmdable, keys []string) error {
		var names []string
		var cmds []*redis.MapStringStringCmd
		p := c.Pipeline()
		for _, k := range keys {
			if kind, name := r.kindOf(k); kind == "u" {
				names = append(names, name)
				cmds = append(cmds, p.HGetAll(ctx, k))
			}
		}
		if len(cmds) == 0 {
			return nil
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		for i, c := range cmds {
			for buyer, v := range c.Val() {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[names[i]+"\x00"+buyer] = n
			}
		}
		return nil
	})
	if err != nil {
		return nil, failRead("reconcile", "", err)
	}
	return out, nil
}

// pgUsage sums, by SKU and buyer, the counted lines of the held and
// committed reservations of the ledger and of the committed ones it forgot
// (buyer_usage), keyed as redisUsage keys them.
func (r *Reserver) pgUsage(ctx context.Context) (map[string]int64, error) {
	rows, err := r.store.DB().Query(ctx, `SELECT u.sku, u.buyer, sum(u.qty)::bigint FROM (
	SELECT l.sku, r.buyer, l.qty FROM `+r.store.Table("reservation")+` r
	JOIN `+r.store.Table("reservation_line")+` l ON l.reservation_id = r.id
	WHERE r.state IN (1, 2) AND r.buyer IS NOT NULL AND l.counted
	UNION ALL SELECT sku, buyer, used FROM `+r.store.Table("buyer_usage")+`) u GROUP BY u.sku, u.buyer`)
	if err != nil {
		return nil, fmt.Errorf("redisstock: reconcile: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var sku, buyer string
		var n int64
		if err := rows.Scan(&sku, &buyer, &n); err != nil {
			return nil, fmt.Errorf("redisstock: reconcile: %w", err)
		}
		out[sku+"\x00"+buyer] = n
	}
	return out, rows.Err()
}

// repair makes PostgreSQL agree with Redis on every difference of rep, in
// one transaction.
func (r *Reserver) repair(ctx context.Context, rep *Report, stock map[string]stockRow, res map[string]redisRes) error {
	tx, err := beginTx(ctx, r.store.DB(), "")
	if err != nil {
		return fmt.Errorf("redisstock: repair: %w", err)
	}
	defer rollback(ctx, tx)
	for _, d := range rep.Differences {
		switch d.Kind {
		case "stock":
			s, ok := stock[d.SKU]
			if !ok {
				_, err = tx.Exec(ctx, "DELETE FROM "+r.store.Table("stock")+" WHERE sku = $1", d.SKU)
				break
			}
			_, err = tx.Exec(ctx, "INSERT INTO "+r.store.Table("stock")+" (sku, available, fence, backorder, buyer_limit, backorder_fence) VALUES ($1, $2, $3, $4, $5, $3) ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available, fence = EXCLUDED.fence, backorder = EXCLUDED.backorder, buyer_limit = EXCLUDED.buyer_limit, backorder_fence = EXCLUDED.backorder_fence", d.SKU, s.a, s.v, s.b, s.l)
		case "reservation":
			// The takes PostgreSQL counts for the reservation become Redis's
			// too, so that a later Load neither gives back units Redis holds
			// nor keeps units it does not.
			_, err = tx.Exec(ctx, "DELETE FROM "+r.store.Table("reservation")+" WHERE id = $1", d.ID)
			if err == nil {
				_, err = tx.Exec(ctx, "DELETE FROM "+r.store.Table("redisstock_hold")+" WHERE reservation_id = $1", d.ID)
			}
			if x, ok := res[d.ID]; ok && err == nil && (x.State == inventory.Held || x.State == inventory.Committed) {
				for _, l := range x.Lines {
					if err == nil {
						_, err = tx.Exec(ctx, "INSERT INTO "+r.store.Table("redisstock_hold")+" (reservation_id, sku, attempt, qty, state) VALUES ($1, $2, $3, $4, 'T')", d.ID, l.SKU, x.at, l.Qty)
					}
				}
			}
			if x, ok := res[d.ID]; ok && err == nil {
				_, err = tx.Exec(ctx, "INSERT INTO "+r.store.Table("reservation")+" (id, state, expires_at, created_at, buyer, partial) VALUES ($1, $2, $3, $4, nullif($5, ''), $6)", d.ID, int16(x.State), x.ExpiresAt, x.ExpiresAt, x.Buyer, x.Partial)
				for _, l := range x.Lines {
					if err == nil {
						_, err = tx.Exec(ctx, "INSERT INTO "+r.store.Table("reservation_line")+" (reservation_id, sku, qty) VALUES ($1, $2, $3)", d.ID, l.SKU, l.Qty)
					}
				}
			}
		}
		if err != nil {
			return fmt.Errorf("redisstock: repair %s: %w", d, err)
		}
	}
	return tx.Commit(ctx)
}
