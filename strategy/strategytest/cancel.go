package strategytest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
)

// cancelCase is one behaviour of Cancel. check returns nil when s keeps it,
// else an error that says what broke, so that the suite's own tests can run
// it on strategies that are wrong on purpose and see it fail.
type cancelCase struct {
	name  string
	check func(ctx context.Context, s *suite) error
}

// cancelRaces is how many times CancelRacingReserveEndsOneWay races a
// Cancel against a Reserve of one ID.
const cancelRaces = 24

var cancelCases = []cancelCase{
	{"CancelReleasesAHold", func(ctx context.Context, s *suite) error {
		if err := s.setStock(ctx, map[string]int64{"a": 10, "b": 3}); err != nil {
			return err
		}
		id, err := s.NewID(ctx)
		if err != nil {
			return err
		}
		if _, err := s.Strategy.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("a", 4), line("b", 1)}}); err != nil {
			return fmt.Errorf("Reserve: %w", err)
		}
		if err := s.Strategy.Cancel(ctx, id); err != nil {
			return fmt.Errorf("Cancel of a held reservation: %w", err)
		}
		if err := s.checkState(ctx, id, inventory.Released); err != nil {
			return err
		}
		return s.checkAvailable(ctx, map[string]int64{"a": 10, "b": 3})
	}},
	{"CancelOfUnseenIDRefusesLateReserve", func(ctx context.Context, s *suite) error {
		if err := s.setStock(ctx, map[string]int64{"a": 10}); err != nil {
			return err
		}
		id, err := s.NewID(ctx)
		if err != nil {
			return err
		}
		if err := s.Strategy.Cancel(ctx, id); err != nil {
			return fmt.Errorf("Cancel of an ID never reserved: %w", err)
		}
		for i := range 2 {
			res, err := s.Strategy.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("a", 2)}})
			if !errors.Is(err, inventory.ErrCancelled) {
				return fmt.Errorf("Reserve %d of a cancelled ID: got %+v, %v; want an error that errors.Is ErrCancelled", i+1, res, err)
			}
		}
		if err := s.Strategy.Commit(ctx, id); !errors.Is(err, inventory.ErrNotHeld) {
			return fmt.Errorf("Commit of a cancelled ID: got %v, want ErrNotHeld", err)
		}
		if err := s.checkState(ctx, id, inventory.Released); err != nil {
			return err
		}
		return s.checkAvailable(ctx, map[string]int64{"a": 10})
	}},
	{"CancelIsIdempotent", func(ctx context.Context, s *suite) error {
		if err := s.setStock(ctx, map[string]int64{"a": 10}); err != nil {
			return err
		}
		held, err := s.NewID(ctx)
		if err != nil {
			return err
		}
		unseen, err := s.NewID(ctx)
		if err != nil {
			return err
		}
		if _, err := s.Strategy.Reserve(ctx, inventory.Request{ID: held, Lines: []inventory.Line{line("a", 4)}}); err != nil {
			return fmt.Errorf("Reserve: %w", err)
		}
		for i := range 3 {
			if err := s.Strategy.Cancel(ctx, held); err != nil {
				return fmt.Errorf("Cancel %d of a held reservation: %w", i+1, err)
			}
			if err := s.Strategy.Cancel(ctx, unseen); err != nil {
				return fmt.Errorf("Cancel %d of an unseen ID: %w", i+1, err)
			}
		}
		if err := s.Strategy.Release(ctx, held); err != nil {
			return fmt.Errorf("Release after Cancel: %w", err)
		}
		if err := s.checkState(ctx, held, inventory.Released); err != nil {
			return err
		}
		return s.checkAvailable(ctx, map[string]int64{"a": 10})
	}},
	{"CancelOfExpiredHoldIsNil", func(ctx context.Context, s *suite) error {
		if err := s.setStock(ctx, map[string]int64{"a": 10}); err != nil {
			return err
		}
		id, err := s.NewID(ctx)
		if err != nil {
			return err
		}
		if _, err := s.Strategy.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("a", 4)}, TTL: s.ttl()}); err != nil {
			return fmt.Errorf("Reserve: %w", err)
		}
		s.passTTL()
		for i := range 2 {
			if err := s.Strategy.Cancel(ctx, id); err != nil {
				return fmt.Errorf("Cancel %d of an expired hold: %w", i+1, err)
			}
		}
		if _, err := s.Strategy.ExpireDue(ctx, 100); err != nil {
			return fmt.Errorf("ExpireDue: %w", err)
		}
		return s.checkAvailable(ctx, map[string]int64{"a": 10})
	}},
	{"CancelAfterCommitFails", func(ctx context.Context, s *suite) error {
		if err := s.setStock(ctx, map[string]int64{"a": 10}); err != nil {
			return err
		}
		id, err := s.NewID(ctx)
		if err != nil {
			return err
		}
		if _, err := s.Strategy.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("a", 4)}}); err != nil {
			return fmt.Errorf("Reserve: %w", err)
		}
		if err := s.Strategy.Commit(ctx, id); err != nil {
			return fmt.Errorf("Commit: %w", err)
		}
		err = s.Strategy.Cancel(ctx, id)
		var se *inventory.StateError
		if !errors.Is(err, inventory.ErrNotHeld) || !errors.As(err, &se) || se.Op != "cancel" || se.State != inventory.Committed {
			return fmt.Errorf("Cancel of a committed reservation: got %v, want a *StateError with Op cancel and State committed", err)
		}
		if err := s.checkState(ctx, id, inventory.Committed); err != nil {
			return err
		}
		return s.checkAvailable(ctx, map[string]int64{"a": 6})
	}},
	{"CancelRacingReserveEndsOneWay", func(ctx context.Context, s *suite) error {
		// Two lines, so that strategies that take a cart's SKUs one by one
		// are caught half way.
		if err := s.setStock(ctx, map[string]int64{"a": 100, "b": 100}); err != nil {
			return err
		}
		for i := range cancelRaces {
			id, err := s.NewID(ctx)
			if err != nil {
				return err
			}
			req := inventory.Request{ID: id, Lines: []inventory.Line{line("a", 1), line("b", 2)}}
			var rerr, cerr error
			var wg sync.WaitGroup
			start := make(chan struct{})
			wg.Go(func() { <-start; _, rerr = s.Strategy.Reserve(ctx, req) })
			wg.Go(func() { <-start; cerr = s.Strategy.Cancel(ctx, id) })
			close(start)
			wg.Wait()
			if cerr != nil {
				return fmt.Errorf("race %d: Cancel: %w", i, cerr)
			}
			// nil: the Reserve came first and the Cancel released it.
			if rerr != nil && !errors.Is(rerr, inventory.ErrCancelled) {
				return fmt.Errorf("race %d: Reserve: got %v, want success or ErrCancelled", i, rerr)
			}
			// Either way the ID is cancelled now: a retry takes nothing.
			res, err := s.Strategy.Reserve(ctx, req)
			if err == nil && res.State == inventory.Held {
				return fmt.Errorf("race %d: a Reserve after the Cancel holds units under the cancelled ID", i)
			}
			if err != nil && !errors.Is(err, inventory.ErrCancelled) {
				return fmt.Errorf("race %d: Reserve after the Cancel: got %v, want the released reservation or ErrCancelled", i, err)
			}
			if err := s.checkAvailable(ctx, map[string]int64{"a": 100, "b": 100}); err != nil {
				return fmt.Errorf("race %d (reserve %v, cancel %v): %w", i, rerr, cerr, err)
			}
		}
		return nil
	}},
}

func (s *suite) setStock(ctx context.Context, levels map[string]int64) error {
	for sku, n := range levels {
		if err := s.Strategy.SetStock(ctx, sku, n); err != nil {
			return fmt.Errorf("SetStock(%q, %d): %w", sku, n, err)
		}
	}
	return nil
}

func (s *suite) checkAvailable(ctx context.Context, want map[string]int64) error {
	var errs []error
	for sku, n := range want {
		got, err := s.Strategy.Available(ctx, sku)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("Available(%q): %w", sku, err))
		case got != n:
			errs = append(errs, fmt.Errorf("available units of %q: got %d, want %d", sku, got, n))
		}
	}
	return errors.Join(errs...)
}

func (s *suite) checkState(ctx context.Context, id string, want inventory.State) error {
	r, err := s.Strategy.Lookup(ctx, id)
	switch {
	case err != nil:
		return fmt.Errorf("Lookup(%q): %w", id, err)
	case r.State != want:
		return fmt.Errorf("state of %q: got %s, want %s", id, r.State, want)
	}
	return nil
}

// cancelBehaviours are the cancel cases as behaviours of RunConformance.
func cancelBehaviours() []behaviour {
	out := make([]behaviour, len(cancelCases))
	for i, c := range cancelCases {
		out[i] = behaviour{c.name, func(ctx context.Context, t *testing.T, s *suite) {
			require.NoError(t, c.check(ctx, s))
		}}
	}
	return out
}
