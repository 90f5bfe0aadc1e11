// Package inventory is the contract shared by strategies that stop a shop
// from selling more units than it has.
//
// A Reserver holds the units of a cart (Reserve), then sells them (Commit) or
// gives them back (Release, or Cancel, which also refuses a Reserve that
// arrives after it); holds that are never settled expire after their
// TTL and a Sweeper returns their units. The strategies live in their own
// packages and differ in how they keep the contract and what it costs:
//
//   - memory: in process, the reference and a fake for tests.
//   - sqlcond: PostgreSQL, a conditional UPDATE per line.
//   - pessimistic: PostgreSQL, SELECT ... FOR UPDATE.
//   - redislock: a Redis lock per SKU with fencing tokens checked by PostgreSQL.
//   - token: idempotency tokens in front of any Reserver.
//
// Package strategy opens any of them by name; this package imports none of
// them and no database client.
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
// # Cost
//
// This package does no I/O. Request.Validate and the other Validate
// functions check lengths and ranges in memory; every strategy calls them
// first, so invalid input never reaches a server. Every Interval (10s by
// default, give or take 20%) a Sweeper calls ExpireDue with a limit of
// BatchSize (500 by default) until a batch comes back short: one call when
// nothing is due.
//
// # Errors
//
// Refusals satisfy errors.Is with one of the sentinels; typed errors carry
// the detail. What a caller should do:
//
//   - ErrInvalidRequest (*ValidationError names the field): fix the request;
//     nothing changed.
//   - ErrInsufficientStock (*InsufficientStockError), ErrUnknownSKU
//     (*UnknownSKUError): a final answer for this cart; nothing changed, so
//     the same ID may be used again for another cart.
//   - ErrConflict: the ID was used for other lines; use a new ID.
//   - ErrNotHeld (*StateError): the reservation is settled or expired. A
//     commit refused with State Expired means the units went back to stock:
//     reserve again under a new ID, or give the money back.
//   - ErrNotFound: no reservation has this ID.
//   - ErrContended: a lock could not be had in time; nothing changed, so the
//     same request may be sent again.
//   - ErrUnavailable (*UnavailableError): a server the strategy needs could
//     not be reached; nothing changed, so the same call may be sent again
//     after a pause.
//   - ErrOutcomeUnknown (*OutcomeUnknownError): the change may or may not
//     have been applied; send the same call with the same ID again to learn
//     which. It is safe because Reserve, Commit and Release are idempotent.
//     AddStock is not: read Available before adding again. SetStock and
//     ExpireDue may simply run again.
//
// Any other error (the context's, an unreachable server) comes from a call
// that changed nothing. Whatever the error, sending a Reserve, Commit or
// Release again with the same ID never takes stock twice.
package inventory
