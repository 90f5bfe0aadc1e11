package token_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/token"
)

func lines(sku string, qty int64) []inventory.Line {
	return []inventory.Line{{SKU: sku, Qty: qty}}
}

// countingStore counts the calls that reach a Store and can make them fail.
type countingStore struct {
	token.Store
	claims, unclaims atomic.Int64
	claimErr         error
	claimDelay       time.Duration // before the claim reaches the store
}

func (s *countingStore) Claim(ctx context.Context, tok, nonce string, ttl time.Duration) (bool, error) {
	s.claims.Add(1)
	if s.claimErr != nil {
		return false, s.claimErr
	}
	time.Sleep(s.claimDelay)
	return s.Store.Claim(ctx, tok, nonce, ttl)
}

func (s *countingStore) Unclaim(ctx context.Context, tok, nonce string) error {
	s.unclaims.Add(1)
	return s.Store.Unclaim(ctx, tok, nonce)
}

func TestMemoryStore(t *testing.T) {
	testStore(t, func(*testing.T) token.Store { return token.NewMemoryStore() })
}

func TestConcurrentSubmissionsOfOneTokenReachInnerOnce(t *testing.T) {
	testSubmittedOnce(t, token.NewMemoryStore())
}

func TestBadTokensAreRejectedBeforeAnythingElse(t *testing.T) {
	store := &countingStore{Store: token.NewMemoryStore()}
	s := newSetup(t, store, nil)
	s.stock(t, "sku", 10)
	tok := s.issue(t)

	for name, bad := range badTokens(t, tok) {
		_, err := s.r.Reserve(t.Context(), inventory.Request{ID: bad, Lines: lines("sku", 1)})
		assert.ErrorIs(t, err, token.ErrInvalidToken, name)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest, name)
	}

	s.clock.Advance(30 * time.Minute)
	_, err := s.r.Reserve(t.Context(), inventory.Request{ID: tok, Lines: lines("sku", 1)})
	assert.ErrorIs(t, err, token.ErrExpiredToken, "expired")
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest, "expired")

	// A bad token comes first even when the rest of the request is bad too
	// or the context is done.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = s.r.Reserve(ctx, inventory.Request{ID: "forged", Lines: nil})
	assert.ErrorIs(t, err, token.ErrInvalidToken)

	assert.Zero(t, s.inner.reserves.Load(), "inner Reserve calls")
	assert.Zero(t, store.claims.Load(), "store calls")
	s.assertAvailable(t, "sku", 10)
}

func TestInvalidRequestWithGenuineTokenChangesNothing(t *testing.T) {
	store := &countingStore{Store: token.NewMemoryStore()}
	s := newSetup(t, store, nil)
	_, err := s.r.Reserve(t.Context(), inventory.Request{ID: s.issue(t), Lines: lines("sku", 0)})
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
	assert.NotErrorIs(t, err, token.ErrInvalidToken)
	assert.Zero(t, s.inner.reserves.Load())
	assert.Zero(t, store.claims.Load())
}

func TestCancelledContextChangesNothing(t *testing.T) {
	store := &countingStore{Store: token.NewMemoryStore()}
	s := newSetup(t, store, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.r.Reserve(ctx, inventory.Request{ID: s.issue(t), Lines: lines("sku", 1)})
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, s.inner.reserves.Load())
	assert.Zero(t, store.claims.Load())
}

func TestDuplicateGetsFirstReservationWithoutTouchingStock(t *testing.T) {
	s := newSetup(t, token.NewMemoryStore(), nil)
	s.stock(t, "sku", 10)
	tok := s.issue(t)
	req := inventory.Request{ID: tok, Lines: lines("sku", 4)}

	first, err := s.r.Reserve(t.Context(), req)
	require.NoError(t, err)
	s.assertAvailable(t, "sku", 6)

	again, err := s.r.Reserve(t.Context(), req)
	require.NoError(t, err)
	assert.Equal(t, first, again)

	// After a commit the duplicate sees the reservation as it is now.
	require.NoError(t, s.r.Commit(t.Context(), tok))
	again, err = s.r.Reserve(t.Context(), req)
	require.NoError(t, err)
	assert.Equal(t, inventory.Committed, again.State)

	assert.Equal(t, int64(1), s.inner.reserves.Load(), "inner Reserve calls")
	s.assertAvailable(t, "sku", 6)
}

func TestDuplicateWithOtherLinesConflicts(t *testing.T) {
	s := newSetup(t, token.NewMemoryStore(), nil)
	s.stock(t, "sku", 10)
	tok := s.issue(t)
	_, err := s.r.Reserve(t.Context(), inventory.Request{ID: tok, Lines: lines("sku", 1)})
	require.NoError(t, err)
	_, err = s.r.Reserve(t.Context(), inventory.Request{ID: tok, Lines: lines("sku", 2)})
	assert.ErrorIs(t, err, inventory.ErrConflict)
	assert.Equal(t, int64(1), s.inner.reserves.Load())
	s.assertAvailable(t, "sku", 9)
}

func TestDuplicateWhileFirstInFlightGetsInProgressAfterWaiting(t *testing.T) {
	s := newSetup(t, token.NewMemoryStore(), &token.Options{WaitTimeout: 50 * time.Millisecond})
	s.stock(t, "sku", 10)
	entered, proceed := s.blockInner()
	req := inventory.Request{ID: s.issue(t), Lines: lines("sku", 2)}
	firstDone := make(chan error, 1)
	go func() {
		_, err := s.r.Reserve(context.Background(), req)
		firstDone <- err
	}()
	<-entered

	start := time.Now()
	_, err := s.r.Reserve(t.Context(), req)
	assert.ErrorIs(t, err, token.ErrInProgress)
	assert.ErrorIs(t, err, inventory.ErrContended)
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond, "gave up before WaitTimeout")

	close(proceed)
	require.NoError(t, <-firstDone)
	res, err := s.r.Reserve(t.Context(), req)
	require.NoError(t, err, "duplicate after the first finished")
	assert.Equal(t, inventory.Held, res.State)
	assert.Equal(t, int64(1), s.inner.reserves.Load())
	s.assertAvailable(t, "sku", 8)
}

func TestNegativeWaitTimeoutFailsAtOnce(t *testing.T) {
	s := newSetup(t, token.NewMemoryStore(), &token.Options{WaitTimeout: -1})
	s.stock(t, "sku", 10)
	entered, proceed := s.blockInner()
	req := inventory.Request{ID: s.issue(t), Lines: lines("sku", 2)}
	go func() { _, _ = s.r.Reserve(context.Background(), req) }()
	<-entered
	defer close(proceed)
	_, err := s.r.Reserve(t.Context(), req)
	assert.ErrorIs(t, err, token.ErrInProgress)
}

func TestWaitingDuplicateHonoursItsContext(t *testing.T) {
	s := newSetup(t, token.NewMemoryStore(), &token.Options{WaitTimeout: time.Minute})
	s.stock(t, "sku", 10)
	entered, proceed := s.blockInner()
	req := inventory.Request{ID: s.issue(t), Lines: lines("sku", 2)}
	go func() { _, _ = s.r.Reserve(context.Background(), req) }()
	<-entered
	defer close(proceed)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	_, err := s.r.Reserve(ctx, req)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// A refused first submission does not use its token up: the refusal says
// nothing changed, so the same token may be submitted again and gets a fresh
// try, which succeeds once there is stock.
func TestRefusedSubmissionLeavesTokenUsable(t *testing.T) {
	s := newSetup(t, token.NewMemoryStore(), nil)
	s.stock(t, "sku", 1)
	req := inventory.Request{ID: s.issue(t), Lines: lines("sku", 2)}

	_, err := s.r.Reserve(t.Context(), req)
	var ise *inventory.InsufficientStockError
	require.ErrorAs(t, err, &ise)
	_, err = s.r.Reserve(t.Context(), req)
	require.ErrorAs(t, err, &ise, "the same refusal while nothing changed")

	_, err = s.r.AddStock(t.Context(), "sku", 1)
	require.NoError(t, err)
	res, err := s.r.Reserve(t.Context(), req)
	require.NoError(t, err)
	assert.Equal(t, inventory.Held, res.State)
	assert.Equal(t, int64(3), s.inner.reserves.Load(), "every try reached the inner strategy")
	s.assertAvailable(t, "sku", 0)

	_, err = s.r.Reserve(t.Context(), req)
	require.NoError(t, err)
	assert.Equal(t, int64(3), s.inner.reserves.Load(), "used up by the reservation")
}

func TestDuplicateTakesOverWhenFirstFails(t *testing.T) {
	s := newSetup(t, token.NewMemoryStore(), nil)
	s.stock(t, "sku", 10)
	entered, proceed := make(chan struct{}), make(chan struct{})
	boom := errors.New("connection reset")
	s.inner.reserve = func(ctx context.Context, req inventory.Request, n int64) (inventory.Reservation, error) {
		if n == 1 {
			close(entered)
			<-proceed
			return inventory.Reservation{}, boom
		}
		return s.inner.Strategy.Reserve(ctx, req)
	}
	req := inventory.Request{ID: s.issue(t), Lines: lines("sku", 2)}
	firstDone := make(chan error, 1)
	go func() {
		_, err := s.r.Reserve(context.Background(), req)
		firstDone <- err
	}()
	<-entered
	dupDone := make(chan error, 1)
	go func() {
		_, err := s.r.Reserve(context.Background(), req)
		dupDone <- err
	}()
	time.Sleep(20 * time.Millisecond) // the duplicate is waiting
	close(proceed)
	assert.ErrorIs(t, <-firstDone, boom)
	assert.NoError(t, <-dupDone, "the waiting duplicate made the reservation")
	assert.Equal(t, int64(2), s.inner.reserves.Load())
	s.assertAvailable(t, "sku", 8)
}

// When the outcome of the first submission is unknown, a retry with the same
// token goes to the inner strategy again, whose idempotency settles it.
func TestRetryAfterUnknownOutcomeSettlesIt(t *testing.T) {
	s := newSetup(t, token.NewMemoryStore(), nil)
	s.stock(t, "sku", 10)
	s.inner.reserve = func(ctx context.Context, req inventory.Request, n int64) (inventory.Reservation, error) {
		res, err := s.inner.Strategy.Reserve(ctx, req)
		if n == 1 && err == nil { // applied, but the reply was lost
			return inventory.Reservation{}, &inventory.OutcomeUnknownError{Op: "reserve", ID: req.ID, Err: errors.New("EOF")}
		}
		return res, err
	}
	req := inventory.Request{ID: s.issue(t), Lines: lines("sku", 2)}
	_, err := s.r.Reserve(t.Context(), req)
	require.ErrorIs(t, err, inventory.ErrOutcomeUnknown)
	res, err := s.r.Reserve(t.Context(), req)
	require.NoError(t, err)
	assert.Equal(t, inventory.Held, res.State)
	assert.Equal(t, int64(2), s.inner.reserves.Load())
	s.assertAvailable(t, "sku", 8)
}

func TestStoreFailureChangesNothingAndLeavesTokenUsable(t *testing.T) {
	boom := errors.New("store down")
	store := &countingStore{Store: token.NewMemoryStore(), claimErr: boom}
	s := newSetup(t, store, nil)
	s.stock(t, "sku", 10)
	req := inventory.Request{ID: s.issue(t), Lines: lines("sku", 2)}
	_, err := s.r.Reserve(t.Context(), req)
	assert.ErrorIs(t, err, boom)
	assert.Zero(t, s.inner.reserves.Load())
	assert.Equal(t, int64(1), store.unclaims.Load(), "a claim that may have landed is cleared")
	s.assertAvailable(t, "sku", 10)

	store.claimErr = nil
	_, err = s.r.Reserve(t.Context(), req)
	assert.NoError(t, err)
	s.assertAvailable(t, "sku", 8)
}

// A caller that gives up while its claim is on the way must not leave the
// flag set behind it: the claim finishes and is cleared, and a retry of the
// token goes through.
func TestAbandonedClaimIsCleared(t *testing.T) {
	store := &countingStore{Store: token.NewMemoryStore(), claimDelay: 50 * time.Millisecond}
	s := newSetup(t, store, nil)
	s.stock(t, "sku", 10)
	req := inventory.Request{ID: s.issue(t), Lines: lines("sku", 2)}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.r.Reserve(ctx, req)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 40*time.Millisecond, "the caller waited for the store past its deadline")
	require.Eventually(t, func() bool { return store.unclaims.Load() == 1 }, time.Second, time.Millisecond, "flag cleared")

	store.claimDelay = 0
	res, err := s.r.Reserve(t.Context(), req)
	require.NoError(t, err)
	assert.Equal(t, inventory.Held, res.State)
	assert.Equal(t, int64(1), s.inner.reserves.Load())
}

func TestOtherMethodsPassThrough(t *testing.T) {
	s := newSetup(t, token.NewMemoryStore(), nil)
	ctx := t.Context()
	require.NoError(t, s.r.SetStock(ctx, "sku", 10))
	n, err := s.r.AddStock(ctx, "sku", 5)
	require.NoError(t, err)
	assert.Equal(t, int64(15), n)

	a, b, c := s.issue(t), s.issue(t), s.issue(t)
	for _, id := range []string{a, b, c} {
		_, err := s.r.Reserve(ctx, inventory.Request{ID: id, Lines: lines("sku", 1), TTL: time.Minute})
		require.NoError(t, err)
	}
	require.NoError(t, s.r.Commit(ctx, a))
	require.NoError(t, s.r.Release(ctx, b))
	s.clock.Advance(time.Minute)
	expired, err := s.r.ExpireDue(ctx, 10)
	require.NoError(t, err)
	assert.Equal(t, 1, expired)
	for id, want := range map[string]inventory.State{a: inventory.Committed, b: inventory.Released, c: inventory.Expired} {
		res, err := s.r.Lookup(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, want, res.State)
	}
	s.assertAvailable(t, "sku", 14)

	// Reservation IDs are tokens, but settling an ID that is no token is
	// left to the inner strategy, which does not know it.
	assert.ErrorIs(t, s.r.Commit(ctx, "unknown"), inventory.ErrNotFound)
	_, err = s.r.Lookup(ctx, "unknown")
	assert.ErrorIs(t, err, inventory.ErrNotFound)
}

func TestUnconfiguredReserverFailsWithoutPanic(t *testing.T) {
	ctx := t.Context()
	for name, r := range map[string]*token.Reserver{"Nil": nil, "Zero": {}, "NoStore": token.Wrap(newSetup(t, nil, nil).inner, nil, nil, nil)} {
		_, err := r.Reserve(ctx, inventory.Request{ID: "x", Lines: lines("sku", 1)})
		assert.Error(t, err, name)
		assert.Error(t, r.Commit(ctx, "x"), name)
		assert.Error(t, r.Release(ctx, "x"), name)
		_, err = r.Available(ctx, "sku")
		assert.Error(t, err, name)
		assert.Error(t, r.SetStock(ctx, "sku", 1), name)
		_, err = r.AddStock(ctx, "sku", 1)
		assert.Error(t, err, name)
		_, err = r.ExpireDue(ctx, 1)
		assert.Error(t, err, name)
		_, err = r.Lookup(ctx, "x")
		assert.Error(t, err, name)
	}
}

func BenchmarkReserve(b *testing.B) {
	issuer, err := token.NewIssuer([][]byte{key(1)}, nil)
	require.NoError(b, err)
	inner := &counting{Strategy: memoryStrategy()}
	r := token.Wrap(inner, issuer, token.NewMemoryStore(), nil)
	require.NoError(b, r.SetStock(b.Context(), "sku", inventory.MaxStock))
	toks := make([]string, b.N)
	for i := range toks {
		toks[i], err = issuer.Issue(b.Context())
		require.NoError(b, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := r.Reserve(b.Context(), inventory.Request{ID: toks[i], Lines: lines("sku", 1)}); err != nil {
			b.Fatal(err)
		}
	}
}
