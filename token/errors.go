package token

import "github.com/oversell/inventory"

// Sentinel errors of this package. Each also satisfies errors.Is with the
// inventory sentinel named in its comment, so callers that only know the
// inventory contract still read them right.
var (
	// ErrInvalidToken reports a token that this package did not issue with
	// one of the configured keys: forged, tampered with, truncated, padded,
	// or signed with another secret. It errors.Is inventory.ErrInvalidRequest:
	// nothing was changed.
	ErrInvalidToken error = &sentinel{msg: "token: invalid token", is: inventory.ErrInvalidRequest}

	// ErrExpiredToken reports a genuine token whose lifetime has passed. It
	// errors.Is inventory.ErrInvalidRequest: nothing was changed. The client
	// needs a new token.
	ErrExpiredToken error = &sentinel{msg: "token: expired token", is: inventory.ErrInvalidRequest}

	// ErrInProgress reports a submission of a token whose first submission
	// was still in flight when the wait for it (Options.WaitTimeout) ran out.
	// It errors.Is inventory.ErrContended: nothing was changed by this call,
	// and the same request may be sent again.
	ErrInProgress error = &sentinel{msg: "token: first submission of this token still in progress", is: inventory.ErrContended}

	// ErrNotReplicated reports a flag that fewer replicas than
	// RedisOptions.WaitReplicas confirmed within RedisOptions.ReplicaTimeout.
	// It errors.Is inventory.ErrUnavailable: the flag was cleared, nothing
	// reached the inner strategy, and the same request may be sent again.
	ErrNotReplicated error = &sentinel{msg: "token: flag not confirmed by enough replicas", is: inventory.ErrUnavailable}
)

// sentinel is a package error that also matches an inventory sentinel.
type sentinel struct {
	msg string
	is  error
}

// Error returns the package's message followed by the inventory
// sentinel's, so that the text names both kinds.
func (e *sentinel) Error() string { return e.msg + " (" + e.is.Error() + ")" }

// Unwrap returns the inventory sentinel e stands for.
func (e *sentinel) Unwrap() error { return e.is }
