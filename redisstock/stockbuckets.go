package redisstock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/pgstore"
)

// Stock buckets (inventory.StockOptions.Buckets): one SKU's available units
// split over k stocks of their own, so that buyers take units of one hot
// SKU from several hash slots (several Redis Cluster masters, several
// coalescing lanes) at once.
//
// Layout. Bucket 0 is the SKU's own stock hash, <prefix>{b<n>}:s:<sku>,
// which also keeps k (field k); a SKU kept whole has no field k, and is
// exactly what it was. Bucket j (1..k-1) is the stock hash of the name
// sku+"\x1e"+j (bucketSKU: byte 30 and the bucket's number, which no SKU
// holds, since no SKU holds a control character), in the hash slot
// (n+j) mod Options.Buckets, so that k buckets fill k distinct slots while
// k <= Options.Buckets. To every operation of the script, the writer, Load
// and Reconcile, a bucket is a stock of its own: a take, a give, an undo
// and a sale act on the bucket the line names, its events carry that
// bucket's available units and version, and the ledger keeps it as a stock
// row of that name. A reservation's record and the ledger's
// reservation_line name the bucket each line was taken from, so that a
// release, a cancel or an expiry gives the units back there; Reserve,
// Lookup and Extend report the SKU itself (external).
//
// A process learns a SKU's k from SetStockWith, Available, Levels, SetStock,
// AddStock, or a line refused by bucket 0 (the only bucket a process that
// does not know the split takes from), and remembers it: k of a split SKU
// never changes (SetStockWith refuses another), so what a process
// remembers never goes stale. A SKU the process knows nothing of costs
// nothing more than before.

// bucketSep joins a SKU and the number of one of its stock buckets.
const bucketSep = '\x1e'

// bucketSKU names bucket j of sku: sku itself for bucket 0.
func bucketSKU(sku string, j int) string {
	if j == 0 {
		return sku
	}
	return sku + string(rune(bucketSep)) + strconv.Itoa(j)
}

// splitSKU returns the SKU and the bucket a stock name names.
func splitSKU(name string) (string, int) {
	i := strings.IndexByte(name, bucketSep)
	if i < 0 {
		return name, 0
	}
	j, _ := strconv.Atoi(name[i+1:])
	return name[:i], j
}

// skuBucket returns the hash-slot bucket of a stock name: the SKU's for
// bucket 0, n+j (mod Options.Buckets) for bucket j of a SKU in n.
func (r *Reserver) skuBucket(name string) int {
	sku, j := splitSKU(name)
	if j == 0 {
		return r.bucket(sku)
	}
	return (r.bucket(sku) + j) % r.buckets
}

// maxSplits bounds how many split SKUs a process remembers; past it, the
// ones it does not know take from bucket 0 until refused, as in a process
// that just started.
const maxSplits = 1 << 16

// splits remembers the k of the split SKUs a process has seen.
type splits struct {
	m sync.Map // sku -> int
	n atomic.Int64
}

func (s *splits) get(sku string) int {
	if v, ok := s.m.Load(sku); ok {
		return v.(int)
	}
	return 1
}

func (s *splits) put(sku string, k int) {
	if k <= 1 {
		return
	}
	if _, ok := s.m.Load(sku); ok || s.n.Load() >= maxSplits {
		return
	}
	if _, loaded := s.m.LoadOrStore(sku, k); !loaded {
		s.n.Add(1)
	}
}

// parseK reads the k a reply carries at i (kept whole when it carries none).
func parseK(rep []string, i int) int {
	if len(rep) <= i {
		return 1
	}
	k, err := strconv.Atoi(rep[i])
	if err != nil || k < 1 {
		return 1
	}
	return k
}

// place returns lines with each line of a split SKU pointed at one of its
// buckets: the one a hash of the reservation ID picks, so that buyers in
// one process or many spread over them; for a cart of one line, the first
// from there that shares the hash slot of the reservation's record, when
// one does, so that the cart is one script call. lines itself when no
// line's SKU is known to be split.
func (r *Reserver) place(id string, lines []inventory.Line) []inventory.Line {
	var out []inventory.Line
	for i, l := range lines {
		k := r.splits.get(l.SKU)
		if k <= 1 {
			continue
		}
		if out == nil {
			out = slices.Clone(lines)
		}
		j := int(pgstore.BucketStart(id) % uint32(k))
		if len(lines) == 1 && r.buckets > 1 {
			rb := r.bucket(id)
			for d := range k {
				if c := (j + d) % k; r.skuBucket(bucketSKU(l.SKU, c)) == rb {
					j = c
					break
				}
			}
		}
		out[i].SKU = bucketSKU(l.SKU, j)
	}
	if out == nil {
		return lines
	}
	return out
}

// externalLines returns lines naming their SKUs instead of their buckets,
// the parts of a line taken from several buckets summed into one line.
func externalLines(lines []inventory.Line) []inventory.Line {
	if !slices.ContainsFunc(lines, func(l inventory.Line) bool { return strings.IndexByte(l.SKU, bucketSep) >= 0 }) {
		return lines
	}
	out := make([]inventory.Line, 0, len(lines))
	for _, l := range lines {
		l.SKU, _ = splitSKU(l.SKU)
		l.Min = 0
		if n := len(out); n > 0 && out[n-1].SKU == l.SKU {
			out[n-1].Qty += l.Qty
			continue
		}
		out = append(out, l)
	}
	return out
}

// externalErr makes the SKU an error names the SKU, not one of its buckets.
func externalErr(err error) error {
	var short *inventory.InsufficientStockError
	var unknown *inventory.UnknownSKUError
	var limit *inventory.LimitError
	switch {
	case errors.As(err, &short):
		short.SKU, _ = splitSKU(short.SKU)
	case errors.As(err, &unknown):
		unknown.SKU, _ = splitSKU(unknown.SKU)
	case errors.As(err, &limit):
		limit.SKU, _ = splitSKU(limit.SKU)
	}
	return err
}

// maxFallovers bounds the rounds of a Reserve whose lines keep finding the
// bucket they fell over to emptied by other buyers meanwhile.
const maxFallovers = 16

// fallover decides what a Reserve of lines refused with err does next.
// When a line of a split SKU was short in its bucket, it reads every
// bucket of the SKU: when the SKU as a whole lacks the units, the refusal
// stands (with the SKU's available units); else it returns lines with that
// SKU's line pointed at the first bucket from there on that has them all,
// or, when no one bucket does, split into parts taken from several
// buckets, the fullest first, to try again. The parts of a line are lines
// of the cart to every step of Reserve, so they are all held or none, as
// any cart's lines are; each returns to its own bucket. Any other error is
// returned as it is.
func (r *Reserver) fallover(ctx context.Context, req inventory.Request, lines []inventory.Line, err error) ([]inventory.Line, error) {
	var short *inventory.InsufficientStockError
	if !errors.As(err, &short) || r.noFallover {
		return nil, externalErr(err)
	}
	sku, j := splitSKU(short.SKU)
	lo := slices.IndexFunc(lines, func(l inventory.Line) bool { s, _ := splitSKU(l.SKU); return s == sku })
	if lo < 0 {
		return nil, externalErr(err)
	}
	hi := lo
	var want int64
	for ; hi < len(lines); hi++ {
		if s, _ := splitSKU(lines[hi].SKU); s != sku {
			break
		}
		want += lines[hi].Qty
	}
	k, avail, rerr := r.bucketUnits(ctx, sku)
	if rerr != nil {
		// Nothing is held (every round before was refused), but whether the
		// SKU is short is unknown.
		return nil, fmt.Errorf("redisstock: reserve %q: %w", req.ID, rerr)
	}
	if k <= 1 {
		return nil, externalErr(err)
	}
	sum := total(avail)
	need, floor := want, int64(0)
	if req.Partial && hi == lo+1 {
		// A partial line holds what the SKU has, down to its Min.
		floor = max(lines[lo].Min, 1)
		need, want = floor, min(want, sum)
	}
	if sum < need {
		// An earlier call under the ID (one whose outcome its caller did
		// not learn) may have reserved after this call's take was refused
		// and before the buckets were read, with units the sum misses:
		// with its record there, try again, and find it. With no record
		// now, there was none when the buckets were read either, so the
		// SKU was short then without it.
		if _, lerr := r.lookup(ctx, req.ID); lerr == nil {
			return lines, nil
		}
		short.SKU, short.Available = sku, sum
		return nil, err
	}
	var parts []inventory.Line
	for d := 1; d <= k && parts == nil; d++ {
		if c := (j + d) % k; avail[c] >= want {
			parts = []inventory.Line{{SKU: bucketSKU(sku, c), Qty: want, Min: floor}}
		}
	}
	if parts == nil {
		order := make([]int, k)
		for c := range order {
			order[c] = c
		}
		slices.SortStableFunc(order, func(a, b int) int { return int(avail[b] - avail[a]) })
		for _, c := range order {
			if q := min(avail[c], want); q > 0 {
				p := inventory.Line{SKU: bucketSKU(sku, c), Qty: q}
				if floor > 0 {
					p.Min = q // each part is all of it or nothing, a partial line's too
				}
				parts = append(parts, p)
				want -= q
			}
		}
		slices.SortFunc(parts, func(a, b inventory.Line) int { return strings.Compare(a.SKU, b.SKU) })
	}
	return slices.Concat(lines[:lo], parts, lines[hi:]), nil
}

// bucketUnits returns the k of sku and the available units of each of its
// buckets, and remembers k. A SKU kept whole has one. The buckets that
// share a hash slot are read by one script call, so in one snapshot: with
// one slot (Options.Buckets 1) every bucket, and the sum is one instant's;
// the calls of several slots run at once, each at its own instant.
func (r *Reserver) bucketUnits(ctx context.Context, sku string) (int, []int64, error) {
	a, k, err := r.avail(ctx, sku)
	if err != nil || k <= 1 {
		return k, []int64{a}, err
	}
	r.splits.put(sku, k)
	slots := map[int][]int{}
	for j := range k {
		b := r.skuBucket(bucketSKU(sku, j))
		slots[b] = append(slots[b], j)
	}
	avail := make([]int64, k)
	errs := make([]error, 0, len(slots))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for b, js := range slots {
		wg.Go(func() {
			keys := []string{r.marker(b)}
			for _, j := range js {
				keys = append(keys, r.stockKey(bucketSKU(sku, j)))
			}
			rep, err := r.run(ctx, b, keys, "availn")
			if err == nil && len(rep) != 1+len(js) {
				err = fmt.Errorf("redisstock: available %q: reply %q", sku, rep)
			}
			for i, j := range js {
				if err == nil {
					avail[j], err = strconv.ParseInt(rep[1+i], 10, 64)
				}
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, failRead("available", sku, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, nil, err
	}
	return k, avail, nil
}

// avail reads the available units of one stock (a SKU or one of its
// buckets) and, for a split SKU's bucket 0, its k.
func (r *Reserver) avail(ctx context.Context, name string) (int64, int, error) {
	b := r.skuBucket(name)
	rep, err := r.run(ctx, b, []string{r.marker(b), r.stockKey(name)}, "avail")
	if err != nil {
		return 0, 0, failRead("available", name, err)
	}
	if rep[0] == "unknown" || len(rep) < 2 {
		sku, _ := splitSKU(name)
		return 0, 0, &inventory.UnknownSKUError{SKU: sku}
	}
	a, err := strconv.ParseInt(rep[1], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("redisstock: available %q: reply %q: %w", name, rep, err)
	}
	return a, parseK(rep, 2), nil
}

// total sums the units of a SKU's buckets.
func total(avail []int64) int64 {
	var sum int64
	for _, a := range avail {
		sum += a
	}
	return sum
}

// shares splits n units evenly over k buckets: n/k each, one more for the
// first n mod k.
func shares(n int64, k int) []int64 {
	out := make([]int64, k)
	for j := range out {
		out[j] = n / int64(k)
		if int64(j) < n%int64(k) {
			out[j]++
		}
	}
	return out
}

// setSplit sets the units on hand of sku, split into k buckets, spread
// evenly over them: buckets k-1 down to 1 first, then bucket 0 with k, so
// that a process that reads k finds every bucket there. Each bucket is one
// script call; a concurrent reader may find some buckets set and others
// not yet.
func (r *Reserver) setSplit(ctx context.Context, sku string, n int64, k int) error {
	sh := shares(n, k)
	for j := k - 1; j >= 1; j-- {
		name := bucketSKU(sku, j)
		b := r.skuBucket(name)
		if _, err := r.run(ctx, b, []string{r.marker(b), r.stream(b), r.stockKey(name)}, "stockwith", name, sh[j], 0, 0); err != nil {
			return fail("set stock", sku, err)
		}
	}
	b := r.bucket(sku)
	if _, err := r.run(ctx, b, []string{r.marker(b), r.stream(b), r.stockKey(sku)}, "split", sku, sh[0], k); err != nil {
		return fail("set stock", sku, err)
	}
	r.splits.put(sku, k)
	return nil
}

// level plans a change of delta units over buckets holding a: units go to
// the emptiest buckets (delta > 0) or come from the fullest (delta < 0,
// never below zero; the caller checked that the buckets hold -delta), so
// that they end as even as they can. It returns each bucket's change.
func level(a []int64, delta int64) []int64 {
	sign := int64(1)
	if delta < 0 {
		sign = -1
	}
	x := make([]int64, len(a)) // sign*(a+d): raise the lowest
	for j, v := range a {
		x[j] = sign * v
	}
	rem := sign * delta
	for rem > 0 {
		lo := slices.Min(x)
		cnt, next, bound := int64(0), int64(0), false
		for _, v := range x {
			switch {
			case v == lo:
				cnt++
			case !bound || v < next:
				next, bound = v, true
			}
		}
		if sign < 0 && (!bound || next > 0) {
			next, bound = 0, true // never below zero
		}
		step := rem / cnt
		if bound && next-lo < step {
			step = next - lo
		}
		if step == 0 {
			for j, v := range x {
				if v == lo && rem > 0 {
					x[j]++
					rem--
				}
			}
			continue
		}
		for j, v := range x {
			if v == lo {
				x[j] += step
			}
		}
		rem -= step * cnt
	}
	d := make([]int64, len(a))
	for j := range a {
		d[j] = sign*x[j] - a[j]
	}
	return d
}

// addSplit adds delta units to sku, split into k buckets, spread as level
// plans over the buckets as they were read, one AddStock of a bucket at a
// time under a token of its own. A removal that a bucket refuses (buyers
// took its units meanwhile) gives back what it removed from the others and
// plans again; one the SKU as a whole cannot give fails with an
// *inventory.InsufficientStockError, changing nothing. It returns the sum
// of the buckets' units after their adds, those it did not touch as read.
func (r *Reserver) addSplit(ctx context.Context, sku string, delta int64) (int64, error) {
	for range maxFallovers {
		_, avail, err := r.bucketUnits(ctx, sku)
		if err != nil {
			return 0, err
		}
		sum := total(avail)
		if sum+delta < 0 {
			return 0, &inventory.InsufficientStockError{SKU: sku, Requested: -delta, Available: sum}
		}
		if sum+delta > inventory.MaxStock {
			return 0, &inventory.ValidationError{Field: "delta", Reason: fmt.Sprintf("available would be %d, over %d", sum+delta, int64(inventory.MaxStock))}
		}
		d := level(avail, delta)
		done := map[int]int64{}
		short := false
		for j, x := range d {
			if x == 0 {
				continue
			}
			a, ok, err := r.addBucket(ctx, sku, j, x)
			if err != nil {
				return 0, err
			}
			if !ok {
				short = true
				break
			}
			done[j], avail[j] = x, a
		}
		if !short {
			return total(avail), nil
		}
		for j, x := range done {
			if _, _, err := r.addBucket(ctx, sku, j, -x); err != nil {
				return 0, err
			}
		}
	}
	return 0, fmt.Errorf("redisstock: add stock %q: %w: buyers keep taking the units of its buckets", sku, inventory.ErrContended)
}

// addBucket adds x units to bucket j of sku under a token of its own, and
// returns the bucket's units after; ok is false when the bucket had fewer
// than -x.
func (r *Reserver) addBucket(ctx context.Context, sku string, j int, x int64) (int64, bool, error) {
	name := bucketSKU(sku, j)
	b := r.skuBucket(name)
	tok := make([]byte, 12)
	_, _ = rand.Read(tok)
	rep, err := r.run(ctx, b, []string{r.marker(b), r.stream(b), r.stockKey(name), r.key(b, "o:"+hex.EncodeToString(tok))},
		"add", name, x, int64(inventory.MaxStock), "b")
	if err != nil {
		return 0, false, fail("add stock", sku, err)
	}
	switch rep[0] {
	case "unknown":
		return 0, false, &inventory.UnknownSKUError{SKU: sku}
	case "short":
		return 0, false, nil
	case "over":
		return 0, false, &inventory.ValidationError{Field: "delta", Reason: fmt.Sprintf("bucket %d of %q would be over %d", j, sku, int64(inventory.MaxStock))}
	}
	a, err := strconv.ParseInt(rep[1], 10, 64)
	return a, true, err
}

// externalRes returns res with its lines naming their SKUs.
func externalRes(res inventory.Reservation) inventory.Reservation {
	res.Lines = externalLines(res.Lines)
	return res
}

// refuseSplitWith refuses stock buckets together with a limit per buyer or
// a backorder: a buyer's usage and a backorder are kept per stock, and a
// split SKU's are not summed over its buckets.
func refuseSplitWith(opts inventory.StockOptions) error {
	if opts.Buckets > 1 && (opts.Limit != 0 || opts.Backorder != 0) {
		return fmt.Errorf("redisstock: %w: stock buckets (StockOptions.Buckets %d) with a limit per buyer or a backorder", inventory.ErrUnsupported, opts.Buckets)
	}
	return nil
}

// Rebalance spreads the available units of sku evenly over its stock
// buckets again, as inventory.Rebalancer documents: buyers take from the
// bucket a hash of their reservation ID picks and fall over to the others,
// so the buckets that sold most are the ones short, and they get units back
// from the fullest. It reads the buckets, plans the moves, and makes each
// as a move of its own (see moveUnits): a move takes only what its bucket
// still has when it runs, so buyers meanwhile never find a bucket below
// zero, and the SKU has as many units after it as before. A SKU kept whole
// has nothing to move. An unknown SKU fails with an
// *inventory.UnknownSKUError.
func (r *Reserver) Rebalance(ctx context.Context, sku string) error {
	if err := inventory.ValidateSKU(sku); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	k, avail, err := r.bucketUnits(ctx, sku)
	if err != nil || k <= 1 {
		return externalErr(err)
	}
	for _, m := range planMoves(avail) {
		if err := r.moveUnits(ctx, sku, m.from, m.to, m.q); err != nil {
			return err
		}
	}
	return nil
}

// unitMove is q units to move from one stock bucket to another.
type unitMove struct {
	from, to int
	q        int64
}

// planMoves returns the moves that spread the units of buckets holding
// avail evenly (as shares does), each from a bucket over its share to one
// under it.
func planMoves(avail []int64) []unitMove {
	want := shares(total(avail), len(avail))
	var out []unitMove
	to := 0
	for from := range avail {
		for over := avail[from] - want[from]; over > 0; {
			for avail[to] >= want[to] {
				to++
			}
			q := min(over, want[to]-avail[to])
			out = append(out, unitMove{from: from, to: to, q: q})
			avail[from] -= q
			avail[to] += q
			over -= q
		}
	}
	return out
}

// moveMember prefixes the token of a move in its due set: no reservation
// ID holds a control character, so a move is never taken for one.
const moveMember = "\x1e"

// moveGrace is how long after its start a move cut off part way becomes
// due for ExpireDue to finish. A move not cut off finishes long before.
const moveGrace = 30 * time.Second

// moveUnits moves up to q units from bucket from of sku to bucket to, in
// the steps of script.lua's moves, each one script call on one bucket: arm
// the move's token on to's bucket; take the units from from's bucket and
// record the move there, due at moveGrace; then finishMove. Every step may
// be run again, by this call or by a sweeper, without moving a unit twice,
// so a move cut off anywhere (a crash, a cut connection, a context ended)
// loses no unit for good and makes none: its units are on the way, counted
// by neither bucket, until ExpireDue finishes it. A move once begun does not
// stop for the end of ctx (within 5 s), so a Rebalance cancelled leaves no
// units on the way. A bucket that buyers
// emptied meanwhile gives what it has left, or nothing.
func (r *Reserver) moveUnits(ctx context.Context, sku string, from, to int, q int64) error {
	fn, tn := bucketSKU(sku, from), bucketSKU(sku, to)
	if r.plainMove {
		_, ok, err := r.addBucket(ctx, sku, from, -q)
		if err != nil || !ok || r.moveCut == "out" {
			return errors.Join(err, errMoveCut(r.moveCut))
		}
		_, _, err = r.addBucket(ctx, sku, to, q)
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// A move once begun runs to its end whatever the caller's context
	// does, so that a Rebalance cancelled leaves no units on the way.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), compensateTimeout)
	defer cancel()
	fb, tb := r.skuBucket(fn), r.skuBucket(tn)
	tok := make([]byte, 12)
	_, _ = rand.Read(tok)
	t := hex.EncodeToString(tok)
	tk := r.key(tb, "w:"+t)
	if _, err := r.run(ctx, tb, []string{r.marker(tb), tk}, "mvarm"); err != nil {
		return fail("rebalance", sku, err)
	}
	rep, err := r.run(ctx, fb, []string{r.marker(fb), r.stream(fb), r.stockKey(fn), r.key(fb, "v:"+t), r.dueKey(fb)},
		"mvout", fn, q, tn, tk, r.clock().Add(moveGrace).UnixMicro(), moveMember+t)
	if err != nil {
		// Whether the units left: if they did, ExpireDue finishes the move.
		return fail("rebalance", sku, err)
	}
	if rep[0] != "ok" {
		_, _ = r.run(ctx, tb, []string{r.marker(tb), tk}, "mvdrop")
		if rep[0] == "unknown" {
			return &inventory.UnknownSKUError{SKU: sku}
		}
		return nil // short: buyers took the bucket's units meanwhile
	}
	if r.moveCut == "out" {
		return errMoveCut("out")
	}
	if err := r.finishMove(ctx, fb, t); err != nil {
		return fail("rebalance", sku, err)
	}
	return nil
}

// finishMove finishes the move under token t recorded in hash-slot bucket
// fb, as far as it went: adds its units to the bucket they go to (once:
// while its token there is armed), then deletes its record and its due
// entry, then its token. A move already finished is found gone, and only
// its due entry, if any, is deleted.
func (r *Reserver) finishMove(ctx context.Context, fb int, t string) error {
	rk := r.key(fb, "v:"+t)
	rep, err := r.run(ctx, fb, []string{r.marker(fb), rk}, "mvread")
	if err != nil {
		return err
	}
	var tb int
	var tk string
	if rep[0] == "ok" && len(rep) == 4 {
		tn, q := rep[1], rep[2]
		sku, _ := splitSKU(tn)
		tb, tk = r.skuBucket(tn), rep[3]
		if r.plainMoveIn {
			n, _ := strconv.ParseInt(q, 10, 64)
			_, j := splitSKU(tn)
			if _, _, err := r.addBucket(ctx, sku, j, n); err != nil {
				return err
			}
		} else {
			in, err := r.run(ctx, tb, []string{r.marker(tb), r.stream(tb), r.stockKey(tn), tk}, "mvin", tn, q)
			if err != nil {
				return err
			}
			if in[0] == "unknown" {
				// The bucket's stock is gone: the record keeps the units.
				return &inventory.UnknownSKUError{SKU: sku}
			}
		}
		if r.moveCut == "in" {
			return errMoveCut("in")
		}
	}
	if _, err := r.run(ctx, fb, []string{r.marker(fb), rk, r.dueKey(fb)}, "mvend", moveMember+t); err != nil {
		return err
	}
	if tk != "" {
		if _, err := r.run(ctx, tb, []string{r.marker(tb), tk}, "mvdrop"); err != nil {
			return err
		}
	}
	return nil
}

// errMoveCut is the error of a move a test cut off after step (nil for
// none).
func errMoveCut(step string) error {
	if step == "" {
		return nil
	}
	return fmt.Errorf("redisstock: move cut off after its %q step", step)
}
