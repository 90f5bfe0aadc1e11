// Package redislock is the "Redis as a distributed lock" strategy, made
// correct: stock stays in PostgreSQL, a lock per SKU in Redis serialises the
// read-check-write of each SKU's stock, and fencing tokens checked by
// PostgreSQL keep a holder whose lock has lapsed from writing.
//
// It shares its PostgreSQL schema and reservation ledger with the other
// PostgreSQL strategies (Commit, Release, ExpireDue, Lookup and the stock
// administration are theirs); only the step of Reserve that takes units
// differs. It takes a redis.UniversalClient: a single server, Sentinel
// (redis.NewFailoverClient) and Redis Cluster (redis.NewClusterClient) all
// work. It needs Redis 5 or later: its scripts read the server's clock
// before they write. Run Redis with maxmemory-policy noeviction: an evicted
// lock lets two requests hold it (the fence still decides between them).
//
// # How a reservation runs
//
//  1. The request is validated and its lines sorted by SKU.
//  2. One Lua script call takes the locks of all its SKUs, all or none: for
//     each SKU it sets <prefix>lock:{sku} to a 128-bit random owner token
//     with a TTL (SET NX PX, LockTTL), and draws the SKU's next fencing
//     token from <prefix>fence:{sku} (INCR) in the same script. If any lock
//     is held by another owner the script writes nothing and names that SKU.
//  3. While a lock is busy, Reserve tries again with exponential backoff
//     (1ms doubling to 32ms, each pause jittered over its upper half) until
//     WaitTimeout, then fails with a *ContendedError, having changed nothing.
//     A cancelled context stops the wait at once.
//  4. A watchdog resets the TTL of the held locks every LockTTL/3
//     (compare-and-pexpire on the owner token) while the request runs.
//  5. In one PostgreSQL transaction (READ COMMITTED), a first pipelined batch
//     records the reservation (INSERT ... ON CONFLICT DO NOTHING on the ID,
//     which is what makes Reserve idempotent) and reads the stock rows with
//     a plain SELECT, no row lock. The lines are checked in SKU order; then a
//     second batch writes each row, in SKU order, with the fenced write
//     below, and ends with COMMIT.
//  6. The locks are released (compare-and-delete on the owner token), after
//     the commit or after any failure.
//
// The fenced write of each line is
//
//	UPDATE stock SET available = $new, fence = $token
//	WHERE sku = $sku AND fence < $token AND available = $read
//
// For a line of a SKU with a limit per buyer, the same batch adds the units
// to the buyer's usage of the SKU right after the SKU's fenced write,
//
//	INSERT INTO buyer_usage (sku, buyer, used) VALUES ($sku, $buyer, $n)
//	ON CONFLICT (sku, buyer) DO UPDATE SET used = used + $n WHERE used + $n <= $limit
//
// and a usage past the limit rolls the transaction back as a moved row does
// (see Limits per buyer below).
//
// The key of a SKU is its name in unpadded base64url inside a hash tag, so
// a SKU holding '{', '}' or ':' can neither move its keys into another SKU's
// Redis Cluster slot nor forge another SKU's key, and a SKU's lock and fence
// keys always share a slot. Fence keys never expire: one small key per SKU.
//
// # Why the lock alone is unsafe
//
// A Redis lock is a lease: it ends after LockTTL whether or not its holder
// is done. A holder that stops for longer (a garbage collection pause, a
// stalled network, a stopped VM: its watchdog stops with it), or whose lock
// is lost when Redis restarts or fails over, does not know its lock is gone.
// Another request takes the lock, reads the stock and sells the last unit;
// the first holder wakes up and writes the stock it computed from its old
// read, and the unit is sold twice. A plain read-check-write under a lock
// is exactly as safe as the lock's expiry is long, which is not safe at all.
// TestWithoutFencingTheSameScheduleOversells runs this schedule with the
// fence switched off and counts two holds of one unit.
//
// # Why the fence makes it safe
//
// Every acquisition of a SKU's lock gets a larger token than the one before,
// and the stock row remembers the token of the last write it accepted. The
// write above succeeds only while
//
//   - the row's token is older than the writer's: no newer holder of the
//     lock has written; and
//   - the stock is still what the writer read: nobody wrote between its read
//     and its write.
//
// A write that finds either condition false raises an error, so the whole
// transaction rolls back and nothing is recorded. Reserve then runs the
// transaction again under the same locks (at most 16 times, then
// inventory.ErrContended): a holder whose read shows a newer token stops
// with ErrFenced before it decides anything; the others check the fresh
// stock and write again.
//
// The second condition is what makes a token check sound for a
// read-modify-write. On its own, "token newer than the row's" lets a lapsed
// holder write between the read and the write of the current holder (its
// token is older than the current holder's, but newer than the row's), and
// the current holder then writes on a stale read. It also covers the writers
// that take no Redis lock: Release, ExpireDue and the stock administration
// change available with their own statements.
//
// Together the two conditions make the write a compare-and-set that
// PostgreSQL evaluates under its row lock: correctness rests on PostgreSQL,
// not on Redis or on clocks. The lock's part is to make that
// compare-and-set succeed the first time: without it, concurrent buyers of a
// hot SKU would mostly read the same stock and all but one would retry.
//
// Tokens keep growing when Redis forgets them: each new token is the larger
// of the counter plus one and the Redis server's clock in microseconds, so
// after a restart without persistence, or a failover to a replica that
// missed the last increments, new tokens still exceed every token
// PostgreSQL has seen (as long as the server clock does not step back).
//
// # Failover
//
// Through Sentinel (redis.NewFailoverClient) the strategy follows a
// promoted replica. A replica that missed the last writes forgets locks and
// counter increments: two buyers may hold one SKU's lock for a moment, and
// the fence makes the second one's write fail (a *FencedError) and retry;
// no reservation is kept in Redis, so none can be lost there. Options.
// WaitReplicas makes Reserve wait (WAIT) until the replicas have its locks
// before it writes to PostgreSQL, so that a failover forgets no lock they
// confirmed; the stock is as safe without it, since PostgreSQL decides by
// the fence, not by the lock.
//
// TestFailover measured both: a primary, one replica and three Sentinels
// on loopback, eight buyers selling out 300 units one at a time, the
// replication stream held for 50ms and the primary SIGKILLed; Sentinel
// promoted the replica in 2.3 to 3.2s. In two runs each:
//
//   - Without WaitReplicas: all 107 and 108 reservations acknowledged
//     before the kill were in PostgreSQL, exactly 300 units were held or
//     sold, none oversold; the calls during the failover failed and were
//     retried with the same ID (38 and 73 retries); the sale took 4.1 and
//     6.9s.
//   - With WaitReplicas 1 (ReplicaTimeout 500ms): the same totals (101
//     acknowledged before the kill, none lost, none oversold), at the cost
//     of availability: after the failover the new primary had no replica
//     until the old one came back as one, and until then Reserve failed
//     with ErrNotReplicated (2 and 31 of 48 and 53 retries; the others
//     timed out) and the sale took 19.4 and 25.0s.
//
// No write was fenced off in these runs (the forgotten locks, of one
// second's TTL, had lapsed before the promotion ended); TestFencingRefusesTheWriteOfAHolderWhoseLockLapsed
// shows the fence refusing the older of two holders, and its twin without
// the fence overselling. It promises no oversell and
// no lost reservation under any Redis failure, with or without
// WaitReplicas, as long as PostgreSQL keeps its commits; it does not
// promise that calls succeed while no primary is reachable, nor, with
// WaitReplicas, while no replica is. The test logs its numbers on a line
// starting FAILOVER (go test -run TestFailover -v ./redislock/).
//
// # Redis Cluster
//
// A script may only touch keys of one slot. On a *redis.ClusterClient the
// SKUs of a request are grouped by slot and the script runs once per group,
// all groups in one pipeline, which go-redis sends to their nodes in
// parallel: still one round trip of latency, but the groups are taken
// independently. When one group is busy the groups that were taken are
// released (one more round trip) before waiting, so no request ever waits
// while holding a lock, and crossing carts cannot deadlock; the price is
// that a many-SKU cart can be overtaken on hot SKUs by one-SKU carts until
// its WaitTimeout. A KeyPrefix holding a hash tag ("shop{eu}:") puts every
// key in one slot: one script call per request again, on one shard. A single
// server and Sentinel always take a request's locks in one call.
//
// # Cost
//
// Per Reserve without contention: 2 Redis round trips (take, release) and
// 3 PostgreSQL round trips (the batch that records the reservation and reads
// the stock; the writes with COMMIT; an empty statement with which the
// shared store hands the connection back). Each busy try adds a Redis round
// trip; a write that finds the stock moved costs a rollback and a rerun of
// the transaction, about 3 PostgreSQL round trips; the watchdog adds one
// Redis round trip every LockTTL/3, only to requests that run that long.
// Commit, Release, ExpireDue, Lookup and the stock administration touch only
// PostgreSQL and cost what they cost in the shared store. Locks are held
// from the script call that takes them to the one that releases them, which
// runs as soon as PostgreSQL acknowledges the COMMIT: the transaction's two
// round trips and one to Redis, not the hand-back of the connection.
//
// On the machine of BENCHMARKS.md, with 64 workers, it decided 878 carts/s
// on one hot SKU, 0.43 of the bare conditional UPDATE without a ledger
// (raw-postgres, 2021/s), and 2157 carts/s over 100 SKUs, 0.20 of it
// (10917/s): the slowest strategy there on every workload, about half of
// sqlcond, with the worst tail on a hot SKU (p99 721ms at 64 workers, where
// the median stays at 2.00ms). Waiters poll the lock with backoff, so the
// lock sits free between a release and the next poll, and nothing keeps an
// unlucky waiter from losing again and again. With the stock in PostgreSQL
// the lock adds round trips without taking work off the row; choose it where
// work is already serialised per SKU in Redis, and prefer sqlcond otherwise.
//
// The lock is unfair on purpose. A fair variant was built and measured on
// the same machine: waiters queued per SKU in order of arrival, the first
// one woken by the release through a blocking pop, newcomers kept out once
// a waiter had waited 20ms. On the hot SKU at 64 workers it cut p99 from
// about 0.9s to 0.25s and the worst wait from about 1.5s to 0.3s, but it
// cost a third of the throughput (about 540 carts/s down to 340), because
// every hand-over then waits for the woken waiter's round trip while the
// lock sits free, where an unfair lock goes to whoever is already asking.
// A caller who needs a bounded wait sets WaitTimeout and retries, or picks
// sqlcond, whose waiters queue in PostgreSQL's lock manager.
//
// # Limits per buyer, partial carts, longer holds, levels and backorders
//
// The Reserver offers limits per buyer (inventory.StockOptions.Limit with
// Request.Buyer), partial carts (Request.Partial) and backorders
// (StockOptions.Backorder) through SetStockWith, and is an
// inventory.Leveler and an inventory.Extender. The rules of a line are
// decided in Go under the SKU's lock, on the plain read, which returns each
// SKU's limit and, for a request with a Buyer, the buyer's usage of it: a
// line past the limit, or of a SKU with a limit in a request without a
// Buyer, is an *inventory.LimitError; a partial line holds what the row
// and the limit leave, from max(Min, 1) up to Qty, and the fenced write
// takes exactly that. The usage is added SKU by SKU after the SKU's stock
// row, the lock order every writer of the schema keeps, by a statement
// that refuses to pass the limit: the lock keeps other buyers of the SKU
// out, and the statement keeps out a holder whose lock lapsed, and any
// writer of the schema that takes no lock. Release, Cancel and expiry take
// the units off the usage once (the shared store's statements); Purge does
// not, so committed units go on counting. Backorders are the shared
// store's: available counts the allowance, so the fenced write is
// unchanged and available never goes below zero. Levels reads one snapshot
// that Purge does not change, and Extend moves a hold up to
// Options.MaxHold (default 1h) after it was reserved, in one statement,
// without any lock. A request without a Buyer or Partial costs what it
// did. Stock buckets are not offered: the lock already serialises a SKU's
// buyers, and SetStockWith with StockOptions.Buckets above 1 fails with
// inventory.ErrUnsupported.
//
// # Retention
//
// The ledger keeps every reservation unless Options.Retention is set. With
// it, Purge deletes settled reservations (committed, released, expired,
// and the tombstones of Cancel) once the retention has passed since they
// settled, at most limit per call, oldest first, in one statement; a
// Sweeper calls it after each expiry, from as many processes as you like
// (candidates are locked with FOR UPDATE SKIP LOCKED, so none is purged
// twice and purgers never wait for one another). Held reservations are never
// purged, and Purge takes no stock row lock: buyers never wait for it.
// Idempotency on an ID lasts as long as the retention: a purged ID is
// unknown, Lookup, Commit and Release fail with inventory.ErrNotFound, and a
// Reserve with it is a new reservation. Keep the retention well above the
// longest time a client may retry a request or settle its reservation.
//
// # Failures
//
// Besides the refusals every strategy returns (inventory.ErrInvalidRequest
// before any I/O; *inventory.InsufficientStockError,
// *inventory.UnknownSKUError, inventory.ErrConflict, with nothing recorded):
//
//   - Lock wait over: *ContendedError (inventory.ErrContended); nothing
//     changed. Send the same request again, or tell the buyer to come back.
//   - Lock lapsed and a newer holder wrote: *FencedError (ErrFenced, and
//     inventory.ErrContended); nothing changed; retrying is safe.
//   - Stock changed between read and write 16 times in a row (releases,
//     expiries or stock administration, which take no lock):
//     inventory.ErrContended; nothing changed; retrying is safe.
//   - Redis unreachable: an error wrapping go-redis's; nothing changed in
//     PostgreSQL. go-redis resends a command whose reply was lost
//     (Options.MaxRetries); every script here is safe to run twice: a lock
//     that already holds the caller's owner token counts as taken, with the
//     token it was taken with, and releasing or extending twice is harmless.
//   - Redis lost after the locks were taken: the PostgreSQL transaction
//     completes or fails on its own; a release that cannot reach Redis is
//     dropped and the locks expire after LockTTL. A lock that vanished with
//     a restart may let two requests hold it; the fence decides between them.
//   - A holder that crashes leaves its locks for up to LockTTL: other
//     requests for those SKUs wait, up to WaitTimeout.
//   - PostgreSQL errors are the shared store's: a COMMIT whose answer was
//     lost is an *inventory.OutcomeUnknownError, settled by retrying with the
//     same ID; a cancelled context or a cut connection leaves nothing half
//     applied.
package redislock
