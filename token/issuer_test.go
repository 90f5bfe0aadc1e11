package token_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/strategy/strategytest"
	"github.com/oversell/inventory/token"
)

func newIssuer(t testing.TB, opts *token.IssuerOptions, keys ...[]byte) *token.Issuer {
	t.Helper()
	if len(keys) == 0 {
		keys = [][]byte{key(1)}
	}
	is, err := token.NewIssuer(keys, opts)
	require.NoError(t, err)
	return is
}

func TestIssuedTokensAreURLSafeUniqueAndFitAnID(t *testing.T) {
	is := newIssuer(t, nil)
	seen := make(map[string]bool)
	for range 1000 {
		tok, err := is.Issue(t.Context())
		require.NoError(t, err)
		require.Len(t, tok, token.Len)
		require.NoError(t, inventory.ValidateID(tok))
		require.Equal(t, -1, strings.IndexFunc(tok, func(r rune) bool {
			return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_')
		}), "token %q has a character that is not URL-safe", tok)
		require.NoError(t, is.Verify(tok))
		require.False(t, seen[tok], "token issued twice")
		seen[tok] = true
	}
	assert.LessOrEqual(t, token.Len, inventory.MaxIDLen)
}

func TestTokenLifetimeDefaultsTo30Minutes(t *testing.T) {
	clk := strategytest.NewClock()
	is := newIssuer(t, &token.IssuerOptions{Now: clk.Now})
	tok, err := is.Issue(t.Context())
	require.NoError(t, err)
	exp, err := is.ExpiresAt(tok)
	require.NoError(t, err)
	assert.WithinDuration(t, clk.Now().Add(30*time.Minute), exp, 0)
}

func TestExpiredTokenIsRejected(t *testing.T) {
	clk := strategytest.NewClock()
	is := newIssuer(t, &token.IssuerOptions{Now: clk.Now, Lifetime: time.Minute})
	tok, err := is.Issue(t.Context())
	require.NoError(t, err)

	clk.Advance(time.Minute - time.Millisecond)
	require.NoError(t, is.Verify(tok), "valid until the last millisecond")

	clk.Advance(time.Millisecond)
	err = is.Verify(tok)
	assert.ErrorIs(t, err, token.ErrExpiredToken)
	assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
	assert.NotErrorIs(t, err, token.ErrInvalidToken)
}

// badTokens returns tokens that are not genuine, derived from the genuine
// tok, by the way each was spoiled.
func badTokens(t *testing.T, tok string) map[string]string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	require.NoError(t, err)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		return base64.RawURLEncoding.EncodeToString(b)
	}
	other, err := newIssuer(t, nil, key(9)).Issue(t.Context())
	require.NoError(t, err)
	swapped := []byte(tok)
	swapped[10] = map[bool]byte{true: 'B', false: 'A'}[swapped[10] == 'A']

	bad := map[string]string{
		"Empty":             "",
		"Garbage":           "not-a-token",
		"RightLengthRandom": strings.Repeat("A", token.Len),
		"Truncated":         tok[:len(tok)-1],
		"TruncatedToHalf":   tok[:len(tok)/2],
		"Extended":          tok + "A",
		"Padded":            tok + "==",
		"StdAlphabet":       "+" + tok[1:],
		"NotBase64":         strings.Repeat("*", token.Len),
		"CharSwapped":       string(swapped),
		"VersionChanged":    flip(0),
		"RandomTampered":    flip(5),
		"ExpiryTampered":    flip(20),
		"MACTampered":       flip(len(raw) - 1),
		"OtherSecret":       other,
		"ReservedTooLong":   strings.Repeat("x", inventory.MaxIDLen+1),
	}
	// Every single-bit change anywhere in the token.
	for i := range raw {
		for bit := range 8 {
			b := append([]byte(nil), raw...)
			b[i] ^= 1 << bit
			bad[fmt.Sprintf("Byte%dBit%d", i, bit)] = base64.RawURLEncoding.EncodeToString(b)
		}
	}
	return bad
}

func TestForgedTamperedTruncatedAndForeignTokensAreRejected(t *testing.T) {
	is := newIssuer(t, nil)
	tok, err := is.Issue(t.Context())
	require.NoError(t, err)
	for name, bad := range badTokens(t, tok) {
		err := is.Verify(bad)
		assert.ErrorIs(t, err, token.ErrInvalidToken, name)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest, name)
	}
}

func TestKeyRotationVerifiesOldKeysAndSignsWithTheFirst(t *testing.T) {
	oldIs := newIssuer(t, nil, key(1))
	rotated := newIssuer(t, nil, key(2), key(1))
	newOnly := newIssuer(t, nil, key(2))

	oldTok, err := oldIs.Issue(t.Context())
	require.NoError(t, err)
	assert.NoError(t, rotated.Verify(oldTok), "a token of the old key during rotation")
	assert.ErrorIs(t, newOnly.Verify(oldTok), token.ErrInvalidToken, "a token of a dropped key")

	newTok, err := rotated.Issue(t.Context())
	require.NoError(t, err)
	assert.NoError(t, newOnly.Verify(newTok), "rotated issuer signs with the first key")
	assert.ErrorIs(t, oldIs.Verify(newTok), token.ErrInvalidToken)
}

func TestNewIssuerRejectsMissingOrShortKeys(t *testing.T) {
	_, err := token.NewIssuer(nil, nil)
	assert.Error(t, err, "no keys")
	_, err = token.NewIssuer([][]byte{key(1), key(2)[:token.MinKeyLen-1]}, nil)
	assert.Error(t, err, "a short key")
}

func TestIssuerCopiesItsKeys(t *testing.T) {
	k := key(1)
	is := newIssuer(t, nil, k)
	tok, err := is.Issue(t.Context())
	require.NoError(t, err)
	k[0] ^= 0xff
	assert.NoError(t, is.Verify(tok))
}

func TestUnusableIssuerFailsWithoutPanic(t *testing.T) {
	for name, is := range map[string]*token.Issuer{"Nil": nil, "Zero": {}} {
		_, err := is.Issue(t.Context())
		assert.Error(t, err, name)
		assert.Error(t, is.Verify("x"), name)
	}
}

func TestIssueHonoursCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := newIssuer(t, nil).Issue(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}

func FuzzVerify(f *testing.F) {
	is, err := token.NewIssuer([][]byte{key(1)}, nil)
	require.NoError(f, err)
	tok, err := is.Issue(context.Background())
	require.NoError(f, err)
	f.Add(tok)
	f.Add(tok[:40])
	f.Add("")
	f.Add(strings.Repeat("_", token.Len))
	f.Fuzz(func(t *testing.T, s string) {
		err := is.Verify(s)
		if s == tok {
			assert.NoError(t, err)
			return
		}
		// Nothing but the issued token passes.
		assert.ErrorIs(t, err, token.ErrInvalidToken)
		assert.ErrorIs(t, err, inventory.ErrInvalidRequest)
	})
}

func BenchmarkIssue(b *testing.B) {
	is, err := token.NewIssuer([][]byte{key(1)}, nil)
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := is.Issue(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	is, err := token.NewIssuer([][]byte{key(1)}, nil)
	require.NoError(b, err)
	tok, err := is.Issue(b.Context())
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if err := is.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
