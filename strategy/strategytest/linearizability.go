package strategytest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/oversell/inventory"
)

// LinearizabilityTimeout bounds porcupine's check of one history. A check
// that does not finish in time (Unknown) fails: it is a history to
// investigate, not a pass.
const LinearizabilityTimeout = 20 * time.Second

// linConfig describes a recorded history: clients calling Reserve, Commit,
// Release and Available at once on a few SKUs of scarce stock.
type linConfig struct {
	Strategy inventory.Strategy
	NewID    func(ctx context.Context) (string, error)

	// Groups are the sets of SKUs a two-line cart draws its pair from; a
	// one-line cart takes any SKU. With one-line carts only, every SKU is a
	// partition of its own; with pairs, every group is.
	SKUs      []string
	Groups    [][]string
	TwoLines  float64 // fraction of carts with two lines
	Stock     int64
	Clients   int // mutating clients
	Readers   int // clients calling Available only
	Ops       int // operations per mutating client
	Reads     int // reads per reader
	CancelPct float64
	Seed      uint64
}

// linInput is one call of a history.
type linInput struct {
	Op    string // "reserve", "commit", "release", "available"
	ID    string
	Lines []inventory.Line
	SKU   string // available
}

// linOutput is what the call returned: Kind is "" for success, the
// hammer's ErrorKind otherwise; State is Reserve's, N is Available's.
type linOutput struct {
	Kind  string
	State inventory.State
	N     int64
}

// uncertain reports whether the call's outcome is unknown: it may have been
// applied, at any point after it was made.
func (o linOutput) uncertain() bool {
	switch o.Kind {
	case "", "insufficient", "not_held", "not_found", "contended":
		return false
	case "conflict", "invalid", "unknown_sku":
		return false // outside the contract: the model refuses them
	}
	return true // outcome_unknown, canceled, a cut connection, ...
}

// linRes is the model's record of one reservation.
type linRes struct {
	lines string // canonical form of the sorted lines
	state inventory.State
}

// linState is the model's state: the available units per SKU and the
// reservations by ID. Steps copy it; it is never changed in place.
type linState struct {
	avail map[string]int64
	res   map[string]linRes
}

func (s linState) clone() linState {
	return linState{avail: maps.Clone(s.avail), res: maps.Clone(s.res)}
}

func linesKey(lines []inventory.Line) string {
	var b strings.Builder
	for _, l := range inventory.SortLines(lines) {
		fmt.Fprintf(&b, "%s:%d,", l.SKU, l.Qty)
	}
	return b.String()
}

// linModel is the contract as a sequential specification. A call whose
// outcome is unknown steps to two states: unchanged, or applied.
func linModel(skus []string, stock int64) porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Init: func() []any {
			s := linState{avail: make(map[string]int64, len(skus)), res: map[string]linRes{}}
			for _, sku := range skus {
				s.avail[sku] = stock
			}
			return []any{s}
		},
		Step: func(state, input, output any) []any {
			s, in, out := state.(linState), input.(linInput), output.(linOutput)
			if out.uncertain() {
				if next, ok := linApply(s, in); ok {
					return []any{s, next}
				}
				return []any{s}
			}
			if next, ok := linCheck(s, in, out); ok {
				return []any{next}
			}
			return nil
		},
		Equal: func(a, b any) bool {
			x, y := a.(linState), b.(linState)
			return maps.Equal(x.avail, y.avail) && maps.Equal(x.res, y.res)
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(linInput), output.(linOutput)
			var call string
			switch in.Op {
			case "reserve":
				call = fmt.Sprintf("reserve(%s, %s)", short(in.ID), strings.TrimSuffix(linesKey(in.Lines), ","))
			case "available":
				call = fmt.Sprintf("available(%s)", in.SKU)
			default:
				call = fmt.Sprintf("%s(%s)", in.Op, short(in.ID))
			}
			switch {
			case out.Kind != "":
				return call + " -> " + out.Kind
			case in.Op == "reserve":
				return call + " -> " + out.State.String()
			case in.Op == "available":
				return fmt.Sprintf("%s -> %d", call, out.N)
			}
			return call + " -> ok"
		},
		DescribeState: func(state any) string {
			s := state.(linState)
			keys := slices.Sorted(maps.Keys(s.avail))
			parts := make([]string, len(keys))
			for i, k := range keys {
				parts[i] = fmt.Sprintf("%s=%d", k, s.avail[k])
			}
			held := 0
			for _, r := range s.res {
				if r.state == inventory.Held {
					held++
				}
			}
			return fmt.Sprintf("%s held=%d", strings.Join(parts, " "), held)
		},
	}
	m := nm.ToModel()
	m.Partition = linPartition
	return m
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// linApply applies a call that succeeds, if it can change anything.
func linApply(s linState, in linInput) (linState, bool) {
	r, known := s.res[in.ID]
	switch in.Op {
	case "reserve":
		if known {
			return s, false
		}
		for _, l := range in.Lines {
			if s.avail[l.SKU] < l.Qty {
				return s, false
			}
		}
		next := s.clone()
		for _, l := range in.Lines {
			next.avail[l.SKU] -= l.Qty
		}
		next.res[in.ID] = linRes{lines: linesKey(in.Lines), state: inventory.Held}
		return next, true
	case "commit", "release":
		if !known || r.state != inventory.Held {
			return s, false
		}
		next := s.clone()
		if in.Op == "commit" {
			next.res[in.ID] = linRes{lines: r.lines, state: inventory.Committed}
			return next, true
		}
		next.res[in.ID] = linRes{lines: r.lines, state: inventory.Released}
		for _, l := range in.Lines {
			next.avail[l.SKU] += l.Qty
		}
		return next, true
	}
	return s, false
}

// linCheck steps s by a call whose outcome is known, or refuses it.
func linCheck(s linState, in linInput, out linOutput) (linState, bool) {
	if out.Kind == "contended" {
		return s, true // nothing changed
	}
	r, known := s.res[in.ID]
	switch in.Op {
	case "available":
		return s, out.Kind == "" && s.avail[in.SKU] == out.N
	case "reserve":
		switch out.Kind {
		case "":
			if known {
				return s, r.lines == linesKey(in.Lines) && r.state == out.State
			}
			if out.State != inventory.Held {
				return s, false
			}
			return linApply(s, in)
		case "insufficient":
			if known {
				return s, false // a replay returns the reservation
			}
			_, could := linApply(s, in)
			return s, !could
		}
	case "commit", "release":
		target := inventory.Committed
		if in.Op == "release" {
			target = inventory.Released
		}
		switch out.Kind {
		case "":
			if known && r.state == target {
				return s, true
			}
			return linApply(s, in)
		case "not_held":
			return s, known && r.state != inventory.Held && r.state != target
		case "not_found":
			return s, !known
		}
	}
	return s, false
}

// linPartition splits a history by connected SKUs: two SKUs are connected
// when one cart holds both. Commit and Release go with their reservation's
// SKUs, Available with its SKU.
func linPartition(history []porcupine.Operation) [][]porcupine.Operation {
	parent := map[string]string{}
	var find func(string) string
	find = func(x string) string {
		p, ok := parent[x]
		if !ok || p == x {
			parent[x] = x
			return x
		}
		root := find(p)
		parent[x] = root
		return root
	}
	for _, op := range history {
		in := op.Input.(linInput)
		for _, l := range in.Lines {
			parent[find(l.SKU)] = find(in.Lines[0].SKU)
		}
	}
	groups := map[string][]porcupine.Operation{}
	for _, op := range history {
		in := op.Input.(linInput)
		sku := in.SKU
		if len(in.Lines) > 0 {
			sku = in.Lines[0].SKU
		}
		root := find(sku)
		groups[root] = append(groups[root], op)
	}
	out := make([][]porcupine.Operation, 0, len(groups))
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		out = append(out, groups[k])
	}
	return out
}

// linRecorder collects the operations of a history.
type linRecorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

func (r *linRecorder) now() int64 { return int64(time.Since(r.start)) }

func (r *linRecorder) add(client int, in linInput, call int64, out linOutput) {
	ret := r.now()
	if out.uncertain() {
		ret = math.MaxInt64 // it may take effect at any point after the call
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// recordHistory runs cfg's clients against cfg.Strategy and returns the
// history. Every SKU is stocked first and read once more at the end, when
// all is quiet.
func recordHistory(ctx context.Context, cfg linConfig) ([]porcupine.Operation, error) {
	s := cfg.Strategy
	for _, sku := range cfg.SKUs {
		if err := s.SetStock(ctx, sku, cfg.Stock); err != nil {
			return nil, fmt.Errorf("strategytest: stock %s: %w", sku, err)
		}
	}
	rec := &linRecorder{start: time.Now()}
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }

	callCtx := func(rng *rand.Rand) (context.Context, context.CancelFunc) {
		if rng.Float64() < cfg.CancelPct {
			return context.WithTimeout(ctx, time.Duration(rng.Int64N(int64(2*time.Millisecond))))
		}
		return ctx, func() {}
	}
	available := func(client int, sku string) {
		call := rec.now()
		n, err := s.Available(ctx, sku)
		if err != nil {
			if ctx.Err() == nil {
				fail(fmt.Errorf("strategytest: available %s: %w", sku, err))
			}
			return
		}
		rec.add(client, linInput{Op: "available", SKU: sku}, call, linOutput{N: n})
	}
	// do makes one call, again with the same input while the outcome is
	// unknown (at most five times), recording each attempt.
	do := func(client int, rng *rand.Rand, in linInput) linOutput {
		for attempt := 0; ; attempt++ {
			cctx, cancel := callCtx(rng)
			call := rec.now()
			var out linOutput
			var err error
			switch in.Op {
			case "reserve":
				var r inventory.Reservation
				r, err = s.Reserve(cctx, inventory.Request{ID: in.ID, Lines: in.Lines, TTL: time.Hour})
				out.State = r.State
			case "commit":
				err = s.Commit(cctx, in.ID)
			case "release":
				err = s.Release(cctx, in.ID)
			}
			cancel()
			out.Kind = ErrorKind(err)
			if err != nil {
				out.State = 0
			}
			rec.add(client, in, call, out)
			if !out.uncertain() || attempt == 4 || ctx.Err() != nil {
				return out
			}
		}
	}

	var wg sync.WaitGroup
	for c := range cfg.Clients {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(c)))
		wg.Go(func() {
			var held, done []linInput // reservations of this client
			for range cfg.Ops {
				if ctx.Err() != nil {
					return
				}
				switch n := rng.IntN(10); {
				case n < 2 && len(held) > 0:
					i := rng.IntN(len(held))
					r := held[i]
					held = slices.Delete(held, i, i+1)
					op := "commit"
					if rng.IntN(2) == 0 {
						op = "release"
					}
					do(c, rng, linInput{Op: op, ID: r.ID, Lines: r.Lines})
					done = append(done, r)
				case n < 3 && len(held)+len(done) > 0:
					// The same request again: it must return the reservation as it is.
					all := append(slices.Clone(held), done...)
					do(c, rng, all[rng.IntN(len(all))])
				default:
					id, err := cfg.NewID(ctx)
					if err != nil {
						fail(fmt.Errorf("strategytest: new id: %w", err))
						return
					}
					in := linInput{Op: "reserve", ID: id, Lines: linCart(rng, cfg)}
					if out := do(c, rng, in); out.Kind == "" || out.uncertain() {
						held = append(held, in)
					}
				}
			}
			// Settle what is left, so the quiet reads see releases too.
			for _, r := range held {
				do(c, rng, linInput{Op: "release", ID: r.ID, Lines: r.Lines})
			}
		})
	}
	var readers sync.WaitGroup
	for c := range cfg.Readers {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(1000+c)))
		readers.Go(func() {
			for range cfg.Reads {
				if ctx.Err() != nil {
					return
				}
				available(cfg.Clients+c, cfg.SKUs[rng.IntN(len(cfg.SKUs))])
				time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	readers.Wait()
	for _, sku := range cfg.SKUs {
		available(cfg.Clients+cfg.Readers, sku)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sort.Slice(rec.ops, func(i, j int) bool { return rec.ops[i].Call < rec.ops[j].Call })
	return rec.ops, nil
}

// linCart returns the lines of a new cart: one line, or with probability
// cfg.TwoLines two lines of one group.
func linCart(rng *rand.Rand, cfg linConfig) []inventory.Line {
	if len(cfg.Groups) > 0 && rng.Float64() < cfg.TwoLines {
		g := cfg.Groups[rng.IntN(len(cfg.Groups))]
		p := rng.Perm(len(g))
		return []inventory.Line{{SKU: g[p[0]], Qty: 1 + rng.Int64N(2)}, {SKU: g[p[1]], Qty: 1 + rng.Int64N(2)}}
	}
	return []inventory.Line{{SKU: cfg.SKUs[rng.IntN(len(cfg.SKUs))], Qty: 1 + rng.Int64N(3)}}
}

// linResult is the verdict on one history.
type linResult struct {
	Result     porcupine.CheckResult
	Ops        int
	Partitions int
	Uncertain  int
	// Visualization is the HTML file porcupine drew the history in, when the
	// result is not Ok.
	Visualization string
	// Stuck describes, when the result is Illegal, the longest order of
	// calls porcupine found that the model accepts, its state at the end,
	// and the calls that could not come next.
	Stuck string
}

func (r linResult) String() string {
	s := fmt.Sprintf("linearizability: %s, %d operations (%d of unknown outcome) in %d partitions", r.Result, r.Ops, r.Uncertain, r.Partitions)
	if r.Visualization != "" {
		s += "; history drawn in " + r.Visualization
	}
	if r.Stuck != "" {
		s += "\n" + r.Stuck
	}
	return s
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// checkHistory checks history against the model of the contract for skus
// stocked with stock each. When the result is not Ok it writes porcupine's
// visualisation to a file named after name, in the system's temporary
// directory, and names the file in the result.
func checkHistory(name string, skus []string, stock int64, history []porcupine.Operation, timeout time.Duration) (linResult, error) {
	model := linModel(skus, stock)
	res, info := porcupine.CheckOperationsVerbose(model, history, timeout)
	out := linResult{Result: res, Ops: len(history), Partitions: len(linPartition(history))}
	for _, op := range history {
		if op.Output.(linOutput).uncertain() {
			out.Uncertain++
		}
	}
	if res == porcupine.Ok {
		return out, nil
	}
	if res == porcupine.Illegal {
		out.Stuck = stuck(model, info, history)
	}
	f, err := os.CreateTemp("", "linearizability-"+unsafeName.ReplaceAllString(name, "_")+"-*.html")
	if err != nil {
		return out, err
	}
	defer f.Close()
	if err := porcupine.Visualize(model, info, f); err != nil {
		return out, errors.Join(err, os.Remove(f.Name()))
	}
	out.Visualization, _ = filepath.Abs(f.Name())
	return out, nil
}

// stuck describes where the check of the first illegal partition got
// stuck: the tail of the longest accepted order, the model's state after
// it, and the calls left that had begun before any left call returned.
func stuck(model porcupine.Model, info porcupine.LinearizationInfo, history []porcupine.Operation) string {
	parts := linPartition(history)
	for p, lins := range info.PartialLinearizationsOperations() {
		if p >= len(parts) || len(lins) == 0 || len(lins[0]) == len(parts[p]) {
			continue
		}
		longest := lins[0]
		for _, l := range lins {
			if len(l) > len(longest) {
				longest = l
			}
		}
		state := model.Init()
		for _, op := range longest {
			_, state = model.Step(state, op.Input, op.Output)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "partition %d: %d of %d calls put in order; the last of them:\n", p, len(longest), len(parts[p]))
		for _, op := range longest[max(0, len(longest)-6):] {
			fmt.Fprintf(&b, "  client %d [%d, %s] %s\n", op.ClientId, op.Call, linTime(op.Return), model.DescribeOperation(op.Input, op.Output))
		}
		fmt.Fprintf(&b, "state then: %s\nnone of these can come next:\n", model.DescribeState(state))
		key := func(op porcupine.Operation) [2]int64 { return [2]int64{int64(op.ClientId), op.Call} }
		in := map[[2]int64]bool{}
		for _, op := range longest {
			in[key(op)] = true
		}
		var left []porcupine.Operation
		for _, op := range parts[p] {
			if !in[key(op)] {
				left = append(left, op)
			}
		}
		minReturn := int64(math.MaxInt64)
		for _, op := range left {
			minReturn = min(minReturn, op.Return)
		}
		for _, op := range left {
			if op.Call <= minReturn {
				fmt.Fprintf(&b, "  client %d [%d, %s] %s\n", op.ClientId, op.Call, linTime(op.Return), model.DescribeOperation(op.Input, op.Output))
			}
		}
		return b.String()
	}
	return ""
}

func linTime(t int64) string {
	if t == math.MaxInt64 {
		return "unknown"
	}
	return fmt.Sprint(t)
}
