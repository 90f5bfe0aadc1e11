package token

import (
	"context"
	"sync"
	"time"
)

// Store records which submission first used each token: the "used once" flag.
// A submission is named by a nonce, random per Reserve call, so a store call
// that the client library repeats after losing its reply is recognised as the
// same submission and not taken for a duplicate.
//
// RedisStore and PostgresStore share the flags between processes;
// MemoryStore keeps them in one process.
type Store interface {
	// Claim sets the flag of tok to nonce unless another nonce holds it, and
	// keeps the flag for at least ttl. It reports true when nonce holds the
	// flag after the call: the flag was free, or already held by nonce (the
	// same claim made again). It reports false when another nonce holds it.
	// Claim is atomic: of many concurrent claims of a free flag with
	// different nonces, from any number of processes, exactly one reports
	// true. On error the flag may or may not be set.
	Claim(ctx context.Context, tok, nonce string, ttl time.Duration) (bool, error)

	// Unclaim clears the flag of tok if nonce holds it, so the token may be
	// submitted afresh, and does nothing otherwise. Clearing a flag that is
	// not set is not an error.
	Unclaim(ctx context.Context, tok, nonce string) error

	// Holder returns the nonce that holds the flag of tok, or "" when the
	// flag is free.
	Holder(ctx context.Context, tok string) (string, error)

	// TakeOver sets the flag of tok to nonce, kept for at least ttl, if old
	// holds it, and reports whether nonce holds it after the call (the same
	// call made again reports true). It is atomic as Claim is: of many
	// concurrent take-overs of one holder, exactly one reports true.
	TakeOver(ctx context.Context, tok, old, nonce string, ttl time.Duration) (bool, error)
}

// MemoryStore is a Store in the memory of one process, for a single server
// and for tests. The zero value is ready to use, and it is safe for
// concurrent use. Flags past their ttl are dropped as new ones come.
type MemoryStore struct {
	mu        sync.Mutex
	flags     map[string]memoryFlag
	nextSweep int
	// now is the clock flag lifetimes are measured by; nil means time.Now.
	now func() time.Time
}

type memoryFlag struct {
	nonce   string
	expires time.Time
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

// Claim implements Store.
func (s *MemoryStore) Claim(ctx context.Context, tok, nonce string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.flags == nil {
		s.flags = make(map[string]memoryFlag)
	}
	if f, ok := s.flags[tok]; ok && now.Before(f.expires) {
		return f.nonce == nonce, nil
	}
	if len(s.flags) >= s.nextSweep {
		for k, f := range s.flags {
			if !now.Before(f.expires) {
				delete(s.flags, k)
			}
		}
		s.nextSweep = max(1024, 2*len(s.flags))
	}
	s.flags[tok] = memoryFlag{nonce: nonce, expires: now.Add(ttl)}
	return true, nil
}

// Unclaim implements Store.
func (s *MemoryStore) Unclaim(ctx context.Context, tok, nonce string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.flags[tok]; ok && f.nonce == nonce {
		delete(s.flags, tok)
	}
	return nil
}

// Holder implements Store.
func (s *MemoryStore) Holder(ctx context.Context, tok string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.flags[tok]; ok && now.Before(f.expires) {
		return f.nonce, nil
	}
	return "", nil
}

// TakeOver implements Store.
func (s *MemoryStore) TakeOver(ctx context.Context, tok, old, nonce string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.flags[tok]
	if !ok || !now.Before(f.expires) || (f.nonce != old && f.nonce != nonce) {
		return false, nil
	}
	s.flags[tok] = memoryFlag{nonce: nonce, expires: now.Add(ttl)}
	return true, nil
}

func (s *MemoryStore) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}
