package token

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/rediswait"
	"github.com/oversell/inventory/internal/unreach"
)

// RedisOptions configures a RedisStore. A nil *RedisOptions takes every
// default.
type RedisOptions struct {
	// Prefix is put before every token to make its key. Default: "inventory:token:".
	Prefix string
	// WaitReplicas, when positive, makes every claim of a flag wait (Redis
	// WAIT, on the connection that ran the claim) until that many replicas
	// have it, for at most ReplicaTimeout, so that a failover to one of
	// them keeps the flag. A claim the replicas did not confirm in time
	// fails with an error that errors.Is ErrNotReplicated and
	// inventory.ErrUnavailable: the Reserver clears the flag and nothing
	// reaches the inner strategy, so a retry is safe. It cannot be used
	// with a Redis Cluster client, whose pipeline need not keep the claim
	// and the WAIT on one connection. Default: 0, a claim counts as soon as
	// the primary has it.
	WaitReplicas int
	// ReplicaTimeout bounds the wait of WaitReplicas. Zero or negative
	// means the default. Default: 1s.
	ReplicaTimeout time.Duration
}

// RedisStore keeps the flags in Redis: one key per token, set with NX and an
// expiry, holding the nonce of the submission that set it. It works with a
// single server, Sentinel and Cluster (each call touches one key).
type RedisStore struct {
	c      redis.UniversalClient
	prefix string
	// waitN and waitFor are Options.WaitReplicas and ReplicaTimeout.
	waitN   int
	waitFor time.Duration
	// err, if set, fails every call: the options were unusable.
	err error
}

var _ Store = (*RedisStore)(nil)

// errNilClient is returned by the methods of a RedisStore made on a nil
// client.
var errNilClient = &inventory.ValidationError{Field: "redis client", Reason: "nil"}

// NewRedisStore returns a RedisStore on c. On a nil c or unusable options
// (a negative WaitReplicas, WaitReplicas with a Cluster client), every call
// fails with an error that errors.Is inventory.ErrInvalidRequest.
func NewRedisStore(c redis.UniversalClient, opts *RedisOptions) *RedisStore {
	s := &RedisStore{c: c, prefix: "inventory:token:", waitFor: time.Second}
	if c == nil {
		s.err = errNilClient
	}
	if opts == nil {
		return s
	}
	if opts.Prefix != "" {
		s.prefix = opts.Prefix
	}
	switch _, cluster := c.(*redis.ClusterClient); {
	case s.err != nil:
	case opts.WaitReplicas < 0:
		s.err = &inventory.ValidationError{Field: "WaitReplicas", Reason: "negative"}
	case opts.WaitReplicas > 0 && cluster:
		s.err = &inventory.ValidationError{Field: "WaitReplicas", Reason: "not available with a Redis Cluster client"}
	}
	s.waitN = opts.WaitReplicas
	if opts.ReplicaTimeout > 0 {
		s.waitFor = opts.ReplicaTimeout
	}
	return s
}

// run runs a script that sets a flag and returns 1 when this nonce holds it
// afterwards; with WaitReplicas, a 1 the replicas did not confirm in time is
// an error.
func (s *RedisStore) run(ctx context.Context, sc *redis.Script, key string, args ...any) (bool, error) {
	if s.waitN <= 0 {
		n, err := sc.Run(ctx, s.c, []string{key}, args...).Int()
		return n == 1, err
	}
	cmd, got, err := rediswait.Run(ctx, s.c, sc, []string{key}, args, s.waitN, s.waitFor)
	if err != nil {
		return false, err
	}
	n, err := cmd.Int()
	if err != nil || n != 1 {
		return false, err
	}
	if got < int64(s.waitN) {
		return false, &inventory.UnavailableError{Op: "claim", Server: "redis",
			Err: fmt.Errorf("%w: %d of %d replicas within %s", ErrNotReplicated, got, s.waitN, s.waitFor)}
	}
	return true, nil
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
	if s.err != nil {
		return false, s.err
	}
	mine, err := s.run(ctx, claimScript, s.prefix+tok, nonce, max(ttl.Milliseconds(), 1))
	if err != nil {
		if errors.Is(err, ErrNotReplicated) {
			return false, err
		}
		if u := unreach.Wrap("claim", unreach.Redis, err); u != nil {
			return false, u
		}
		return false, err
	}
	return mine, nil
}

// Holder implements Store with a GET.
func (s *RedisStore) Holder(ctx context.Context, tok string) (string, error) {
	if s.err != nil {
		return "", s.err
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
	if s.err != nil {
		return false, s.err
	}
	return s.run(ctx, takeOverScript, s.prefix+tok, old, nonce, max(ttl.Milliseconds(), 1))
}

// Unclaim implements Store: it deletes the key if its value is nonce.
func (s *RedisStore) Unclaim(ctx context.Context, tok, nonce string) error {
	if s.err != nil {
		return s.err
	}
	return unclaimScript.Run(ctx, s.c, []string{s.prefix + tok}, nonce).Err()
}
