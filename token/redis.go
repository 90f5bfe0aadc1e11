package token

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/unreach"
)

// RedisOptions configures a RedisStore. A nil *RedisOptions takes every
// default.
type RedisOptions struct {
	// Prefix is put before every token to make its key. Default: "inventory:token:".
	Prefix string
}

// RedisStore keeps the flags in Redis: one key per token, set with NX and an
// expiry, holding the nonce of the submission that set it. It works with a
// single server, Sentinel and Cluster (each call touches one key).
type RedisStore struct {
	c      redis.UniversalClient
	prefix string
}

var _ Store = (*RedisStore)(nil)

// errNilClient is returned by the methods of a RedisStore made on a nil
// client.
var errNilClient = &inventory.ValidationError{Field: "redis client", Reason: "nil"}

// NewRedisStore returns a RedisStore on c. On a nil c, every call fails with
// an error that errors.Is inventory.ErrInvalidRequest.
func NewRedisStore(c redis.UniversalClient, opts *RedisOptions) *RedisStore {
	s := &RedisStore{c: c, prefix: "inventory:token:"}
	if opts != nil && opts.Prefix != "" {
		s.prefix = opts.Prefix
	}
	return s
}

// claimScript sets the flag if it is free; if it is held, it reports whether
// the holder is this nonce, so a call repeated after a lost reply is
// recognised as the same claim.
var claimScript = redis.NewScript(`
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
	return 1
end
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return 1
end
return 0
`)

// takeOverScript sets the flag to ARGV[2] for ARGV[3] ms if ARGV[1] holds
// it, and reports whether ARGV[2] holds it afterwards.
var takeOverScript = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
if v == ARGV[1] then
	redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
	return 1
end
if v == ARGV[2] then
	return 1
end
return 0
`)

// unclaimScript deletes the flag only if this nonce holds it.
var unclaimScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0
`)

// Claim implements Store with one script call: SET NX PX, or, if the key
// exists, a comparison of its value with nonce.
func (s *RedisStore) Claim(ctx context.Context, tok, nonce string, ttl time.Duration) (bool, error) {
	if s.c == nil {
		return false, errNilClient
	}
	ms := max(ttl.Milliseconds(), 1)
	n, err := claimScript.Run(ctx, s.c, []string{s.prefix + tok}, nonce, ms).Int()
	if err != nil {
		if u := unreach.Wrap("claim", unreach.Redis, err); u != nil {
			return false, u
		}
		return false, err
	}
	return n == 1, nil
}

// Holder implements Store with a GET.
func (s *RedisStore) Holder(ctx context.Context, tok string) (string, error) {
	if s.c == nil {
		return "", errNilClient
	}
	v, err := s.c.Get(ctx, s.prefix+tok).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", nil
	case err != nil:
		if u := unreach.Wrap("holder", unreach.Redis, err); u != nil {
			return "", u
		}
		return "", err
	}
	return v, nil
}

// TakeOver implements Store with one script call.
func (s *RedisStore) TakeOver(ctx context.Context, tok, old, nonce string, ttl time.Duration) (bool, error) {
	if s.c == nil {
		return false, errNilClient
	}
	n, err := takeOverScript.Run(ctx, s.c, []string{s.prefix + tok}, old, nonce, max(ttl.Milliseconds(), 1)).Int()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// Unclaim implements Store: it deletes the key if its value is nonce.
func (s *RedisStore) Unclaim(ctx context.Context, tok, nonce string) error {
	if s.c == nil {
		return errNilClient
	}
	return unclaimScript.Run(ctx, s.c, []string{s.prefix + tok}, nonce).Err()
}
