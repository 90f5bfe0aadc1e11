package redisstock

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/testsvc"
)

// BenchmarkScriptBatch times the script's own work: one coalesced call
// ("multi") of n Reserves of one unit of the hot SKU, each a new ID, then
// one of their n Commits (settle1, as a Commit in the process that
// reserved them sends it), then the same with Releases. The metrics are
// the wall time of each call divided by its operations: Redis's time per
// operation, and the round trip shared by n; and the time Redis counts
// for the call (INFO commandstats, evalsha's usec, read before and after:
// other clients' scripts in between count too) divided by its operations.
func BenchmarkScriptBatch(b *testing.B) {
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("ops=%d", n), func(b *testing.B) { benchScriptBatch(b, n) })
	}
}

func benchScriptBatch(b *testing.B, n int) {
	ctx := b.Context()
	r, err := New(testsvc.Postgres(b), testsvc.Redis(b), &Options{Schema: testsvc.Schema(b), KeyPrefix: testsvc.RedisPrefix(b)})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	if err := r.Load(ctx); err != nil {
		b.Fatal(err)
	}
	if err := r.SetStock(ctx, "hot", inventory.MaxStock); err != nil {
		b.Fatal(err)
	}
	lines := []inventory.Line{{SKU: "hot", Qty: 1}}
	var reserve, commit, release, sreserve, scommit, srelease time.Duration
	seq := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, to := range []int{int(inventory.Committed), int(inventory.Released)} {
			ids := make([]string, n)
			rv := make([]*call, n)
			st := make([]*call, n)
			now := r.clock()
			for i := range ids {
				seq++
				ids[i] = "id" + strconv.Itoa(seq)
				id := ids[i]
				keys := []string{r.marker(0), r.stream(0), r.recordKey(id), r.dueKey(0), r.holdKey(0, id), r.stockKey("hot")}
				rv[i] = &call{keys: keys, args: lineArgs([]any{"reserve", id, micros(now), micros(now.Add(time.Hour))}, lines)}
				st[i] = &call{keys: keys, args: lineArgs([]any{"settle1", id, to, now.UnixMicro()}, lines)}
			}
			d, sd := timeBatch(ctx, b, r, rv, "new")
			reserve, sreserve = reserve+d, sreserve+sd
			d, sd = timeBatch(ctx, b, r, st, "sell+", "give+")
			if to == int(inventory.Committed) {
				commit, scommit = commit+d, scommit+sd
			} else {
				release, srelease = release+d, srelease+sd
			}
		}
	}
	b.StopTimer()
	per := func(d time.Duration, calls int) float64 {
		return float64(d.Microseconds()) / float64(calls)
	}
	b.ReportMetric(per(reserve, 2*b.N*n), "µs/reserve")
	b.ReportMetric(per(commit, b.N*n), "µs/commit")
	b.ReportMetric(per(release, b.N*n), "µs/release")
	b.ReportMetric(per(sreserve, 2*b.N*n), "redis-µs/reserve")
	b.ReportMetric(per(scommit, b.N*n), "redis-µs/commit")
	b.ReportMetric(per(srelease, b.N*n), "redis-µs/release")
}

// timeBatch sends calls as one script call (one alone when there is one)
// and returns its wall time and the time Redis counted, failing b unless every reply's kind is one of
// want.
func timeBatch(ctx context.Context, b *testing.B, r *Reserver, calls []*call, want ...string) (time.Duration, time.Duration) {
	b.Helper()
	before := evalshaUsec(ctx, b, r)
	var d time.Duration
	if len(calls) == 1 {
		start := time.Now()
		calls[0].rep, calls[0].err = r.exec(ctx, calls[0].keys, calls[0].args...)
		d = time.Since(start)
	} else {
		keys, args := []string{}, []any{"multi", len(calls)}
		for _, c := range calls {
			keys = append(keys, c.keys...)
			args = append(args, len(c.keys), len(c.args))
			args = append(args, c.args...)
		}
		start := time.Now()
		v, err := r.eval(ctx, true, keys, args)
		d = time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		for i, x := range v.([]any) {
			calls[i].rep, calls[i].err = strs(x, keys[0])
		}
	}
	sd := time.Duration(evalshaUsec(ctx, b, r)-before) * time.Microsecond
	for _, c := range calls {
		if c.err != nil {
			b.Fatal(c.err)
		}
		ok := false
		for _, w := range want {
			ok = ok || c.rep[0] == w
		}
		if !ok {
			b.Fatalf("reply %q, want one of %q", c.rep, want)
		}
	}
	return d, sd
}

// evalshaUsec returns the microseconds Redis counted for EVALSHA so far.
func evalshaUsec(ctx context.Context, b testing.TB, r *Reserver) int64 {
	b.Helper()
	info, err := r.rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(l, "cmdstat_evalsha:"); ok {
			for _, f := range strings.Split(strings.TrimSpace(rest), ",") {
				if v, ok := strings.CutPrefix(f, "usec="); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					return n
				}
			}
		}
	}
	return 0
}
