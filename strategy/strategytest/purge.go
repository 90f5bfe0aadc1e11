package strategytest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
)

// PurgeRetention is the retention the purge checks give the strategy: long
// enough that the clock the hammer advances never makes its own
// reservations due for purging.
const PurgeRetention = 1000 * time.Hour

// PurgeHarness is a strategy with a retention, for the purge checks.
type PurgeHarness struct {
	// Strategy is the strategy under test, fresh, with no SKUs, and made
	// with Options.Retention set to PurgeRetention.
	Strategy inventory.Strategy
	// Purger purges Strategy's settled reservations: usually Strategy
	// itself.
	Purger inventory.Purger
	// Advance moves the strategy's clock forward. Required.
	Advance func(d time.Duration)
}

// RunPurge runs the purge checks on strategies made by newHarness, one
// subtest each: CheckPurgeRetention and CheckPurgeConcurrent.
func RunPurge(t *testing.T, newHarness func(ctx context.Context, t *testing.T) *PurgeHarness) {
	t.Helper()
	for name, check := range map[string]func(context.Context, *PurgeHarness) error{
		"PurgeKeepsHeldAndTheRetention": CheckPurgeRetention,
		"ConcurrentPurgersDuringHammer": CheckPurgeConcurrent,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			h := newHarness(ctx, t)
			require.NoError(t, check(ctx, h))
		})
	}
}

// drain calls Purge with limit until a batch comes back short, and returns
// the sum.
func drain(ctx context.Context, p inventory.Purger, limit int) (int, error) {
	total := 0
	for {
		n, err := p.Purge(ctx, limit)
		total += n
		if err != nil {
			return total, fmt.Errorf("Purge: %w", err)
		}
		if n < limit {
			return total, nil
		}
	}
}

// CheckPurgeRetention checks, on a manual clock, that Purge deletes exactly
// the settled reservations (committed, released, expired, cancelled) whose
// retention has passed; that it keeps a Held one whatever its age, and every
// one inside the retention, on which Reserve stays idempotent; that it moves
// no unit; and that a purged ID is unknown. It returns the first violation.
func CheckPurgeRetention(ctx context.Context, h *PurgeHarness) error {
	s := newSuite(&Harness{Strategy: h.Strategy, Advance: h.Advance})
	if err := s.setStock(ctx, map[string]int64{"p-a": 100, "p-b": 100}); err != nil {
		return err
	}
	if n, err := h.Purger.Purge(ctx, 0); !errors.Is(err, inventory.ErrInvalidRequest) {
		return fmt.Errorf("Purge with limit 0: got (%d, %v), want inventory.ErrInvalidRequest", n, err)
	}
	reserve := func(ttl time.Duration, lines ...inventory.Line) (inventory.Request, error) {
		id, err := s.NewID(ctx)
		if err != nil {
			return inventory.Request{}, err
		}
		req := inventory.Request{ID: id, Lines: lines, TTL: ttl}
		if _, err := s.Strategy.Reserve(ctx, req); err != nil {
			return req, fmt.Errorf("Reserve: %w", err)
		}
		return req, nil
	}
	// Settled ones, each in its own way, with TTLs shorter than the slack
	// given below: a strategy may count a commit or release as settled at
	// the hold's expiry.
	committed, err := reserve(time.Minute, line("p-a", 2))
	if err != nil {
		return err
	}
	if err := s.Strategy.Commit(ctx, committed.ID); err != nil {
		return fmt.Errorf("Commit: %w", err)
	}
	released, err := reserve(time.Minute, line("p-b", 1))
	if err != nil {
		return err
	}
	if err := s.Strategy.Release(ctx, released.ID); err != nil {
		return fmt.Errorf("Release: %w", err)
	}
	expired, err := reserve(time.Minute, line("p-a", 1))
	if err != nil {
		return err
	}
	held, err := reserve(10*PurgeRetention, line("p-a", 3), line("p-b", 1))
	if err != nil {
		return err
	}
	h.Advance(2 * time.Minute)
	if _, err := s.Strategy.ExpireDue(ctx, 10); err != nil {
		return fmt.Errorf("ExpireDue: %w", err)
	}
	cancelled, err := s.NewID(ctx)
	if err != nil {
		return err
	}
	if err := s.Strategy.Cancel(ctx, cancelled); err != nil {
		return fmt.Errorf("Cancel: %w", err)
	}
	want := map[string]int64{"p-a": 100 - 2 - 3, "p-b": 100 - 1}

	// Inside the retention: nothing goes, and a repeated Reserve is
	// answered by its reservation.
	h.Advance(PurgeRetention / 2)
	if n, err := drain(ctx, h.Purger, 2); err != nil || n != 0 {
		return fmt.Errorf("Purge inside the retention: purged %d (%v), want 0", n, err)
	}
	for id, st := range map[string]inventory.State{committed.ID: inventory.Committed, released.ID: inventory.Released,
		expired.ID: inventory.Expired, cancelled: inventory.Released, held.ID: inventory.Held} {
		if err := s.checkState(ctx, id, st); err != nil {
			return fmt.Errorf("inside the retention: %w", err)
		}
	}
	if r, err := s.Strategy.Reserve(ctx, committed); err != nil || r.State != inventory.Committed {
		return fmt.Errorf("Reserve again inside the retention: got %v, %v; want the committed reservation", r.State, err)
	}
	if err := s.checkAvailable(ctx, want); err != nil {
		return fmt.Errorf("after a repeated Reserve inside the retention: %w", err)
	}
	recent, err := reserve(time.Minute, line("p-b", 2))
	if err != nil {
		return err
	}
	if err := s.Strategy.Commit(ctx, recent.ID); err != nil {
		return fmt.Errorf("Commit: %w", err)
	}
	want["p-b"] -= 2

	// Past the retention of the first four, not of the recent one.
	h.Advance(PurgeRetention/2 + 10*time.Minute)
	n, err := drain(ctx, h.Purger, 2)
	if err != nil {
		return err
	}
	if n != 4 {
		return fmt.Errorf("Purge past the retention: purged %d, want 4 (committed, released, expired, cancelled)", n)
	}
	for _, id := range []string{committed.ID, released.ID, expired.ID, cancelled} {
		if _, err := s.Strategy.Lookup(ctx, id); !errors.Is(err, inventory.ErrNotFound) {
			return fmt.Errorf("Lookup(%q) of a purged reservation: %v, want inventory.ErrNotFound", id, err)
		}
	}
	if err := s.checkState(ctx, held.ID, inventory.Held); err != nil {
		return fmt.Errorf("a held reservation older than the retention: %w", err)
	}
	if err := s.checkState(ctx, recent.ID, inventory.Committed); err != nil {
		return fmt.Errorf("a reservation inside the retention: %w", err)
	}
	if err := s.checkAvailable(ctx, want); err != nil {
		return fmt.Errorf("after the purge (it moves no unit): %w", err)
	}
	if r, err := s.Strategy.Reserve(ctx, held); err != nil || r.State != inventory.Held {
		return fmt.Errorf("Reserve again of the old held reservation: got %v, %v", r.State, err)
	}
	if err := s.checkAvailable(ctx, want); err != nil {
		return fmt.Errorf("after a repeated Reserve of the old hold: %w", err)
	}
	return nil
}

// CheckPurgeConcurrent records settled reservations and old holds, lets
// their retention pass, and runs purgers on several goroutines while the
// hammer buys, settles and expires on other SKUs. It checks that the
// purgers together purged exactly the settled ones (none twice, none
// missed), left every hold, and that the hammer's invariant holds. It
// returns the first violation.
func CheckPurgeConcurrent(ctx context.Context, h *PurgeHarness) error {
	const settled, holds, purgers, limit = 120, 12, 4, 7
	s := newSuite(&Harness{Strategy: h.Strategy, Advance: h.Advance})
	if err := s.setStock(ctx, map[string]int64{"q-a": 10 * (settled + holds)}); err != nil {
		return err
	}
	var old, held []string
	for i := range settled + holds {
		id, err := s.NewID(ctx)
		if err != nil {
			return err
		}
		if i%4 == 3 && i < settled {
			if err := s.Strategy.Cancel(ctx, id); err != nil {
				return fmt.Errorf("Cancel: %w", err)
			}
			old = append(old, id)
			continue
		}
		ttl := time.Minute
		if i >= settled {
			ttl = 10 * PurgeRetention
		}
		if _, err := s.Strategy.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("q-a", 1+int64(i%3))}, TTL: ttl}); err != nil {
			return fmt.Errorf("Reserve: %w", err)
		}
		switch {
		case i >= settled:
			held = append(held, id)
			continue
		case i%4 == 0:
			err = s.Strategy.Commit(ctx, id)
		case i%4 == 1:
			err = s.Strategy.Release(ctx, id)
		}
		if err != nil {
			return fmt.Errorf("settle: %w", err)
		}
		old = append(old, id)
	}
	h.Advance(2 * time.Minute)
	if _, err := drainExpire(ctx, s.Strategy); err != nil { // the i%4 == 2 holds
		return err
	}
	h.Advance(PurgeRetention + time.Hour)

	var purged atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, purgers)
	for range purgers {
		wg.Go(func() {
			for {
				n, err := h.Purger.Purge(ctx, limit)
				purged.Add(int64(n))
				if err != nil {
					errs <- fmt.Errorf("Purge during the hammer: %w", err)
					return
				}
				select {
				case <-done:
					return
				default:
				}
			}
		})
	}
	rep, herr := Hammer(ctx, HammerConfig{Strategy: s.Strategy, Advance: h.Advance, Workers: 16, SKUs: 3, MaxLines: 2, OpsPerWorker: 25})
	close(done)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	if herr != nil {
		return fmt.Errorf("hammer: %w", herr)
	}
	if !rep.OK() {
		return fmt.Errorf("hammer beside the purgers: %s", rep)
	}
	n, err := drain(ctx, h.Purger, limit)
	if err != nil {
		return err
	}
	if total := purged.Load() + int64(n); total != settled {
		return fmt.Errorf("purgers purged %d in all (%d during the hammer), want the %d settled", total, purged.Load(), settled)
	}
	for _, id := range old {
		if _, err := s.Strategy.Lookup(ctx, id); !errors.Is(err, inventory.ErrNotFound) {
			return fmt.Errorf("Lookup(%q) after the purge: %v, want inventory.ErrNotFound", id, err)
		}
	}
	for _, id := range held {
		if err := s.checkState(ctx, id, inventory.Held); err != nil {
			return fmt.Errorf("an old hold after the purge: %w", err)
		}
	}
	return nil
}

// drainExpire calls ExpireDue until a batch comes back short.
func drainExpire(ctx context.Context, e inventory.Expirer) (int, error) {
	total := 0
	for {
		n, err := e.ExpireDue(ctx, 100)
		total += n
		if err != nil {
			return total, fmt.Errorf("ExpireDue: %w", err)
		}
		if n < 100 {
			return total, nil
		}
	}
}
