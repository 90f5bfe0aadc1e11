package token

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// MinKeyLen is the shortest secret key NewIssuer accepts, in bytes.
const MinKeyLen = 32

// Len is the length in bytes of every token an Issuer makes. It is within
// inventory.MaxIDLen, so a token can be used as a reservation ID as it is.
const Len = encodedLen

// Token layout, before base64url encoding (no padding):
//
//	version (1) | random (16) | expiry, Unix milliseconds, big endian (8) | HMAC-SHA256 (32)
//
// The MAC covers a fixed domain label and the first 25 bytes. 57 bytes encode
// to exactly 76 characters with no spare bits, so each token has one spelling.
const (
	version    = 1
	randomLen  = 16
	expiryLen  = 8
	macLen     = sha256.Size
	payloadLen = 1 + randomLen + expiryLen
	rawLen     = payloadLen + macLen
	encodedLen = rawLen / 3 * 4
)

// domain separates the MACs of tokens from anything else signed with the
// same keys.
const domain = "github.com/oversell/inventory/token v1\x00"

var encoding = base64.RawURLEncoding.Strict()

// IssuerOptions configures an Issuer. A nil *IssuerOptions takes every
// default.
type IssuerOptions struct {
	// Lifetime is how long a token stays valid after Issue. Give the checkout
	// page time to be filled in. Default: 30m.
	Lifetime time.Duration
	// Now is the clock tokens' expiry is set and checked against.
	// Default: time.Now.
	Now func() time.Time
}

var errNoIssuer = errors.New("token: Issuer has no keys (use NewIssuer)")

// Issuer makes and checks tokens. It is safe for concurrent use.
type Issuer struct {
	keys     [][]byte
	lifetime time.Duration
	now      func() time.Time
}

// NewIssuer returns an Issuer that signs with keys[0] and accepts tokens
// signed with any of keys. To rotate a secret, put the new key first and keep
// the old one after it for one token lifetime, then drop it. Every key must
// be at least MinKeyLen bytes of secret randomness. The keys are copied.
func NewIssuer(keys [][]byte, opts *IssuerOptions) (*Issuer, error) {
	if len(keys) == 0 {
		return nil, errors.New("token: no keys")
	}
	is := &Issuer{keys: make([][]byte, len(keys)), lifetime: 30 * time.Minute, now: time.Now}
	for i, k := range keys {
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("token: key %d is %d bytes, at least %d needed", i, len(k), MinKeyLen)
		}
		is.keys[i] = append([]byte(nil), k...)
	}
	if opts != nil {
		if opts.Lifetime > 0 {
			is.lifetime = opts.Lifetime
		}
		if opts.Now != nil {
			is.now = opts.Now
		}
	}
	return is, nil
}

// Issue returns a new token, valid for the issuer's lifetime: 128 random bits
// and an expiry, signed with the first key, in URL-safe base64 of Len bytes.
func (is *Issuer) Issue(ctx context.Context) (string, error) {
	if is == nil || len(is.keys) == 0 {
		return "", errNoIssuer
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var raw [rawLen]byte
	raw[0] = version
	if _, err := rand.Read(raw[1 : 1+randomLen]); err != nil {
		return "", fmt.Errorf("token: random: %w", err)
	}
	exp := is.clock().Add(is.lifetime).UnixMilli()
	binary.BigEndian.PutUint64(raw[1+randomLen:payloadLen], uint64(exp))
	copy(raw[payloadLen:], sign(is.keys[0], raw[:payloadLen]))
	return encoding.EncodeToString(raw[:]), nil
}

// Verify checks that tok was issued with one of the issuer's keys and has not
// expired. It returns nil, or an error that errors.Is ErrInvalidToken or
// ErrExpiredToken (and so inventory.ErrInvalidRequest).
func (is *Issuer) Verify(tok string) error {
	_, err := is.verify(tok)
	return err
}

// ExpiresAt returns when tok stops being valid, after checking it as Verify
// does. For a genuine but expired token it returns the expiry together with
// ErrExpiredToken.
func (is *Issuer) ExpiresAt(tok string) (time.Time, error) {
	return is.verify(tok)
}

func (is *Issuer) verify(tok string) (time.Time, error) {
	if is == nil || len(is.keys) == 0 {
		return time.Time{}, errNoIssuer
	}
	if len(tok) != encodedLen {
		return time.Time{}, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidToken, len(tok), encodedLen)
	}
	var raw [rawLen]byte
	n, err := encoding.Decode(raw[:], []byte(tok))
	if err != nil || n != rawLen {
		return time.Time{}, fmt.Errorf("%w: not base64url", ErrInvalidToken)
	}
	if raw[0] != version {
		return time.Time{}, fmt.Errorf("%w: unknown version %d", ErrInvalidToken, raw[0])
	}
	ok := false
	for _, k := range is.keys {
		if hmac.Equal(sign(k, raw[:payloadLen]), raw[payloadLen:]) {
			ok = true
			break
		}
	}
	if !ok {
		return time.Time{}, fmt.Errorf("%w: bad signature", ErrInvalidToken)
	}
	exp := time.UnixMilli(int64(binary.BigEndian.Uint64(raw[1+randomLen : payloadLen])))
	if !is.clock().Before(exp) {
		return exp, ErrExpiredToken
	}
	return exp, nil
}

func (is *Issuer) clock() time.Time {
	if is.now == nil {
		return time.Now()
	}
	return is.now()
}

func sign(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(domain))
	m.Write(payload)
	return m.Sum(nil)
}
