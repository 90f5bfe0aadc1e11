// Package strategy names every inventory strategy of this module and opens
// any of them by name from one Config, so that a benchmark, an example or an
// application can switch strategies with a flag.
//
//	s, closeFn, err := strategy.Open(ctx, "sqlcond", &strategy.Config{PostgresURL: url})
//	if err != nil { ... }
//	defer closeFn(context.Background())
//
// Names lists the registered strategies; Lookup describes one, including the
// services it needs:
//
//	memory       in process (no service)
//	sqlcond      PostgreSQL: one conditional UPDATE per line
//	pessimistic  PostgreSQL: SELECT ... FOR UPDATE, then UPDATE
//	redislock    a Redis lock per SKU, fencing tokens checked by PostgreSQL
//	token        idempotency tokens in front of another strategy
//	             (Config.TokenInner, default sqlcond)
//
// A name Open does not know fails with an error that
// errors.Is ErrUnknownStrategy and lists the known names; a strategy whose
// service is not configured fails with ErrServiceNotConfigured. The package
// documentation of each strategy says what it guarantees and costs;
// BENCHMARKS.md and the README's table compare them.
//
// # Guarantees
//
// Open returns a strategy ready for use: its PostgreSQL schema is migrated
// (idempotently, safe from many processes at once), and every key it keeps in
// Redis starts with Config.KeyPrefix. Strategies opened with different
// schemas and prefixes share nothing, so one server can hold many isolated
// installations. The close function releases what Open made (pools and
// clients it opened from URLs, never ones it was given) and, with
// Config.Drop, removes the schema and the keys too.
//
// Strategies that accept only request IDs they issued themselves (token)
// implement IDIssuer; NewIDFunc returns the right source of IDs for any
// strategy.
//
// # Cost
//
// Open costs a connection when it opens one from a URL and, for the
// PostgreSQL strategies, a migration (a few statements, nothing when the
// schema is current). The strategies it
// returns are the packages' own; the registry adds no layer on the hot path,
// except for token, whose value also carries its Issuer.
//
// # Failures
//
// Open fails when the name is unknown (ErrUnknownStrategy), a service the
// strategy needs is missing from Config (ErrServiceNotConfigured), a URL does
// not parse or its server does not answer, or the migration fails. Nothing is
// left open when Open fails; the first two are mistakes in the
// configuration, the others may pass when the server is back. The errors of
// the strategies Open returns are their own: see package inventory for what
// each means to the caller.
package strategy
