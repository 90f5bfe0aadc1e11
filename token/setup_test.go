package token_test

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/memory"
	"github.com/oversell/inventory/strategy/strategytest"
	"github.com/oversell/inventory/token"
)

// key returns a test secret of token.MinKeyLen bytes.
func key(b byte) []byte { return bytes.Repeat([]byte{b}, token.MinKeyLen) }

// counting is an inner strategy that counts the Reserve calls that reach it.
// Its reserve field, if set, replaces the forwarding of Reserve; n is the
// number of the call, from 1.
type counting struct {
	inventory.Strategy
	reserves atomic.Int64
	reserve  func(ctx context.Context, req inventory.Request, n int64) (inventory.Reservation, error)
}

func (c *counting) Reserve(ctx context.Context, req inventory.Request) (inventory.Reservation, error) {
	n := c.reserves.Add(1)
	if c.reserve != nil {
		return c.reserve(ctx, req, n)
	}
	return c.Strategy.Reserve(ctx, req)
}

// setup is a Reserver over a counting memory strategy, with a manual clock
// for the tokens and the holds.
type setup struct {
	r      *token.Reserver
	inner  *counting
	issuer *token.Issuer
	clock  *strategytest.Clock
}

func newSetup(t *testing.T, store token.Store, opts *token.Options) *setup {
	t.Helper()
	clk := strategytest.NewClock()
	issuer, err := token.NewIssuer([][]byte{key(1)}, &token.IssuerOptions{Now: clk.Now})
	require.NoError(t, err)
	inner := &counting{Strategy: memory.New(&memory.Options{Now: clk.Now})}
	return &setup{r: token.Wrap(inner, issuer, store, opts), inner: inner, issuer: issuer, clock: clk}
}

func (s *setup) issue(t *testing.T) string {
	t.Helper()
	tok, err := s.issuer.Issue(t.Context())
	require.NoError(t, err)
	return tok
}

func (s *setup) stock(t *testing.T, sku string, n int64) {
	t.Helper()
	require.NoError(t, s.r.SetStock(t.Context(), sku, n))
}

func (s *setup) assertAvailable(t *testing.T, sku string, want int64) {
	t.Helper()
	got, err := s.r.Available(t.Context(), sku)
	require.NoError(t, err)
	assert.Equal(t, want, got, "available %s", sku)
}

// blockInner makes the first inner Reserve call close entered, then wait
// until proceed is closed before it goes on.
func (s *setup) blockInner() (entered <-chan struct{}, proceed chan<- struct{}) {
	in, goOn := make(chan struct{}), make(chan struct{})
	s.inner.reserve = func(ctx context.Context, req inventory.Request, n int64) (inventory.Reservation, error) {
		if n == 1 {
			close(in)
			<-goOn
		}
		return s.inner.Strategy.Reserve(ctx, req)
	}
	return in, goOn
}

// testSubmittedOnce sends one token from 64 goroutines at once, through two
// Reservers sharing store and stock (two servers), while the first
// submission takes its time. The inner Reserve must run once and every
// submission must get the same reservation.
func testSubmittedOnce(t *testing.T, store token.Store) {
	t.Helper()
	s := newSetup(t, store, nil)
	s.inner.reserve = func(ctx context.Context, req inventory.Request, _ int64) (inventory.Reservation, error) {
		time.Sleep(30 * time.Millisecond) // keep the duplicates waiting
		return s.inner.Strategy.Reserve(ctx, req)
	}
	other := token.Wrap(s.inner, s.issuer, store, nil)
	s.stock(t, "sku", 10)
	tok := s.issue(t)
	req := inventory.Request{ID: tok, Lines: []inventory.Line{{SKU: "sku", Qty: 3}}}

	const n = 64
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		res   [n]inventory.Reservation
		errs  [n]error
	)
	for i := range n {
		r := s.r
		if i%2 == 1 {
			r = other
		}
		wg.Go(func() {
			<-start
			res[i], errs[i] = r.Reserve(t.Context(), req)
		})
	}
	close(start)
	wg.Wait()

	assert.Equal(t, int64(1), s.inner.reserves.Load(), "inner Reserve calls")
	for i := range n {
		if assert.NoError(t, errs[i], "submission %d", i) {
			assert.Equal(t, tok, res[i].ID)
			assert.Equal(t, inventory.Held, res[i].State)
			assert.Equal(t, req.Lines, res[i].Lines)
			assert.Equal(t, res[0].ExpiresAt, res[i].ExpiresAt)
		}
	}
	s.assertAvailable(t, "sku", 7)
}

// testStore checks the Store contract on the stores newStore makes.
func testStore(t *testing.T, newStore func(t *testing.T) token.Store) {
	t.Helper()
	const ttl = time.Minute

	t.Run("ClaimIsExclusive", func(t *testing.T) {
		t.Parallel()
		st, ctx := newStore(t), t.Context()
		mine, err := st.Claim(ctx, "tok", "a", ttl)
		require.NoError(t, err)
		assert.True(t, mine, "first claim")
		mine, err = st.Claim(ctx, "tok", "b", ttl)
		require.NoError(t, err)
		assert.False(t, mine, "claim by another nonce")
		mine, err = st.Claim(ctx, "other-tok", "b", ttl)
		require.NoError(t, err)
		assert.True(t, mine, "claim of another token")
	})

	t.Run("RepeatedClaimIsRecognised", func(t *testing.T) {
		t.Parallel()
		// The same call made twice, as a client does when the reply to the
		// first was lost: the second must not look like a duplicate.
		st, ctx := newStore(t), t.Context()
		for i := range 3 {
			mine, err := st.Claim(ctx, "tok", "a", ttl)
			require.NoError(t, err)
			assert.True(t, mine, "claim %d with the holder's nonce", i)
		}
		mine, err := st.Claim(ctx, "tok", "b", ttl)
		require.NoError(t, err)
		assert.False(t, mine, "claim by another nonce")
	})

	t.Run("TakeOverOnlyFromTheHolder", func(t *testing.T) {
		t.Parallel()
		st, ctx := newStore(t), t.Context()
		holder, err := st.Holder(ctx, "tok")
		require.NoError(t, err)
		assert.Empty(t, holder, "a free flag has no holder")
		took, err := st.TakeOver(ctx, "tok", "a", "b", ttl)
		require.NoError(t, err)
		assert.False(t, took, "a free flag is claimed, not taken over")
		mine, err := st.Claim(ctx, "tok", "a", ttl)
		require.NoError(t, err)
		require.True(t, mine)
		holder, err = st.Holder(ctx, "tok")
		require.NoError(t, err)
		assert.Equal(t, "a", holder)
		took, err = st.TakeOver(ctx, "tok", "x", "b", ttl)
		require.NoError(t, err)
		assert.False(t, took, "taken over from a nonce that does not hold it")
		for i := range 2 {
			took, err = st.TakeOver(ctx, "tok", "a", "b", ttl)
			require.NoError(t, err)
			assert.True(t, took, "take-over %d from the holder", i)
		}
		took, err = st.TakeOver(ctx, "tok", "a", "c", ttl)
		require.NoError(t, err)
		assert.False(t, took, "a second take-over of the old holder")
		mine, err = st.Claim(ctx, "tok", "a", ttl)
		require.NoError(t, err)
		assert.False(t, mine, "the old holder lost the flag")
		require.NoError(t, st.Unclaim(ctx, "tok", "a"))
		holder, err = st.Holder(ctx, "tok")
		require.NoError(t, err)
		assert.Equal(t, "b", holder, "the old holder cannot clear the new one's flag")
	})

	t.Run("UnclaimOnlyByHolder", func(t *testing.T) {
		t.Parallel()
		st, ctx := newStore(t), t.Context()
		require.NoError(t, st.Unclaim(ctx, "tok", "a"), "unclaim of a free flag")
		mine, err := st.Claim(ctx, "tok", "a", ttl)
		require.NoError(t, err)
		require.True(t, mine)
		require.NoError(t, st.Unclaim(ctx, "tok", "b"))
		mine, err = st.Claim(ctx, "tok", "b", ttl)
		require.NoError(t, err)
		assert.False(t, mine, "unclaim by another nonce cleared the flag")
		require.NoError(t, st.Unclaim(ctx, "tok", "a"))
		mine, err = st.Claim(ctx, "tok", "b", ttl)
		require.NoError(t, err)
		assert.True(t, mine, "flag not free after the holder's unclaim")
	})

	t.Run("FlagExpires", func(t *testing.T) {
		t.Parallel()
		st, ctx := newStore(t), t.Context()
		mine, err := st.Claim(ctx, "tok", "a", 50*time.Millisecond)
		require.NoError(t, err)
		require.True(t, mine)
		time.Sleep(150 * time.Millisecond)
		mine, err = st.Claim(ctx, "tok", "b", ttl)
		require.NoError(t, err)
		assert.True(t, mine, "flag still held after its ttl")
		mine, err = st.Claim(ctx, "tok", "a", ttl)
		require.NoError(t, err)
		assert.False(t, mine, "the old holder still holds the flag")
	})

	t.Run("ConcurrentClaimsHaveOneWinner", func(t *testing.T) {
		t.Parallel()
		st, ctx := newStore(t), t.Context()
		const n = 64
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			wins  atomic.Int64
		)
		for i := range n {
			wg.Go(func() {
				<-start
				nonce := string(rune('A' + i))
				mine, err := st.Claim(ctx, "tok", nonce, ttl)
				if assert.NoError(t, err) && mine {
					wins.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		assert.Equal(t, int64(1), wins.Load(), "claims that won")
	})

	t.Run("CancelledContextFails", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := st.Claim(ctx, "tok", "a", ttl)
		assert.ErrorIs(t, err, context.Canceled)
	})
}

func memoryStrategy() inventory.Strategy { return memory.New(nil) }
