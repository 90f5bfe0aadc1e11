// Package token filters duplicate checkout submissions before they reach the
// stock, with idempotency tokens.
//
// The checkout page gets a token when it opens (Issuer.Issue); the submit
// carries it as the reservation ID; a Reserver (Wrap) in front of any
// inventory.Strategy lets each token through once. Double clicks, client
// retries and replayed requests are answered with the first submission's
// reservation instead of taking stock again.
//
// A token is 128 random bits from crypto/rand and an expiry (Unix
// milliseconds), signed with HMAC-SHA256 under a server secret, in URL-safe
// base64: Len (76) bytes, within inventory.MaxIDLen. The Issuer signs with
// its first key and accepts any of its keys, so a secret is rotated by
// putting the new key first and dropping the old one a token lifetime later.
//
// The "used once" flag of each token lives in a Store shared by the servers:
// RedisStore (SET NX with an expiry, one key per token) or PostgresStore (a
// unique insert into a table created by Migrate or DDL). MemoryStore serves a
// single process.
//
// # Guarantees
//
//   - A token that is forged, tampered with, truncated or signed with another
//     secret fails with ErrInvalidToken, an expired one with ErrExpiredToken,
//     before anything else happens: no store call, no stock touched. Both
//     errors.Is inventory.ErrInvalidRequest. MACs are compared in constant
//     time, and every token has one spelling.
//   - Of all the submissions of a token, from any number of goroutines and
//     servers, one reaches the inner strategy's Reserve while that one is in
//     flight or has succeeded. The others get its reservation, as it is now,
//     from the inner Lookup (inventory.ErrConflict if they ask for other
//     lines), after waiting for it up to Options.WaitTimeout, and fail with
//     ErrInProgress (errors.Is inventory.ErrContended) when the wait runs
//     out. None of them touches the stock.
//   - A token is used up only by a reservation. A first submission that the
//     inner strategy refuses (insufficient stock, unknown SKU) or that fails
//     clears its flag, so the same token may be submitted again and gets a
//     fresh try, whose answer reflects the stock at that time; a duplicate
//     that was waiting takes its place. This is safe even when the failure
//     left the outcome unknown (inventory.ErrOutcomeUnknown, a cut context):
//     the inner strategy is idempotent on the ID, so the next try returns
//     the reservation if it was made.
//   - The flag records a nonce of the submission that set it, so a store call
//     repeated after its reply was lost is recognised as the same submission,
//     not taken for a duplicate.
//   - Commit, Release, Cancel, Lookup, Available, SetStock, AddStock and
//     ExpireDue pass straight through: the reservation's ID is its token, and they
//     keep working after the token has expired. So do SetStockWith, Rebalance,
//     Purge, Levels and Extend, through the root package's helpers: the
//     Reserver offers limits per buyer, partial carts, Extend, Levels and
//     backorders exactly when the inner strategy does (Request.Buyer and
//     Partial reach it unchanged), and refuses them as it does.
//
// Stock is never taken twice even when the flag fails (see Failures): the
// flag spares the inner strategy the duplicates, and the inner strategy's own
// idempotency on the ID stays the last line of defence.
//
// # Cost
//
// Issue and Verify compute one HMAC-SHA256 and do no I/O. Reserve adds one
// store round trip to a first submission (a Redis script call, or one
// INSERT), and one more when the inner strategy refuses it (to clear the
// flag). A duplicate costs a store round trip and an inner Lookup per poll
// (one more PostgreSQL statement to read the nonce), polling with backoff
// from 2ms to 50ms while it waits. The other methods cost nothing extra.
// Each flag lives as long as its token plus Options.ClockSkew: a Redis key
// that expires by itself, or a PostgreSQL row until PostgresStore.Purge
// deletes it (call it now and then, next to the inventory Sweeper).
//
// On the machine of BENCHMARKS.md, with 64 workers, in front of sqlcond with
// its flags in PostgreSQL (one more INSERT, with its own commit, per cart),
// it decided 1388 carts/s on one hot SKU, 0.69 of the bare conditional
// UPDATE without a ledger (raw-postgres, 2021/s), and 2464 carts/s over 100
// SKUs, 0.23 of it (10917/s). Over the whole run it kept 0.5 to 0.9 of
// sqlcond's throughput: the second commit matters most where commits are the
// bottleneck (many SKUs), least on a hot SKU, where the queue on the stock
// row dominates.
//
// # Failures
//
// A token error comes first, before any I/O: ErrInvalidToken or
// ErrExpiredToken (both inventory.ErrInvalidRequest); the client needs a
// new token (reload the checkout page). ErrInProgress (inventory.ErrContended)
// means the first submission of the token was still running when the wait
// ran out; send the same request again. Errors of the inner strategy come
// back unchanged and mean what they mean there: after a refusal
// (inventory.ErrInsufficientStock) the token is not used up, and a smaller
// cart may go with the same token; a hold that expired stays expired, and
// buying again needs a new token.
//
//   - Store unreachable: Reserve fails with an *inventory.UnavailableError
//     (inventory.ErrUnavailable) and changes no stock; the same token can be
//     submitted again.
//   - The connection to the store fails under a call (the store may or may
//     not have acted): RedisStore's calls are repeated by go-redis, and
//     PostgresStore repeats its statement up to three times. Every store
//     call gives the same answer when made again with the same nonce, so a
//     repeat is harmless. If the link stays broken, Reserve fails with an
//     *inventory.UnavailableError and changes no stock, as above.
//     TestFlagStoreFaults submits tokens from four buyers at once while the
//     link loses the reply to each token's first store call, or is cut at a
//     random moment: no token reached the inner strategy twice at a time,
//     every unit was available or held, and every token could be submitted
//     again.
//   - The caller's context ends during the store call: Reserve returns at
//     once; the call finishes behind it, bounded by Options.StoreTimeout, and
//     clears the flag it set.
//   - A process dies between setting the flag and the end of the inner
//     Reserve, or cannot clear the flag of a failed submission: if the
//     reservation was made, duplicates get it; if not, duplicates get
//     ErrInProgress until the claim is Options.ClaimLease old (Default:
//     15s), and then the next submission, finding no reservation behind the
//     flag in the inner strategy, takes the flag over and reserves. The
//     claim's time travels in its nonce; a submission so slow that it
//     outlives its lease races the one that took over, and the inner
//     strategy's idempotency on the ID gives both the same reservation.
//   - Redis fails over (Sentinel promotes a replica of a primary that
//     died): a flag the primary had and the replica did not get is gone, and
//     a submission of its token after the failover reaches the inner
//     strategy again. That is harmless while the inner strategy keeps its
//     reservations (it answers by the ID, and takes no stock twice), but a
//     duplicate in flight with the first is then no longer held back. With
//     RedisOptions.WaitReplicas a claim counts only once that many replicas
//     have it: a claim they did not confirm within ReplicaTimeout fails with
//     ErrNotReplicated (inventory.ErrUnavailable), its flag is cleared and
//     the same request may be sent again. TestFlagStoreServerFaults fails a
//     Sentinel set-up over midway through the tokens, after a round of
//     claims the replica never got: without WAIT the flag of that round is
//     lost (flags_lost=1 on its FAILOVER line) and the stock stays exact;
//     with WAIT 1 no flag is lost and no token reached the inner strategy
//     twice at a time.
//   - Servers' clocks disagree: a flag outlives its token by
//     Options.ClockSkew (Default: 1m), so servers whose clocks differ by less
//     still find it.
package token
