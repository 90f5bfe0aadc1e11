package token

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/oversell/inventory"
)

// Options configures a Reserver. A nil *Options takes every default.
type Options struct {
	// WaitTimeout bounds how long a duplicate submission waits for the first
	// submission of its token to finish, polling with backoff, before it
	// fails with ErrInProgress. Negative means fail at once. Default: 2s.
	WaitTimeout time.Duration
	// ClockSkew is how much longer than its token a flag is kept, so that a
	// server whose clock runs behind still finds the flag for as long as it
	// accepts the token. Default: 1m.
	ClockSkew time.Duration
	// StoreTimeout bounds each call to the Store. Store calls run to the end
	// even when the caller's context ends first (the caller returns at once
	// and the call finishes behind it), so that a flag set for an abandoned
	// submission is always cleared again. Default: 5s.
	StoreTimeout time.Duration
	// ClaimLease is how long a flag protects the submission that claimed
	// it. A submission that finds its token's flag claimed longer ago than
	// this, and no reservation behind it in the inner strategy, takes the
	// flag over and reserves in its place: the first submission crashed
	// between its claim and its reserve (a killed process), or is so slow
	// that the inner strategy's idempotency on the ID decides between the
	// two. Without it such a token would answer ErrInProgress until its
	// flag expired with the token. It should exceed WaitTimeout plus the
	// longest an inner Reserve takes, plus the clock skew between servers
	// (the claim's time travels in its nonce). Default: 15s.
	ClaimLease time.Duration
}

// DefaultClaimLease is the default of Options.ClaimLease.
const DefaultClaimLease = 15 * time.Second

// Backoff between polls of a waiting duplicate.
const (
	minPoll = 2 * time.Millisecond
	maxPoll = 50 * time.Millisecond
)

var errNotConfigured = errors.New("token: Reserver needs an inner strategy, an Issuer and a Store (use Wrap)")

// Reserver is an inventory.Strategy that lets each token through once. It
// requires Request.ID to be a token from its Issuer, and sends only the first
// submission of a token to the inner strategy; duplicates get the first one's
// reservation from inner.Lookup without reaching the stock. Every other
// method passes straight through: a reservation's ID is its token. It is safe
// for concurrent use when the inner strategy and the store are.
type Reserver struct {
	inner        inventory.Strategy
	issuer       *Issuer
	store        Store
	wait         time.Duration
	skew         time.Duration
	storeTimeout time.Duration
	lease        time.Duration
	now          func() time.Time // the clock nonces carry; tests only
}

var _ inventory.Strategy = (*Reserver)(nil)

// Wrap returns a Reserver that checks tokens with issuer, keeps the flags of
// used tokens in store and reserves through inner. All three are required;
// the methods of a Reserver made without them fail.
func Wrap(inner inventory.Strategy, issuer *Issuer, store Store, opts *Options) *Reserver {
	r := &Reserver{inner: inner, issuer: issuer, store: store, wait: 2 * time.Second, skew: time.Minute, storeTimeout: 5 * time.Second,
		lease: DefaultClaimLease, now: time.Now}
	if opts != nil {
		if opts.WaitTimeout > 0 {
			r.wait = opts.WaitTimeout
		} else if opts.WaitTimeout < 0 {
			r.wait = 0
		}
		if opts.ClockSkew > 0 {
			r.skew = opts.ClockSkew
		}
		if opts.StoreTimeout > 0 {
			r.storeTimeout = opts.StoreTimeout
		}
		if opts.ClaimLease > 0 {
			r.lease = opts.ClaimLease
		}
	}
	return r
}

// Reserve checks req.ID as a token, then req as every strategy does, then
// claims the token's flag in the store:
//
//   - The first submission of a token holds the flag and goes on to the inner
//     strategy. If the inner strategy refuses or fails, the flag is cleared:
//     a token is used up only by a reservation, so the same token may be
//     submitted again, with the same or other lines, and gets a fresh try.
//   - A duplicate (the flag is held by another submission) gets the
//     reservation of the first, as it is now, from inner.Lookup, or
//     inventory.ErrConflict if it asks for other lines. It never calls the
//     inner Reserve. While the first is in flight it waits, up to
//     Options.WaitTimeout; if the first fails in the meantime, the
//     duplicate takes its place. When the wait runs out it fails with
//     ErrInProgress.
//
// A token that is not genuine fails with ErrInvalidToken, an expired one with
// ErrExpiredToken, before anything else is done.
func (r *Reserver) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	if err := r.ready(); err != nil {
		return inventory.Reservation{}, err
	}
	exp, err := r.issuer.verify(req.ID)
	if err != nil {
		return inventory.Reservation{}, err
	}
	if err := req.Validate(); err != nil {
		return inventory.Reservation{}, err
	}
	if err := ctx.Err(); err != nil {
		return inventory.Reservation{}, err
	}
	ttl := exp.Sub(r.issuer.clock()) + r.skew
	deadline := time.Now().Add(r.wait)
	poll := minPoll
	for {
		// A nonce per attempt, carrying the time of its claim.
		nonce, err := newNonce(r.now())
		if err != nil {
			return inventory.Reservation{}, err
		}
		mine, err := r.claim(ctx, req.ID, nonce, ttl)
		if err != nil {
			return inventory.Reservation{}, err
		}
		if mine {
			return r.first(ctx, req, nonce)
		}
		res, err := r.inner.Lookup(ctx, req.ID)
		switch {
		case err == nil:
			if err := inventory.CheckRepeat("token", res, req); err != nil {
				return inventory.Reservation{}, err
			}
			return res, nil
		case !errors.Is(err, inventory.ErrNotFound):
			return inventory.Reservation{}, err
		}
		took, err := r.takeOver(ctx, req.ID, nonce, ttl)
		if err != nil {
			return inventory.Reservation{}, err
		}
		if took {
			return r.first(ctx, req, nonce)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return inventory.Reservation{}, ErrInProgress
		}
		// Sleep between half and all of poll, so waiters spread out.
		d := min(poll/2+mrand.N(poll/2+1), left)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return inventory.Reservation{}, ctx.Err()
		case <-t.C:
		}
		poll = min(2*poll, maxPoll)
	}
}

// first makes the reservation of a submission that holds the flag of its
// token. When the inner strategy fails, it clears the flag: the inner
// strategy changed nothing, or (ErrOutcomeUnknown, a cut context) a retry
// with the same ID settles it, which its own idempotency makes safe.
func (r *Reserver) first(ctx context.Context, req inventory.Request, nonce string) (inventory.Reservation, error) {
	res, err := r.inner.Reserve(ctx, req)
	if err != nil {
		r.unclaim(ctx, req.ID, nonce)
		return res, err
	}
	return res, nil
}

// claim claims the flag of tok for nonce. The store call does not end with
// ctx: if ctx ends first, claim returns ctx's error at once, and the call
// goes on behind it and clears the flag if it set it. Cutting the call short
// instead could leave a flag set after the attempt to clear it, held by a
// submission that gave up: the token would be stuck until it expired.
func (r *Reserver) claim(ctx context.Context, tok, nonce string, ttl time.Duration) (bool, error) {
	type result struct {
		mine bool
		err  error
	}
	done := make(chan result, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.storeTimeout)
		defer cancel()
		mine, err := r.store.Claim(sctx, tok, nonce, ttl)
		if err != nil {
			// The claim may have been recorded before the error: clear it,
			// so that a retry is not taken for a duplicate of this call.
			r.unclaim(ctx, tok, nonce)
			err = fmt.Errorf("token: claim: %w", err)
		}
		done <- result{mine, err}
	}()
	select {
	case res := <-done:
		return res.mine, res.err
	case <-ctx.Done():
		go func() {
			if res := <-done; res.mine {
				r.unclaim(ctx, tok, nonce)
			}
		}()
		return false, ctx.Err()
	}
}

// unclaim clears the flag if nonce holds it, even when ctx is done. If that
// fails too, the flag stays until it expires with its token, and duplicates
// of the token get ErrInProgress meanwhile.
func (r *Reserver) unclaim(ctx context.Context, tok, nonce string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.storeTimeout)
	defer cancel()
	_ = r.store.Unclaim(ctx, tok, nonce)
}

// Commit passes through to the inner strategy.
func (r *Reserver) Commit(ctx context.Context, id string) error {
	if err := r.ready(); err != nil {
		return err
	}
	return r.inner.Commit(ctx, id)
}

// Release passes through to the inner strategy.
func (r *Reserver) Release(ctx context.Context, id string) error {
	if err := r.ready(); err != nil {
		return err
	}
	return r.inner.Release(ctx, id)
}

// Cancel passes through to the inner strategy, which records a tombstone for
// a token never submitted: its later submission fails with
// inventory.ErrCancelled, and the flag it claimed is cleared as after any
// refusal.
func (r *Reserver) Cancel(ctx context.Context, id string) error {
	if err := r.ready(); err != nil {
		return err
	}
	return r.inner.Cancel(ctx, id)
}

// Available passes through to the inner strategy.
func (r *Reserver) Available(ctx context.Context, sku string) (int64, error) {
	if err := r.ready(); err != nil {
		return 0, err
	}
	return r.inner.Available(ctx, sku)
}

// SetStock passes through to the inner strategy.
func (r *Reserver) SetStock(ctx context.Context, sku string, available int64) error {
	if err := r.ready(); err != nil {
		return err
	}
	return r.inner.SetStock(ctx, sku, available)
}

// AddStock passes through to the inner strategy.
func (r *Reserver) AddStock(ctx context.Context, sku string, delta int64) (int64, error) {
	if err := r.ready(); err != nil {
		return 0, err
	}
	return r.inner.AddStock(ctx, sku, delta)
}

// ExpireDue passes through to the inner strategy.
func (r *Reserver) ExpireDue(ctx context.Context, limit int) (int, error) {
	if err := r.ready(); err != nil {
		return 0, err
	}
	return r.inner.ExpireDue(ctx, limit)
}

// SetStockWith passes through to the inner strategy (see
// inventory.SetStockWith: settings it does not offer fail with
// inventory.ErrUnsupported).
func (r *Reserver) SetStockWith(ctx context.Context, sku string, available int64, opts inventory.StockOptions) error {
	if err := r.ready(); err != nil {
		return err
	}
	return inventory.SetStockWith(ctx, r.inner, sku, available, opts)
}

// Rebalance passes through to the inner strategy (see inventory.Rebalance).
func (r *Reserver) Rebalance(ctx context.Context, sku string) error {
	if err := r.ready(); err != nil {
		return err
	}
	return inventory.Rebalance(ctx, r.inner, sku)
}

// Levels passes through to the inner strategy (see inventory.StockLevels: a
// strategy that does not offer it refuses with inventory.ErrUnsupported).
func (r *Reserver) Levels(ctx context.Context, sku string) (inventory.Levels, error) {
	if err := r.ready(); err != nil {
		return inventory.Levels{}, err
	}
	return inventory.StockLevels(ctx, r.inner, sku)
}

// Extend passes through to the inner strategy (see inventory.Extend: a
// strategy that does not offer it refuses with inventory.ErrUnsupported).
// id is the token the reservation was made with.
func (r *Reserver) Extend(ctx context.Context, id string, ttl time.Duration) (inventory.Reservation, error) {
	if err := r.ready(); err != nil {
		return inventory.Reservation{}, err
	}
	return inventory.Extend(ctx, r.inner, id, ttl)
}

// Purge passes through to the inner strategy (see inventory.Purge), so that
// a Sweeper on the Reserver purges the inner ledger. A purged reservation's
// token is unknown to the inner strategy; while the token is still valid, a
// submission of it would reserve afresh. Keep the inner retention longer
// than the issuer's token lifetime plus Options.ClockSkew (a day against
// 30 minutes by default), so that a token is refused as expired before its
// reservation can be purged.
func (r *Reserver) Purge(ctx context.Context, limit int) (int, error) {
	if err := r.ready(); err != nil {
		return 0, err
	}
	return inventory.Purge(ctx, r.inner, limit)
}

// Lookup passes through to the inner strategy.
func (r *Reserver) Lookup(ctx context.Context, id string) (inventory.Reservation, error) {
	if err := r.ready(); err != nil {
		return inventory.Reservation{}, err
	}
	return r.inner.Lookup(ctx, id)
}

func (r *Reserver) ready() error {
	if r == nil || r.inner == nil || r.issuer == nil || r.store == nil {
		return errNotConfigured
	}
	return nil
}

// newNonce returns a random name for one Reserve call.
// newNonce returns a random nonce that carries the time of its claim,
// at, in milliseconds: "<ms, base 36>.<16 random bytes, base64>".
func newNonce(at time.Time) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("token: random: %w", err)
	}
	return strconv.FormatInt(at.UnixMilli(), 36) + "." + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// claimedAt returns the time a nonce made by newNonce was claimed, and false
// for a nonce that carries none.
func claimedAt(nonce string) (time.Time, bool) {
	ms, _, ok := strings.Cut(nonce, ".")
	if !ok {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(ms, 36, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(n), true
}

// takeOver takes the flag of tok over for nonce when its holder claimed it
// longer than the lease ago; the caller has just found no reservation behind
// it. It reports whether nonce holds the flag. The store calls run to the end
// as claim's do, bounded by the store timeout.
func (r *Reserver) takeOver(ctx context.Context, tok, nonce string, ttl time.Duration) (bool, error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.storeTimeout)
	defer cancel()
	holder, err := r.store.Holder(sctx, tok)
	if err != nil {
		return false, fmt.Errorf("token: read the flag: %w", err)
	}
	at, ok := claimedAt(holder)
	if holder == "" || !ok || r.now().Sub(at) < r.lease {
		return false, nil
	}
	took, err := r.store.TakeOver(sctx, tok, holder, nonce, ttl)
	if err != nil {
		// The take-over may have been recorded: clear it, as claim does.
		r.unclaim(ctx, tok, nonce)
		return false, fmt.Errorf("token: take the flag over: %w", err)
	}
	return took, nil
}
