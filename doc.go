// Package inventory is the contract shared by strategies that stop a shop
// from selling more units than it has.
//
// A Reserver holds the units of a cart (Reserve), then sells them (Commit) or
// gives them back (Release); holds that are never settled expire after their
// TTL and a Sweeper returns their units. The strategies live in their own
// packages and differ in how they keep the contract and what it costs:
//
//   - memory: in process, the reference and a fake for tests.
//   - sqlcond: PostgreSQL, a conditional UPDATE per line.
//   - pessimistic: PostgreSQL, SELECT ... FOR UPDATE.
//   - redislock: a Redis lock per SKU with fencing tokens checked by PostgreSQL.
//   - token: idempotency tokens in front of any Reserver.
//
// # Guarantees
//
// Every strategy keeps the contract documented on Reserver: all-or-nothing
// carts, idempotency on the request ID, a one-way state machine
// (Held -> Committed | Released | Expired), and per SKU the invariant
// available + held + sold = stock set + units added, never below zero. The
// package strategy/strategytest checks each strategy against it with
// concurrent buyers.
//
// # Errors
//
// Errors satisfy errors.Is with one of the sentinels (ErrInvalidRequest,
// ErrInsufficientStock, ErrUnknownSKU, ErrNotFound, ErrConflict, ErrNotHeld,
// ErrContended, ErrOutcomeUnknown); typed errors carry the detail. What a
// caller should do: ErrInsufficientStock, ErrUnknownSKU, ErrConflict and
// ErrInvalidRequest are final answers; ErrContended may be retried at once;
// ErrOutcomeUnknown must be retried with the same ID, which is safe because
// every call is idempotent.
package inventory
