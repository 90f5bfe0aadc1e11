package pgstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
)

// DB is the part of a PostgreSQL client the store uses. *pgxpool.Pool and
// *pgx.Conn satisfy it; a *pgx.Conn serves one call at a time. SendBatch
// must honour pgx.Batch.BeginTx, as both do.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Defaults of Options.
const (
	DefaultSchema = "inventory"
	DefaultTTL    = 15 * time.Minute
)

// maxIdentLen is the longest identifier PostgreSQL keeps whole (NAMEDATALEN-1);
// longer names are truncated by the server, so two could collide.
const maxIdentLen = 63

// Options configures a Store. A nil *Options takes every default.
type Options struct {
	// Schema is the PostgreSQL schema holding the tables. Any name of 1..63
	// bytes of valid UTF-8 without NUL is accepted and always quoted.
	// Default: "inventory".
	Schema string
	// DefaultTTL is the hold lifetime of a request whose TTL is 0.
	// Default: 15m.
	DefaultTTL time.Duration
	// Now is the clock reservation expiry is measured by. It is read in Go
	// and passed to the server as a parameter. Default: time.Now.
	Now func() time.Time
	// Name prefixes the messages of errors the store returns, so that they
	// name the strategy. Default: "pgstore".
	Name string
	// Retention is how long Purge keeps a settled reservation (Committed,
	// Released, Expired, or a tombstone of Cancel) after it settled, by Now;
	// see Purge. Zero or negative keeps every reservation, and Purge deletes
	// nothing. Default: 0.
	Retention time.Duration
	// SKUDefaults are the settings SetStock gives a SKU it creates (a SKU
	// that exists keeps its own). Default: the zero value, a SKU kept whole.
	SKUDefaults inventory.StockOptions
	// MaxHold is the longest a hold may last from the moment it was
	// reserved: Extend never moves an expiry past it. Zero or negative means
	// the default. Default: 1h.
	MaxHold time.Duration
	// Limits says that the strategy offers limits per buyer
	// (inventory.StockOptions.Limit, inventory.Request.Buyer): its step is a
	// RequestStep that takes them. Without it, SetStockWith and SKUDefaults
	// with a Limit fail with inventory.ErrUnsupported. Default: false.
	Limits bool
	// Backorders says that the strategy offers backorders
	// (inventory.StockOptions.Backorder). Without it, SetStockWith and
	// SKUDefaults with a Backorder fail with inventory.ErrUnsupported.
	// Default: false.
	Backorders bool
	// Home picks the store's home bucket: a strategy that takes the lines
	// of a SKU split into K stock buckets from one bucket of its own
	// (groupcommit's flushes) takes them from bucket Home mod K first.
	// Processes that share a schema and are given different values 1..K
	// take from different buckets; with values picked at random, two of
	// them may share one. Zero or negative picks one at random when New
	// runs. Default: 0.
	Home int
}

// Store keeps stock and the reservation ledger in one PostgreSQL schema. It
// implements everything a PostgreSQL strategy offers except the step of
// Reserve that takes units from stock, which the strategy passes in as a
// Step. It is safe for concurrent use.
type Store struct {
	db     DB
	schema string // as configured
	quoted string // quoted for SQL
	ttl    time.Duration
	now    func() time.Time
	name   string
	keep   time.Duration          // Options.Retention; 0: keep for ever
	mark   *purgeMark             // shared by the copies of on
	sku    inventory.StockOptions // Options.SKUDefaults
	hold   time.Duration          // Options.MaxHold
	limits bool                   // Options.Limits
	backo  bool                   // Options.Backorders
	home   uint32                 // Options.Home, < 1<<31
	q      queries
}

// New returns a Store on db. It fails with an error that errors.Is
// inventory.ErrInvalidRequest when opts names an unusable schema. It does not
// touch the database: call Migrate, or run DDL with a migration tool, before
// use.
func New(db DB, opts *Options) (*Store, error) {
	s := &Store{db: db, schema: DefaultSchema, ttl: DefaultTTL, now: time.Now, name: "pgstore", mark: &purgeMark{}, hold: ledger.DefaultMaxHold}
	if opts != nil {
		if opts.Schema != "" {
			s.schema = opts.Schema
		}
		if opts.DefaultTTL > 0 {
			s.ttl = opts.DefaultTTL
		}
		if opts.Now != nil {
			s.now = opts.Now
		}
		if opts.Name != "" {
			s.name = opts.Name
		}
		s.keep = max(opts.Retention, 0)
		s.sku = opts.SKUDefaults
		if opts.MaxHold > 0 {
			s.hold = opts.MaxHold
		}
		s.limits, s.backo = opts.Limits, opts.Backorders
		if opts.Home > 0 {
			s.home = uint32(opts.Home % (1 << 31))
		}
	}
	if s.home == 0 {
		s.home = 1 + rand.Uint32N(1<<31-1)
	}
	if db == nil {
		return nil, &inventory.ValidationError{Field: "db", Reason: "nil"}
	}
	if s.sku.Buckets < 0 || s.sku.Buckets > inventory.MaxBuckets {
		return nil, &inventory.ValidationError{Field: "SKUDefaults.Buckets", Reason: fmt.Sprintf("%d is outside 0..%d", s.sku.Buckets, inventory.MaxBuckets)}
	}
	if err := inventory.ValidateStockWith("SKUDefaults", 0, s.sku); err != nil {
		return nil, err
	}
	if err := inventory.RefuseUnofferedStock(s.name, "SKUDefaults", s.sku, s.limits, s.backo); err != nil {
		return nil, err
	}
	quoted, err := QuoteSchema(s.schema)
	if err != nil {
		return nil, err
	}
	s.quoted = quoted
	s.q = newQueries(quoted)
	return s, nil
}

// QuoteSchema checks a schema name and returns it quoted for SQL. The name
// may hold any character but NUL, quotes included: quoting makes it one
// identifier, never SQL. It fails with an error that errors.Is
// inventory.ErrInvalidRequest for an empty name, one longer than 63 bytes
// (PostgreSQL would truncate it), invalid UTF-8, or a NUL byte.
func QuoteSchema(schema string) (string, error) {
	switch {
	case schema == "":
		return "", &inventory.ValidationError{Field: "Schema", Reason: "empty"}
	case len(schema) > maxIdentLen:
		return "", &inventory.ValidationError{Field: "Schema", Reason: fmt.Sprintf("%d bytes, at most %d allowed", len(schema), maxIdentLen)}
	case !utf8.ValidString(schema):
		return "", &inventory.ValidationError{Field: "Schema", Reason: "not valid UTF-8"}
	}
	for i := 0; i < len(schema); i++ {
		if schema[i] == 0 {
			return "", &inventory.ValidationError{Field: "Schema", Reason: "contains NUL"}
		}
	}
	return pgx.Identifier{schema}.Sanitize(), nil
}

// Home returns the store's home bucket, modulo a SKU's number of buckets
// (Options.Home): between 1 and 1<<31-1.
func (s *Store) Home() uint32 { return s.home }

// DB returns the client the store was made with.
func (s *Store) DB() DB { return s.db }

// Schema returns the name of the schema, unquoted.
func (s *Store) Schema() string { return s.schema }

// Table returns the name of a table or function of the schema, qualified and
// quoted for SQL: Table("stock") is "inventory"."stock" by default.
func (s *Store) Table(name string) string {
	return s.quoted + "." + pgx.Identifier{name}.Sanitize()
}

// Now returns the store's clock reading, truncated to the microsecond that
// PostgreSQL stores, in UTC.
func (s *Store) Now() time.Time {
	return s.now().Truncate(time.Microsecond).UTC()
}

// queries holds every statement of the store, built once for the schema so
// that pgx caches and reuses their prepared forms.
type queries struct {
	record    string // insert the reservation and its lines, abort when the ID is taken
	recordAs  string // record, with a buyer or Partial
	lookup    string
	tombstone string
	commit    string
	settle    [2]string // by condition: [0] active (expires_at > now), [1] due
	giveLines string
	give      string
	claimDue  string
	available string
	setStock  string
	addStock  string
	spread    string
	take      string
	takeLine  string // take a line by every rule of its SKU, for a request with a buyer or Partial
	lock      string // lock stock rows and a buyer's usage rows in order (pessimistic)
	held      string // record what a step that locks rows held
	extend    string
	levels    string
	purge     string
}

// SQLSTATEs raised by reserve_abort.
const (
	codeTaken   = "IV001" // the reservation ID is already recorded
	codeRefused = "IV002" // a line was refused
	codeMoved   = "IV003" // the reservation is no longer in the state the statement expected
	codeLimit   = "IV005" // a line is past the SKU's limit per buyer; DETAIL "<limit> <usage>"
)

func newQueries(sc string) queries {
	stock := sc + ".stock"
	res := sc + ".reservation"
	lines := sc + ".reservation_line"
	abort := sc + ".reserve_abort"
	// byID is the condition of a statement that changes the hold with ID
	// $1. It reads state as an integer, so that it does not imply the
	// predicate of reservation_held_due (state = 1) and the planner finds
	// the row through the primary key alone: on a ledger whose statistics
	// say it has few rows (a new or purged one), it chose that index
	// otherwise, and read every hold not yet expired and every entry of a
	// hold settled since the last VACUUM, for each Commit.
	byID := `id = $1 AND state::int = 1 AND expires_at `
	settle := func(cond string) string {
		return `WITH s AS (UPDATE ` + res + ` SET state = $3, settled_at = $2 WHERE ` + byID + cond + ` $2 RETURNING 1)
SELECT ` + abort + `('` + codeMoved + `') WHERE NOT EXISTS (SELECT FROM s)`
	}
	record := func(cols, vals string) string {
		return `WITH r AS (
	INSERT INTO ` + res + ` (id, state, expires_at, created_at` + cols + `) VALUES ($1, 1, $2, $3` + vals + `)
	ON CONFLICT (id) DO NOTHING RETURNING id
), l AS (
	INSERT INTO ` + lines + ` (reservation_id, sku, qty)
	SELECT r.id, u.sku, u.qty FROM r CROSS JOIN unnest($4::text[], $5::bigint[]) AS u (sku, qty)
)
SELECT ` + abort + `('` + codeTaken + `') WHERE NOT EXISTS (SELECT FROM r)`
	}
	return queries{
		// ON CONFLICT DO NOTHING waits for an in-flight insert of the same ID
		// and skips the row if that one commits; the ID is then taken and the
		// whole batch aborts before any stock is touched.
		record:   record("", ""),
		recordAs: record(", buyer, partial", ", $6, $7"),
		// LEFT JOIN: a tombstone of Cancel is a reservation without lines.
		lookup: `SELECT r.state, r.expires_at, r.buyer, r.partial, l.sku, l.qty FROM ` + res + ` r
LEFT JOIN ` + lines + ` l ON l.reservation_id = r.id WHERE r.id = $1`,
		// ON CONFLICT DO NOTHING waits for an in-flight Reserve of the ID: if
		// it commits, the tombstone is skipped and Cancel releases what it
		// recorded; if it rolls back, the tombstone goes in.
		tombstone: `INSERT INTO ` + res + ` (id, state, expires_at, created_at, settled_at) VALUES ($1, 3, $2, $2, $2)
ON CONFLICT (id) DO NOTHING`,
		commit: `UPDATE ` + res + ` SET state = 2, settled_at = $2 WHERE ` + byID + `> $2`,
		settle: [2]string{settle(">"), settle("<=")},
		// The candidates are read through the index reservation_settled
		// (0005_retention.sql), oldest first, and locked with SKIP LOCKED, so
		// that purgers in many processes share them and never wait for one
		// another; the DELETE finds them by primary key, and the foreign key
		// deletes their lines.
		purge: `WITH d AS (
	DELETE FROM ` + res + ` WHERE id = ANY (ARRAY(
		SELECT c.id FROM ` + res + ` c WHERE c.state <> 1
			AND coalesce(c.settled_at, c.expires_at) >= $3 AND coalesce(c.settled_at, c.expires_at) < $1
		ORDER BY coalesce(c.settled_at, c.expires_at) LIMIT $2 FOR UPDATE SKIP LOCKED))
	RETURNING coalesce(settled_at, expires_at) AS k
)
SELECT count(*), coalesce(max(k), '-infinity') FROM d`,
		// Units go back to the bucket each line was taken from, in the lock
		// order (see 0006_stock_buckets.sql).
		giveLines: `SELECT ` + sc + `.stock_give_lines($1)`,
		give:      `SELECT ` + sc + `.stock_return($1, $2, $3, $4)`,
		// expire_due_buckets claims the due holds, expires them and sums
		// their units per SKU and bucket, in the lock order, by statements
		// whose plans do not depend on the statistics (see
		// 0004_expire_due.sql), and record when they settled.
		// expire_due_lines reports the buyer whose usage each line counts
		// against too, and stock_return takes the units off it in the
		// lock order (see 0008_levels_limits.sql).
		claimDue: `SELECT o_n, o_sku, o_bucket, o_buyer, o_qty FROM ` + sc + `.expire_due_lines($1, $2)`,
		// stock_available's body, inline: a call of that SQL function is
		// parsed and planned again on every statement, twice the server's
		// work of this read.
		available: `SELECT (SELECT s.available + coalesce((SELECT sum(b.available) FROM ` + sc + `.stock_bucket b WHERE b.sku = s.sku), 0)::bigint FROM ` + stock + ` s WHERE s.sku = $1)`,
		setStock:  `SELECT ` + sc + `.stock_set_with($1, $2, $3, $4, $5, $6)`,
		addStock:  `SELECT ` + sc + `.stock_add($1, $2, $3)`,
		spread:    `SELECT ` + sc + `.stock_spread($1, NULL, 0, NULL, $2)`,
		// A SKU kept whole without a limit is taken by the conditional
		// UPDATE of its row; the function is called only when that finds
		// nothing: for a SKU of several buckets, or with a limit (which
		// refuses a request without a buyer), or to refuse.
		take: `WITH t AS (UPDATE ` + stock + ` SET available = available - $3 WHERE sku = $2 AND available >= $3 AND buckets <= 1 AND buyer_limit = 0 RETURNING 1)
SELECT ` + sc + `.stock_take_line($1, $2, $3, $4, NULL, 0, false) WHERE NOT EXISTS (SELECT FROM t)`,
		takeLine: `SELECT ` + sc + `.stock_take_line($1, $2, $3, $4, $5, $6, $7)`,
		lock:     `SELECT o_sku, o_available, o_limit, o_used FROM ` + sc + `.stock_lock($1, $2, $3)`,
		held:     `SELECT ` + sc + `.stock_held($1, $2, $3, $4, $5)`,
		// The new expiry is max(current, min($2, reserved + $3 µs)).
		extend: `UPDATE ` + res + ` SET expires_at = greatest(expires_at, least($2::timestamptz, created_at + $3::bigint * interval '1 microsecond'))
WHERE ` + byID + `> $4`,
		levels: `SELECT o_available, o_held, o_received, o_backorder FROM ` + sc + `.stock_levels($1)`,
	}
}

// splitLines returns the SKUs and quantities of lines as two arrays.
func splitLines(lines []inventory.Line) ([]string, []int64) {
	skus := make([]string, len(lines))
	qtys := make([]int64, len(lines))
	for i, l := range lines {
		skus[i], qtys[i] = l.SKU, l.Qty
	}
	return skus, qtys
}
