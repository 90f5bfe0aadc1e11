package strategytest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
)

// featureCase is one behaviour of the features a strategy may offer or
// refuse: limits per buyer, partial carts, Extend, Levels, backorders.
// check returns nil when s keeps it, else an error that says what broke, so
// that the suite's own tests can run it on strategies that are wrong on
// purpose; logf says what s does not offer.
type featureCase struct {
	name  string
	check func(ctx context.Context, s *suite, logf func(format string, args ...any)) error
}

var featureCases = []featureCase{
	{"UnofferedFeaturesAreRefusedCleanly", func(ctx context.Context, s *suite, logf func(string, ...any)) error {
		if err := s.setStock(ctx, map[string]int64{"a": 5}); err != nil {
			return err
		}
		var errs []error
		for _, f := range []struct {
			name string
			req  func(*inventory.Request)
		}{
			{"Request.Buyer", func(r *inventory.Request) { r.Buyer = "buyer-1" }},
			{"Request.Partial", func(r *inventory.Request) { r.Partial = true }},
		} {
			id, err := s.NewID(ctx)
			if err != nil {
				return err
			}
			req := inventory.Request{ID: id, Lines: []inventory.Line{line("a", 1)}}
			f.req(&req)
			if _, err := s.Strategy.Reserve(ctx, req); !errors.Is(err, inventory.ErrUnsupported) {
				if err == nil {
					err = s.Strategy.Release(ctx, id)
				}
				errs = append(errs, wrapf(err, "Reserve with %s", f.name))
				continue
			}
			logf("%s is not offered", f.name)
			errs = append(errs, s.checkAvailable(ctx, map[string]int64{"a": 5}), s.checkAbsent(ctx, id))
		}
		for _, f := range []struct {
			name string
			opts inventory.StockOptions
		}{
			{"StockOptions.Limit", inventory.StockOptions{Limit: 2}},
			{"StockOptions.Backorder", inventory.StockOptions{Backorder: 2}},
		} {
			err := inventory.SetStockWith(ctx, s.Strategy, "a", 7, f.opts)
			if errors.Is(err, inventory.ErrUnsupported) {
				logf("%s is not offered", f.name)
				errs = append(errs, s.checkAvailable(ctx, map[string]int64{"a": 5}))
				continue
			}
			errs = append(errs, wrapf(err, "SetStockWith(%+v)", f.opts), s.setStock(ctx, map[string]int64{"a": 5}))
		}
		if _, err := inventory.StockLevels(ctx, s.Strategy, "a"); errors.Is(err, inventory.ErrUnsupported) {
			logf("Levels is not offered")
		} else {
			errs = append(errs, wrapf(err, "Levels"))
		}
		id, err := s.NewID(ctx)
		if err != nil {
			return err
		}
		held, err := s.Strategy.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{line("a", 1)}, TTL: s.ttl()})
		if err != nil {
			return fmt.Errorf("Reserve: %w", err)
		}
		if _, err := inventory.Extend(ctx, s.Strategy, id, 2*s.ttl()); errors.Is(err, inventory.ErrUnsupported) {
			logf("Extend is not offered")
			got, err := s.Strategy.Lookup(ctx, id)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("Lookup(%q): %w", id, err))
			case !got.ExpiresAt.Equal(held.ExpiresAt) && got.ExpiresAt.Sub(held.ExpiresAt).Abs() > timeSlack:
				errs = append(errs, fmt.Errorf("a refused Extend moved the expiry from %v to %v", held.ExpiresAt, got.ExpiresAt))
			}
		} else {
			errs = append(errs, wrapf(err, "Extend"))
		}
		return errors.Join(errs...)
	}},
}

// timeSlack is how far two readings of one instant may differ by a store's
// precision (microseconds in PostgreSQL, milliseconds in Redis).
const timeSlack = 2 * time.Millisecond

// wrapf returns nil when err is nil, else err prefixed with what was done.
func wrapf(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

// checkAbsent checks that the store holds no reservation under id.
func (s *suite) checkAbsent(ctx context.Context, id string) error {
	if r, err := s.Strategy.Lookup(ctx, id); !errors.Is(err, inventory.ErrNotFound) {
		return fmt.Errorf("Lookup(%q) of a refused request: got %+v, %v, want ErrNotFound", id, r, err)
	}
	return nil
}

// featureBehaviours are the feature cases as behaviours of RunConformance.
func featureBehaviours() []behaviour {
	out := make([]behaviour, len(featureCases))
	for i, c := range featureCases {
		out[i] = behaviour{c.name, func(ctx context.Context, t *testing.T, s *suite) {
			require.NoError(t, c.check(ctx, s, t.Logf))
		}}
	}
	return out
}
