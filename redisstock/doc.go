// Package redisstock keeps stock, holds and reservations in Redis and writes
// them behind to the PostgreSQL ledger every PostgreSQL strategy shares
// (internal/pgstore's stock, reservation and reservation_line tables).
//
// It is what flash-sale systems run: a Lua script checks and takes the units
// in Redis, and a queue carries every change to the database. It avoids the
// ways such systems lose data: a change and its event are one script, the
// writer acknowledges only after COMMIT, entries a crashed writer held are
// claimed by another, events that keep failing go to a dead-letter stream
// with a log line, keys are passed to scripts (never built in them) so Redis
// Cluster works, a Redis that lost its data is detected instead of read as
// zero stock, and Reconcile compares the two stores.
//
// # Guarantees
//
//   - The inventory.Reserver contract, checked by strategytest.RunConformance
//     with keys in one slot and spread over sixteen, limits per buyer and
//     partial carts included.
//   - Redis is changed only by one Lua script (script.lua). Every operation
//     is idempotent per reservation ID (a Reserve re-sent by go-redis after a
//     lost reply finds its record and changes nothing; a take, a grant, a
//     settle, a give or an undo re-sent finds its hold or record already in
//     the state it leads to). AddStock carries a token of its own for the
//     same purpose; SetStock sets an absolute number.
//   - Every change of stock or of a reservation appends its event to the
//     bucket's stream in the same script: no change without its event, no
//     event without its change. An event is one stream field (p) holding
//     its values joined by the unit separator (byte 31, which no ID or SKU
//     may hold); the writer also reads the entries of the format before,
//     one field per value, so that streams written by an earlier version
//     drain.
//   - Holds: a reservation reserved in one call under an ID its bucket
//     has no record of keeps the state of its hold in its record (field
//     hs, under the record's attempt): one key per reservation instead of
//     two. Every other hold (a cart over several buckets, an ID with an
//     earlier attempt, the holds Load writes) is a hold key of its own, as
//     before; the operations that sell, give back or undo a hold look in
//     the record first.
//   - Commit and Release in one call: a process remembers (for the last
//     65536 reservations at most) the lines of the reservations it
//     reserved, and a Commit or Release of one whose record and lines share
//     a bucket passes them, naming their stock keys, so that one script
//     call settles the record and sells or gives back the units. The
//     script compares them with the record's lines first; when they differ
//     (a guess gone stale) it settles only, and the caller finishes with
//     the record's lines in a second call, as a process that did not
//     reserve it always does.
//   - Versions: every process that shares a key prefix must run the same
//     version of the script, and writers must be upgraded before the
//     Reservers: a Reserver of an earlier version neither finds holds kept
//     in records nor writes events a writer of an earlier version reads.
//   - Keys are spread over Options.Buckets hash tags ({b0}, {b1}, ...): every
//     key of a SKU, and a bucket's marker, stream and due set, share one slot.
//     A reservation's record lives in the bucket of its ID.
//   - A cart whose lines and record share one bucket (always, with one
//     bucket) is one script call. Any other cart runs a protocol whose every
//     step is one script on one bucket: begin (a pending record, invisible
//     to Lookup, Commit and Release, with a deadline in the due set); take
//     each bucket's lines in SKU order under the ID and an attempt number
//     (a hold per bucket); grant (the record becomes held). A refused line
//     aborts the record first, so that no duplicate submission can grant it
//     any more, then undoes the holds taken; an undo of a bucket never taken
//     leaves a tombstone, so a late take of that attempt fails. A process
//     that dies half way leaves a pending record: a retry with the same ID
//     completes it (takes and grant are idempotent), and otherwise ExpireDue
//     aborts it after Options.PendingTimeout and gives its units back.
//     Nobody sees a cart granted in part: before the grant it does not
//     exist, and its taken units are simply not available, as units under a
//     row lock are not. Release and expiry move the record first, then give
//     each bucket's units back; a crash between leaves the record in the due
//     set, and ExpireDue (or the Release retried) finishes the gives.
//   - Coalescing: operations that callers make on one bucket at the same
//     time go to Redis together, as one call of the script that runs them
//     one after another, each exactly as it would run alone, and returns
//     every reply (Options.MaxBatch, default 64; two calls in flight per
//     bucket). No goroutine of its own: a caller that finds the bucket
//     free sends what is queued, and while its call is in flight the next
//     callers queue. Each operation keeps its own outcome, and stays
//     idempotent per reservation ID: a batch go-redis sends again after a
//     lost reply runs each operation again, and each finds its effect
//     already there. A caller whose context ends while its operation is
//     queued gets the context's error, and the operation is never sent;
//     one whose context ends while the batch is in flight gets an
//     *inventory.OutcomeUnknownError. A batch holds the keys of one bucket,
//     one hash slot, so Redis Cluster takes it.
//   - Available with more than one bucket: a cart over several buckets
//     takes them one script at a time, so while it is being taken,
//     Available of a SKU in a bucket it already took shows those units
//     gone; if the cart is then refused on a later bucket, they come back.
//     A caller may see Available fall and rise again with no reservation
//     granted, or read fewer units than any sequence of whole calls
//     explains: it is not linearizable with such Reserves (the suite's
//     linearizability check logs this instead of failing). Never more
//     units than are there, and Reserve decides on the units themselves,
//     so nothing is oversold. With one bucket (the default) every call is
//     one script, and Available is linearizable.
//   - Loss detection: every bucket has a loaded marker, written last by
//     Load. Every script checks its bucket's marker first; without it the
//     call fails with a *NotLoadedError (ErrNotLoaded, inventory.ErrUnavailable)
//     and changes nothing. A missing key is never read as zero stock or an
//     unknown SKU. Load rebuilds Redis from PostgreSQL under a table lock
//     only one process takes, and no writer's transaction passes: each
//     SKU's available units and version, every
//     reservation's record, the holds of held ones. The rebuilt stock counts
//     every hold and sale PostgreSQL knows of.
//   - The Writer (any number, in any number of processes, one consumer group
//     per stream) applies events in batches of one implicit transaction and
//     acknowledges (and deletes) entries only after the COMMIT. Applying an
//     event twice or out of order changes nothing more: stock events carry
//     the SKU's available units and a version, written only over an older
//     version (the stock table's fence column); reservation events carry the
//     whole reservation, inserted once, whose state only moves from held to
//     a final state. A reservation event is applied only once PostgreSQL has
//     the stock versions its takes left, so PostgreSQL never counts a hold
//     whose units it still counts as available (such a ledger would oversell
//     after a Load). In the transaction of a stock version, the writer also
//     records which reservation's take or return it carries (the
//     redisstock_hold table: reservation, SKU, attempt, units, taken or
//     returned), so that PostgreSQL knows, SKU by SKU, whom the units its
//     stock row does not count are held for.
//   - Sequence: every event carries its bucket's sequence number, which the
//     scripts keep in the loaded marker; PostgreSQL keeps, per bucket, the
//     highest it applied and the stream entry that carried it (the
//     redisstock_bucket table, written in the writer's transaction, its row
//     locked). Within one Redis history the number and the entry ID grow
//     together, and so do the bucket's current number and its stream's last
//     entry ID, which the writer reads before each batch. A batch that
//     breaks that order comes from a Redis that went back in time (a
//     failover to a replica that missed writes): the writer applies none of
//     it, deletes the bucket's marker, and every call refuses with a
//     *NotLoadedError until Load rebuilds from PostgreSQL (Writer returns
//     ErrWentBack; the writer.went_back metric counts it). A batch read
//     before a Load from the Redis it replaced fails the same check (Load
//     moves every sequence far on) and is dropped.
//   - Epoch: every Load names the history it starts (its epoch) in the
//     markers and in redisstock_bucket, and the writer applies a batch only
//     from a Redis whose marker carries the epoch PostgreSQL follows. A
//     server rebuilt by an earlier Load that still answers (an old master
//     during a failover) may hold events that fit the sequence as old
//     events of this history would; their epoch is another one: the writer
//     applies none, and unloads that server (ErrWentBack). Load and each
//     writer step send all their commands over one connection, so to one
//     server, even while a failover client follows a switch of masters.
//
// # Durability
//
// Redis acknowledges a reservation before PostgreSQL has it; what survives a
// Redis crash is what Redis kept, and what PostgreSQL got stays whole: after
// any Redis loss, every unit is available, held by a reservation PostgreSQL
// knows, or sold.
//
//   - With AOF and appendfsync always, Redis writes every script's effects
//     (the change and its event together) to disk before replying, so a
//     SIGKILLed redis-server restarts with every acknowledged reservation and
//     every event not yet written behind; the writers resume.
//     TestRedisRestartWithAOFKeepsWhatItAcknowledged SIGKILLs such a server
//     while eight buyers reserve and restarts it from its file: in five
//     runs, every reservation acknowledged (300 to 345 a run, 57 to 206 of
//     them after the restart) was there, nothing refused as not loaded, and
//     the ledger reconciled.
//     Replicas do not share this: see Failover.
//   - Without persistence, a restart comes back empty; the markers are gone,
//     so every call refuses until Load. Nothing is oversold. The reservations
//     acknowledged but not yet written behind are lost whole: Load rebuilds
//     from PostgreSQL, so their units are available again and their IDs
//     unknown (a Commit of one fails with inventory.ErrNotFound, and the
//     order must reserve again). The writer's lag (Writer.Lag, the
//     writer.lag metric: events not yet applied) bounds how many events could
//     be lost at any moment. A reservation's take and its record are two
//     events in two streams when its ID and its SKUs fall into different
//     buckets (with Options.Buckets > 1, most reservations), and a release
//     and its give two events even in one bucket, so the lost Redis can
//     leave PostgreSQL with one and not the other. Load settles that first,
//     from redisstock_hold, in its transaction (which locks out the writers,
//     so that none commits a batch of the lost Redis under it): a held
//     reservation one of whose holds PostgreSQL saw returned was released or
//     expired in Redis and becomes so (released; expired past its TTL); a
//     take whose reservation PostgreSQL never got, or got settled, gives its
//     units back to the stock row.
//     TestRedisLossMidSellOutOversellsNothing sells 600 units one at a time
//     with eight buyers and SIGKILLs the server after 200 acknowledged
//     reservations: in five runs over four buckets, 16 to 156 of the
//     acknowledged reservations were lost, and PostgreSQL ended with exactly
//     the stock held or sold, nothing available, nothing oversold and no
//     unit held by nobody; in one bucket, 27 to 150 lost, the same totals.
//     Its twin, whose Load leaves the orphan takes as the store did before
//     it kept redisstock_hold, ended each run with 6 to 30 units held by
//     nobody (go test -race -count=4 -run TestRedisLossMidSellOut -v
//     ./redisstock/, load average 16 to 20).
//
// # Failover
//
// Through Sentinel (redis.NewFailoverClient) the strategy follows a
// promoted replica, and the replica has the loaded markers: what the old
// primary acknowledged and never replicated is simply gone from the new
// one, which would sell those units again. The writer finds it (see
// Sequence above: the new primary's bucket sequence is behind what
// PostgreSQL applied, or its new entries come with numbers PostgreSQL
// already applied), applies nothing of it, and unloads the bucket; every
// call refuses with a *NotLoadedError until Load rebuilds Redis from
// PostgreSQL, which brings back the reservations PostgreSQL had. What the
// new primary acknowledged before the writer found it is lost the way a
// restart without persistence loses it: the units come back, the IDs are
// unknown, nothing is sold twice. With WaitReplicas, the writer also waits
// (WAIT) until the replicas have the events it read before it applies
// them, so that PostgreSQL never holds an event a failover can take back,
// and a Load counts only once the replicas have its markers.
//
// For some seconds of a failover two servers answer as masters: a returning
// old primary is turned into a replica by Sentinel only seconds after it
// is back (about ten in TestFailover), and a failover client may then hold
// connections to both. A Load whose commands were spread over the two
// rebuilt a part of each; a writer that read the old master's entries
// after a Load had rebuilt the other found them older than the last it
// applied and numbered below PostgreSQL's sequence, as old entries of the
// current history are, and applied them: PostgreSQL then held reservations
// the rebuilt Redis never had. That is what Reconcile reported after one
// TestFailover run without WaitReplicas (thirty reservations of
// consecutive IDs: "redis missing, postgres held"), and what the twin of
// TestOldMasterRefused reports every time. Both are closed (see Epoch
// above): TestLoadOnOneServer
// switches a client from one server to another in the middle of a Load,
// TestOldMasterRefused has a writer read an old master after such a Load,
// each with the twin that does as the store did before, and
// TestLoadWaitsForReplicas has a Load refused where no replica follows.
//
// A server without persistence that comes back empty as a master is a
// second failure, which no WAIT covers: Sentinel may promote it before it
// is a replica (a second failover, when the Sentinels of a loaded machine
// take the new master for down), and the new master then resyncs from it,
// empty. Every copy of what was not yet written behind is gone; the buyers
// find no markers, Load rebuilds from PostgreSQL, and those reservations
// are lost, with nothing oversold. Seen in TestFailover on a loaded
// machine: Sentinel promoted the replica, then four seconds later the old
// primary, restarted empty (replication offset 0), and 77 acknowledged
// reservations were lost; a run with WaitReplicas 1 lost 79 of 204 with
// the same marks (every buyer found no markers and called Load, the
// reservations lost were the last ones before the kill). Start such a
// server as a replica of the current master (replicaof), or do not restart
// it automatically, as Redis's replication documentation says.
//
// TestFailover (soak: INVENTORY_TEST_SOAK=1 go test -race -count=5 -run
// TestFailover -v ./redisstock/) measures it: a primary, one replica and
// three Sentinels on loopback, eight buyers selling out 600 units one at a
// time, the replication stream held for 50ms and then the primary
// SIGKILLed (a replica that lags when its primary dies); Sentinel promoted
// the replica in about 1.5 to 3s; the buyers run Load when a call refuses
// as not loaded.
//
//   - Without WaitReplicas, the old primary back empty as a master: in five
//     runs, of the 277 to 513 reservations acknowledged before the kill, 39
//     to 305 were lost, none of them written behind (Load brought back every
//     one PostgreSQL had); the writer found the new primary behind in three
//     runs and the bucket was rebuilt, and of what the new primary
//     acknowledged before that, 0 to 395 were lost; every run ended with
//     exactly 600 units held, sold or available in PostgreSQL, nothing
//     oversold, and Reconcile with no difference. The same sale without
//     the sequence check (a twin, as the writer was before it had one)
//     ended two runs of five with 655 and 759 units held or sold of 600:
//     55 and 159 sold twice in the ledger, each a reservation Reconcile
//     reported.
//     TestWentBack puts a Redis back in time every time (its keys
//     saved, five units sold and written behind, the keys put back) and
//     checks both: refused and rebuilt, PostgreSQL holds each unit once;
//     without the check it holds 15 of 10.
//   - With WaitReplicas 1, the old primary back as a replica of the new
//     master: in five runs, none of the 205 to 210 reservations
//     acknowledged before the kill was lost, nothing was oversold, and
//     Reconcile found no difference: a call answers only once the replica
//     has its change. The cost is availability: until the old primary was a
//     replica again, every change failed with ErrNotReplicated (an
//     inventory.ErrOutcomeUnknown, retried with the same ID).
//
// So the strategy promises under failover: nothing is sold twice in
// PostgreSQL, with or without WaitReplicas; with WaitReplicas at least 1,
// at most that many replicas lost at once, and no server coming back empty
// as a master, nothing acknowledged is lost; without it, the reservations
// the new primary lacks and PostgreSQL lacks too are lost, as are those the
// new primary acknowledged before the writer found it behind (up to 395 in
// the runs above). It does not promise that WAIT survives more
// failures than replicas confirmed, nor anything of WAIT on a Redis
// Cluster, where WaitReplicas is refused. One case the check cannot see: a
// new primary whose clock is behind the old one's by more than the
// failover took gives its new entries IDs below those PostgreSQL applied;
// the check then finds it only once its sequence passes PostgreSQL's, and
// events it took in between are applied. The numbers vary from run to run
// with what the replica missed; the test logs them on a line starting
// FAILOVER, with the number of failovers Sentinel announced.
//
// # Costs
//
// Measured with invbench beside the bare Lua decrement (raw-redis), in
// alternated runs on a 2-core machine others were loading (load average 6
// to 9), medians: hot SKU at 64 workers 0.33x raw-redis (0.21x before
// operations were coalesced), 100 SKUs 0.27x (0.13x), one worker 0.23x
// and 0.28x; under heavier load (13 to 16) 0.63x and 0.35x. What remains
// is Redis's CPU per operation (about 30 µs for a one-bucket Reserve, each
// of its reads and writes a call from Lua) and the writer's PostgreSQL
// work, not round trips. Since every script also keeps its bucket's
// sequence number (the check that catches a Redis gone back in time, see
// Failover), three runs with only the benchmark running gave a median of
// 0.26x raw-redis on the hot SKU at 64 workers. A coalesced call now
// reads and writes each SKU's stock once however many of its operations
// touch it, and converts fewer numbers in Lua: in a batch of 64 on the
// hot SKU a new reservation costs Redis about 43 µs of CPU (49 before), a
// commit 30 (37), against about 5 to 9 µs for raw-redis's whole
// unbatched script; in three runs alternated with the code before, on a
// machine loaded far beyond its two cores (load average 54 to 66), the
// medians were 0.45x raw-redis on the hot SKU (0.30 before) and 0.58x
// over 100 SKUs (0.36), with runs between 0.2 and 0.76. Since then a
// Commit or Release of a reservation reserved in the same process is one
// call, an event one stream field, and a one-call reservation one new key:
// a new reservation costs Redis about 28 µs (39 before) and a commit 25
// (44, two calls); in seven runs alternated with the code before at load
// 6 to 14, the medians were 0.42x raw-redis on the hot SKU (0.44 before,
// inside the noise) and 0.53x over 100 SKUs (0.31). What is left is CPU
// per cart on two saturated cores: about 133 µs (Redis, the buyers and
// the writer, PostgreSQL) against raw-redis's 68, whose reservations
// leave no record, due-set entry or event, and no ledger to write. On a
// Redis Cluster of three masters on the same two cores (16 buckets, so
// nearly every cart spans buckets) it was slower than one Redis. Since
// then the script hands Redis the strings it was given (a line's units,
// an attempt taken from the clock) instead of numbers Redis formats with
// %.17g (or Lua with %.14g in an event), reads a record in one HGETALL
// instead of an HMGET of thirteen fields (thirteen nils for a new ID),
// and writes a settled record's state with its hold's in one HSET: with
// BenchmarkScriptBatch's calls (batches of 64 on the hot SKU), the
// script before and now interleaved batch by batch, 100 batches each at
// load 5 to 7, the medians of Redis's time per operation were 33.5 µs
// for a new reservation (37.1 before), 32.7 for a commit (33.4) and 49.9
// for a release (57.5). Each redis.call costs about 1 to 3 µs, and
// running the script's definitions 8 to 13 µs per call (before any
// operation). In invbench at 64 workers, three runs alternated with the
// code before (load 8.6 falling to 3.3), medians: 9611 carts/s on the
// hot SKU (7470 before; 0.27x raw-redis against 0.21x) and 9314 over 100
// SKUs (8287; 0.22x against 0.27x), inside this machine's noise. See
// BENCHMARKS.md.
//
// Reserve: one operation when the cart and its record share a bucket;
// otherwise 2 + (buckets of the cart), plus an abort and the undos on
// refusal. Commit: when the record and the lines share a bucket, one in
// the process that reserved it (settle1: settle, move the units from held
// to sold and leave the due set), two in any other (settle, then the
// rest); else one, one per bucket of the cart and one to leave the due
// set. Release: the same, giving the units back instead of selling them. Cancel: as
// Release for a held reservation; one operation for an unseen ID (a
// tombstone record without lines, streamed like any reservation, so the
// ledger and Load keep it); for a cart another call is still taking, one to
// abort it for good, the undos of its buckets, and one to write the
// tombstone, after which that Reserve fails with inventory.ErrCancelled.
// Available and Lookup: one. Under load, each bucket's concurrent operations go as
// one script call. Redis memory: a record per reservation, for good
// without Options.Retention (as the ledger keeps one) and for the
// retention after it settled with it, a hold key per bucket of each unless its record keeps
// its hold, and the events until a
// writer applies them (one per reservation of one bucket, one per commit,
// two per release). The writer: one PostgreSQL round trip per batch (two
// when a batch holds reservations whose takes travel in other buckets'
// streams), one Redis call before it to read the bucket's sequence (with
// WaitReplicas, and the WAIT), one to acknowledge, which trims the applied
// entries from the stream; after a batch smaller than WriterOptions.BatchSize it
// waits WriterOptions.Linger (10ms) so that the next carries more.
//
// # Backorders, stock levels and longer holds
//
// The Reserver offers backorders (inventory.StockOptions.Backorder, through
// SetStockWith) and is an inventory.Leveler and an inventory.Extender. A
// SKU's stock hash keeps, beside its available units (a) and version (v),
// its backorder (b), what it received (r: what SetStock, SetStockWith and
// AddStock changed a by, the backorder included) and its sold units (o);
// held is r - a - o, so the hot path (take, give, undo) writes nothing
// more than before.
//
//   - Backorders: available counts the unused allowance, as in the
//     PostgreSQL strategies, so the check of a take is unchanged and a
//     never goes below zero; SetStock keeps a SKU's backorder, AddStock
//     may add up to inventory.MaxStock plus it. Every stock event of
//     SetStock, SetStockWith and AddStock carries the backorder (field b);
//     the writer keeps it in the stock row's backorder column by the
//     version that set it (backorder_fence, so events applied twice or
//     out of order leave the newest), Load writes it back, and Reconcile
//     compares it.
//   - Levels: one script call on the SKU's bucket reads a, r, o and b
//     together. A commit moves a reservation's units from held to sold
//     bucket by bucket (each hold from T to S, once), after its record;
//     the record stays in the due set until every bucket has, so a crash
//     in between is finished by ExpireDue, and Commit returns after. Load
//     counts o and the held units from the ledger, and the units sold by
//     the committed reservations Purge deleted from it (redisstock_sold,
//     see Retention).
//   - Extend: one script call on the record's bucket moves the expiry of a
//     held, active reservation (never earlier, never past Options.MaxHold,
//     default 1h, after it was reserved) and its place in the due set, and
//     streams the record; the writer moves expires_at of a held
//     reservation only later, Load rebuilds it, and Reconcile compares it.
//     A hold already due is expired then, as Commit does.
//
// # Limits per buyer and partial carts
//
// The Reserver offers limits per buyer (inventory.StockOptions.Limit,
// through SetStockWith) and partial carts (inventory.Request.Partial), on
// one Redis and on a Cluster, with one bucket or many.
//
//   - The limit is a field of the SKU's stock hash (l), set by
//     SetStockWith and kept by SetStock and AddStock. A buyer's usage of a
//     SKU, the units of its held and committed reservations, lives in the
//     SKU's usage hash (<prefix>{b<n>}:u:<sku>, field the buyer), in the
//     SKU's bucket and so its hash slot, and is passed to the script as a
//     key like every other key. A request that names a buyer passes the
//     usage key of each line beside its stock key; a request without one
//     passes none, and a line of a SKU with a limit refuses it.
//   - The script that takes a line decides it against the stock and the
//     usage together and, when it takes the units, adds them to the usage
//     in the same script: a line past the limit is refused with an
//     *inventory.LimitError naming the SKU, the limit and the usage the
//     script saw, and the cart takes nothing. The hold records which of
//     its lines it counted (hc, with the buyer, y), and with Partial the
//     units each line held (hq): the script that gives them back (Release,
//     Cancel, expiry), or undoes them (a cart refused on a later bucket, a
//     cart abandoned half way and undone by ExpireDue, a duplicate
//     submission's compensation), takes exactly the counted units off the
//     usage in the same step as it returns the units to stock, once: it
//     acts only on a hold still taken (T), so a re-sent script finds it
//     given (G) or undone (U) and changes nothing. A re-sent take under
//     the same attempt finds its hold and answers what it took. A commit
//     leaves the usage as it is: sold units go on counting.
//   - Partial: each line holds min(Qty, the stock, what is left of the
//     limit), and at least its Min (1 when 0), or the cart is refused
//     whole. In one bucket the whole cart is one script, so it is sized in
//     one snapshot. Across buckets each line lives in one bucket and is
//     sized by the take of that bucket, all of it or none of it: a line
//     never holds units of two scripts, so each line is all-or-nothing at
//     the size its bucket's take decided, and the cart is all-or-nothing as
//     any cart across buckets is (a line refused in a later bucket undoes
//     the earlier ones, with their usage). The grant writes the units held
//     into the record, whose lines Reserve, Lookup and the ledger report.
//     Lines of other buckets are sized when their take runs, not at one
//     instant: a partial cart over several buckets may hold less of one
//     line than was there when an earlier bucket was taken.
//   - Repeats: a record found under the ID answers the request as
//     inventory.CheckRepeat decides (the same buyer, Partial alike, the
//     lines within what was asked); a cart still being taken continues
//     only for the same lines, buyer and Partial.
//   - Ledger: every reservation event carries the buyer, Partial and the
//     counted flags of its lines; the writer writes them into
//     reservation.buyer, reservation.partial and reservation_line.counted,
//     the columns the PostgreSQL strategies use (0008_levels_limits.sql).
//     Every stock event carries the SKU's limit beside its backorder, kept
//     in stock.buyer_limit by the same version fence (backorder_fence).
//     The writer does not keep buyer_usage: Load rebuilds each usage from
//     the ledger, the counted lines of the buyer's held and committed
//     reservations, plus the buyer_usage rows into which Purge folds the
//     counted lines of the committed reservations it deletes (see
//     Retention), and the holds' counted flags with it. Reconcile compares the limit, each
//     reservation's buyer and Partial, and each usage with the ledger's;
//     Repair writes limits and reservations, and a reservation it writes
//     counts no line.
//   - Cost: a request without a buyer or Partial sends nothing more than
//     before. One with a buyer adds a key per line to its take and to the
//     give of its units (the hint of a Commit or Release in one call
//     carries the buyer, so its usage keys go with the stock keys), and
//     the script reads and writes the usage of each line of a SKU with a
//     limit. On the hot SKU at 64 workers, every cart naming one of 10000
//     buyers against a limit of 1000, three alternated runs each gave
//     medians of 17280 carts/s with the limit and 17149 without (0.26x
//     and 0.25x raw-redis, load 0.7 to 2.0): inside the noise (see
//     BENCHMARKS.md).
//
// # Retention
//
// Without Options.Retention (the default, 0, as in the PostgreSQL
// strategies) Redis keeps every reservation's record, and the ledger every
// row, so that an ID stays idempotent for good, and Redis's memory grows
// with the shop's history. With it, both forget a settled reservation
// once the retention has passed:
//
//   - Redis: the script that finishes a reservation (its units sold,
//     given back or undone, and the record out of the due set: a commit,
//     a release, an expiry, a Cancel, a cart aborted and undone) sets the
//     expiry of its record to the retention in the same step (PEXPIRE
//     with NX, so that a script run again keeps the first), and a hold key
//     gets its expiry in the script that gives it back, undoes or sells
//     it. A tombstone of Cancel gets it when it is written. Redis frees
//     them with no sweeper; the due set's entries go in the same scripts,
//     the events when the writer trims them, AddStock's answers after an
//     hour (as before). What remains are the SKUs' keys (stock, usage) and
//     the buckets' (marker, streams, the due set of the held ones). A held
//     or pending reservation, or one still in the due set, never expires:
//     whatever is left to do for it stays to be done.
//   - The clock is Redis's, not Options.Now: the retention counts from the
//     moment the script ran as the server's clock has it, a manual Now
//     does not move it, and replicas get the moment itself (Redis
//     propagates the expiry as an absolute time), so a failover keeps it.
//     Purge, Load and Reconcile count by Now; the two agree as far as the
//     clocks do.
//   - Idempotency on an ID lasts as long as the retention, as in the
//     PostgreSQL ledger: inside it a retry gets the same answer as before;
//     after it the ID is unknown (Lookup, Commit and Release fail with
//     inventory.ErrNotFound, Cancel records a tombstone) and a Reserve
//     with it is a new reservation. A new ID's attempts are numbered from
//     the moment it is reserved (in microseconds), so an ID taken anew
//     numbers its takes past those it had before, and the writer, which
//     finds the ledger still holding the settled reservation under the
//     ID, created before, forgets it (its lines and holds with it) before
//     it writes the new one; the takes of the new one keep their
//     redisstock_hold rows.
//   - The ledger: Purge (which a Sweeper calls) deletes the settled
//     reservations past the retention by Now, counted from their ExpiresAt
//     (the writer records no moment of settling; a commit or release comes
//     before it), at most limit in one statement. What a deleted committed
//     reservation sold still counts: its units go to redisstock_sold
//     (0017_redisstock_retention.sql), its counted lines to buyer_usage, so
//     that a Load rebuilds the same sold units (Levels) and the same usage
//     (a buyer's limit) as before, and Reconcile compares the same usage.
//     Its redisstock_hold rows go with it, but those of a later attempt
//     (the takes of a new reservation under the ID, which may reach the
//     ledger before it).
//   - Load writes a settled record with what is left of its retention, by
//     Now from its ExpiresAt, and does not write one past it. A take
//     numbered the retention or more after the creation of the committed
//     reservation the ledger has under its ID is the take of a new one
//     under that ID that PostgreSQL never got (a lost Redis): Load gives
//     its units back, as for any such take
//     (TestRetentionLoadGivesBackTheTakeOfAnIDTakenAnew; its twin, without
//     a retention, keeps it, and 3 units are held by nobody).
//   - Reconcile does not report a settled reservation one side holds and
//     the other does not once the retention has passed since it was
//     created: each side forgets it on its own. A held one missing on
//     either side, or a settled one inside the retention, still is.
//   - The writer applies every event after its record expired in Redis:
//     a reservation event carries the whole reservation, a take or a
//     return its lines, units and the stock versions, and the writer
//     reads only PostgreSQL besides the streams. It writes no reservation,
//     and no take, whose retention has passed since it was reserved (by
//     Now) and that the ledger does not have: that is a batch applied
//     again (a writer died between its COMMIT and its acknowledgement)
//     after Purge deleted what it wrote, and written again a commit would
//     count its sold units twice, and its take would hold units that a
//     Load gives back though they were sold. TestRetentionReplayAfterPurge
//     has a writer stop after its COMMIT, purges, and lets its successor
//     apply the batch again: the ledger stays purged and a Load rebuilds
//     3 units sold; its twin, which writes them again, rebuilds 6.
//   - Keep the retention far above the longest a client may retry a
//     request or settle its reservation, above Options.PendingTimeout
//     and the time a call may stay in flight (a take of an undone attempt
//     that arrives after the undo's tombstone expired would hold units for
//     no reservation), and above the writer's lag: a reservation event or a
//     take that reaches the writer later than the retention is not
//     written, and the ledger then lacks what Redis has (Reconcile reports
//     it, Repair writes it). Records settled while no retention was set
//     keep no expiry.
//
// TestRetentionFreesSettledRecords settles 37 reservations in every way
// (committed, released, expired, tombstones, carts over four buckets with
// their hold keys, a buyer with a limit) with a retention of 1s, and 1.5s
// later SCAN finds only the SKUs' and buckets' keys and the three held
// records: 49 keys down to 12 in one bucket (the records' and hold keys'
// MEMORY USAGE from 7648 bytes to 552), 131 to 26 over four (18272 to
// 1416); its twin without a retention keeps all 131 keys (18272 bytes),
// and the check fails on it. The cost on the hot SKU at 64 workers, three
// runs alternated with and without a retention of an hour: medians of
// 12603 carts/s against 13263 at load 1 to 2 (about 5%: 4% in the
// scripts' PEXPIREs, under 1% in the writer's lookups of the ledger's
// rows under each reservation's ID), 9485 against 11629 at load 2 to 4
// with the machine shared (see BENCHMARKS.md).
// TestRetentionPurgeLoadAndReconcile purges the ledger while Redis still
// has the records, reconciles, loads a wiped Redis from the purged ledger
// and finds the sold units and the buyer's limit as before.
//
// Nothing here is refused with inventory.ErrUnsupported across Cluster
// slots: every key a step reads or writes is in the bucket it runs on.
//
// # Stock buckets
//
// SetStockWith with inventory.StockOptions Buckets K > 1 (or
// Options.SKUDefaults for every SKU SetStock creates) splits a SKU's units
// evenly over K stocks of their own. These are not the hash slots of
// Options.Buckets, over which every key is spread; the two work together:
// bucket j of a SKU whose keys live in slot bucket n lives in slot
// (n+j) mod Options.Buckets, so K buckets fill K slots (K masters of a
// Cluster, K coalescing lanes) while K <= Options.Buckets.
//
//   - Layout: bucket 0 is the SKU's own stock hash, which also keeps K
//     (field k); bucket j > 0 is the stock hash of the name
//     sku+"\x1e"+j (byte 30, a control character no SKU may hold, and the
//     bucket's number). A SKU kept whole has no field k and is exactly what
//     it was: same keys, same scripts, nothing more on the hot path. To
//     every script, the writer, Load and Reconcile a bucket is a stock of
//     its own: its takes, gives and events carry its own available units
//     and version, and the ledger keeps it as a stock row of that name
//     (bucket 0 in the SKU's row), so the ledger's stock of the SKU is the
//     sum of its rows, each kept right by its own version fence.
//   - Reserve takes each line from one bucket: the one a hash of the
//     reservation ID picks (so buyers in one process or many spread over
//     them), or, for a one-line cart, the first from there that shares
//     the hash slot of the reservation's record, so that the cart is one
//     script call. A line its bucket refuses as short reads every bucket
//     of the SKU (those of one slot in one script call, so in one snapshot;
//     with Options.Buckets 1, all of them): when the SKU as a whole lacks
//     the units, the line is refused (*inventory.InsufficientStockError
//     with the SKU's units); else the cart is tried again with the line
//     pointed at the first bucket from there that has them all, or, when
//     none does, split into parts taken from several buckets, the fullest
//     first. The parts of a line are lines of the cart to every step (one
//     script, or the protocol of a cart over several buckets above), so
//     they are held all or none, as any cart's lines are; a partial
//     line's parts are each all of it or nothing. So the last unit of a
//     SKU is sold whichever bucket a buyer starts from, and a line larger
//     than any one bucket is served. After 16 rounds whose buckets other
//     buyers emptied each time, Reserve fails with inventory.ErrContended.
//   - The record's lines (and the ledger's reservation_line rows) name
//     the bucket of each line or part, so a release, a cancel or an expiry
//     gives the units back to the bucket they were taken from. Reserve,
//     Lookup and Extend report the SKU, a line's parts summed.
//   - Available and Levels sum the buckets. With the buckets in several
//     slots they are read one slot at a time (at once, each slot at its
//     own instant), so with buyers active the sum is not one instant's, as
//     for carts over several buckets (the suite logs the linearizability
//     verdict of one-line carts then; with one slot it asserts it).
//   - SetStock and SetStockWith spread the units evenly, one script per
//     bucket, bucket 0 (with k) last; AddStock adds to the emptiest
//     buckets and removes from the fullest, never below zero in a bucket,
//     one AddStock of a bucket at a time: a removal a bucket refuses
//     (buyers took its units meanwhile) gives back what it removed from
//     the others and plans again, and one the SKU as a whole cannot give
//     fails with ErrInsufficientStock, changing nothing. Neither is one
//     atomic step across the buckets: a reader may find some buckets set
//     and others not yet.
//   - A process learns a SKU's K from SetStockWith, SetStock, AddStock,
//     Available, Levels or a line refused by bucket 0, the only bucket a
//     process that has not learnt it takes from (correct, only not
//     spread), and remembers it: K of a split SKU never changes
//     (SetStockWith with another K, 1 included, fails with
//     inventory.ErrUnsupported), so it never goes stale.
//   - Load rebuilds every bucket from its stock row, with the holds and
//     sales of the lines taken from it, and gives bucket 0 its k (one more
//     than the last bucket's number). Reconcile compares each bucket as a
//     stock of its own, so it reports each bucket that differs (the name
//     carries the bucket's number) and Repair writes it.
//   - Rebalance spreads a SKU's available units evenly over its buckets
//     again (a line falls over to the buckets that have the units anyway,
//     so it is for spreading the load, not for selling the last unit). It
//     reads the buckets and makes each planned move of q units from bucket
//     F to bucket T in four script calls, each on one slot and each
//     harmless when run again: arm a token of the move in T's slot; take
//     up to q units from F (what F still has: buyers never find a bucket
//     below zero) and record the move (to, units, token) in F's slot, in
//     its due set 30 s on; add the units to T while the token is armed,
//     disarming it; delete the record, then the token. Between the take
//     and the add the units are on the way, counted by neither bucket (an
//     Available meanwhile reads them as gone, as with a cart over several
//     buckets). A move cut off there (a crash, a cut connection) stays in
//     the due set, and ExpireDue finishes it: the add happens once, since
//     the token it disarms is there until the record is gone.
//     TestRebalance checks the spread, every unit while buyers reserve,
//     and moves cut off after the take and after the add, finished by
//     ExpireDue; its twins (a move that takes units its bucket no longer
//     has, a move with no record of the units on the way, a finish that
//     adds them whatever the token says) are caught; TestRebalanceCluster
//     runs the first and the last on a Redis Cluster of three masters,
//     where a move crosses masters. A Redis that loses
//     its data with a move on the way loses those units as it loses any
//     change not yet written behind (Loss detection above).
//   - Not offered: a limit per buyer or a backorder on a split SKU
//     (inventory.ErrUnsupported: a usage and a backorder are kept per
//     stock). A retry of a Reserve whose outcome was unknown, made after
//     its line fell over to another bucket, may find the pending cart with
//     other buckets than it picks and fail with inventory.ErrConflict.
//
// TestConformanceStockBuckets runs strategytest.RunConformance whole with
// every SKU in eight buckets, with keys in one slot and over sixteen, and
// TestConformanceClusterStockBuckets on a Redis Cluster of three masters;
// TestStockBuckets runs the store-neutral rules of strategytest
// (LastUnitIsSold, UnitsReturnToTheirBucket, which pgtest runs for the
// PostgreSQL strategies too) with their twins (a take that refuses when
// its first bucket is short, units given back to bucket 0);
// TestLoadRebuildsStockBuckets wipes Redis under held, split and sold
// lines and loads it (its twin, a Load that forgets k, reads 0 units).
//
// Cost, hot SKU at 64 workers, three alternated runs (see BENCHMARKS.md):
// on one Redis, where every bucket shares the one slot, K=8 sold 8899
// carts/s against 9540 with K=1 (ratios 0.78 to 1.06: nothing gained); on
// a three-master Cluster (Options.Buckets 16) 3347 against 2509, 1.30
// times, at load 3 to 6.
//
// # Failures
//
//   - Redis unreachable before anything was sent: *inventory.UnavailableError.
//     A connection that failed after a script was sent, or a context that
//     ended while waiting for its reply: *inventory.OutcomeUnknownError; a
//     retry with the same ID settles it.
//   - Redis without the store's data: *NotLoadedError until Load.
//   - PostgreSQL away: Redis keeps selling, events wait in the streams, the
//     lag grows, and the writers catch up when it comes back.
//     TestWriterCatchesUpAfterItsConnectionsAreKilled terminates a writer's
//     backends before its transactions while buyers reserve, and finds the
//     ledger agreeing with Redis once the writer has drained (a writer that
//     acknowledged before COMMIT would lose those batches, and the test's
//     twin shows the check catching it).
//   - An event that fails MaxFailures times moves to its bucket's
//     dead-letter stream (<prefix>{b<n>}:x) with the error, and the writer
//     logs it at error level; PostgreSQL misses it until it is replayed, and
//     Reconcile reports the difference.
//   - Reconcile needs drained streams (ErrNotDrained otherwise); it reports
//     every stock and reservation difference and, with Repair, makes
//     PostgreSQL agree with Redis.
package redisstock
