// Package otelinventory instruments any inventory.Strategy with OpenTelemetry
// metrics and traces. Wrap returns a Strategy that calls the one it wraps and
// records, for every call, how long it took and how it ended:
//
//	inv := otelinventory.Wrap(stock, &otelinventory.Options{Strategy: "sqlcond"})
//	go inventory.NewSweeper(inv, nil).Run(ctx) // so that expiries are counted
//
// It uses the OpenTelemetry API only; the application chooses the SDK and the
// exporter (Prometheus, OTLP) and hands its providers to Options, or sets the
// global ones.
//
// # Metrics
//
// Names and units follow the OpenTelemetry semantic conventions: durations in
// seconds, counts with a {annotation} unit, no _total suffix (a Prometheus
// exporter adds it). Every instrument carries the strategy attribute (the
// Options.Strategy name); those of calls carry outcome too.
//
//	inventory.reserve.duration      histogram, s            Reserve calls, by outcome
//	inventory.commit.duration       histogram, s            Commit calls, by outcome
//	inventory.release.duration      histogram, s            and so on for available, lookup,
//	                                                         set_stock, add_stock, expire_due, cancel
//	inventory.reservations          counter, {reservation}  Reserve calls, by outcome: granted or why not
//	inventory.commits               counter, {reservation}  Commit calls, by outcome
//	inventory.releases              counter, {reservation}  Release calls, by outcome
//	inventory.cancels               counter, {reservation}  Cancel calls, by outcome
//	inventory.expiries              counter, {reservation}  holds ExpireDue expired
//
// The outcome of a call that succeeded is "granted" for Reserve and "ok" for
// the others; otherwise it names the sentinel error it matched: invalid,
// insufficient_stock, unknown_sku, not_found, conflict, id_cancelled (a
// Reserve of an ID Cancel recorded), not_held, contended,
// outcome_unknown, unavailable, canceled, deadline_exceeded, or error for any
// other error. A granted Reserve may be an idempotent replay of an ID that
// was granted before: the counter counts decisions, not units taken.
//
// SKUs and reservation IDs never become metric attributes (their number has
// no bound); they go on spans only.
//
// A strategy that implements inventory.MetricsReporter also gets one
// asynchronous instrument per Metric of its first snapshot, named
// inventory.<strategy>.<metric name> (inventory.groupcommit.batch.size.count),
// a counter or a gauge as the Metric's Kind says, read on every collection.
//
// # Traces
//
// Every call is a span (inventory.reserve, inventory.commit, ...) of kind
// internal, started from the caller's context, so it nests under the
// caller's span and the spans of an instrumented pgx or go-redis client
// (otelpgx, redisotel) nest under it. Spans carry the strategy and outcome,
// and the reservation ID, the SKUs, the number of lines and units of the
// call. A refusal (insufficient stock, a conflict, a cancelled ID, a
// reservation no longer held) is an answer, not a failure: its span keeps an unset status. A
// failure (outcome_unknown, unavailable, contended, canceled,
// deadline_exceeded, error) sets the span's status to Error, records the
// error, and sets error.type to the outcome.
//
// # Cost
//
// While no provider is configured (Options leaves them nil and the global
// ones were never set), a call allocates nothing more than the wrapped
// strategy's call does: no span is started, and every measurement goes to
// the global no-op with attribute sets made once by Wrap. BenchmarkOverhead
// shows it. With an SDK behind it, a call costs a span and three
// measurements.
//
// # Failures
//
// Instrumentation never changes what a call returns: the wrapped strategy's
// result and error pass through untouched. The optional features (stock
// buckets, Rebalance, Purge, Levels, Extend) pass through the root
// package's helpers, so the wrapper offers them exactly when the wrapped
// strategy does, and refuses them as it does. An instrument the provider
// refuses is reported to otel.Handle and replaced by a no-op one. Wrap of a
// nil Strategy returns one whose every call fails with an error that
// errors.Is inventory.ErrInvalidRequest.
package otelinventory
