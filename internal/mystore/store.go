package mystore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/oversell/inventory"
	"github.com/oversell/inventory/internal/ledger"
)

// Defaults of Options.
const (
	DefaultSchema = "inventory"
	DefaultTTL    = 15 * time.Minute
)

// maxIdentLen is the longest database name MySQL and MariaDB accept, in
// characters.
const maxIdentLen = 64

// Options configures a Store. A nil *Options takes every default.
type Options struct {
	// Schema is the database (MySQL's schema) holding the tables. Any name
	// of 1..64 characters of valid UTF-8, without NUL and not ending in a
	// space, is accepted and always quoted. Default: "inventory".
	Schema string
	// DefaultTTL is the hold lifetime of a request whose TTL is 0.
	// Default: 15m.
	DefaultTTL time.Duration
	// Now is the clock reservation expiry is measured by. It is read in Go
	// and passed to the server as a parameter. Default: time.Now.
	Now func() time.Time
	// Name prefixes the messages of errors the store returns, so that they
	// name the strategy. Default: "mystore".
	Name string
	// Retention is how long Purge keeps a settled reservation (Committed,
	// Released, Expired, or the tombstone of Cancel) after it settled; see
	// Purge. Zero or negative keeps every reservation, and Purge deletes
	// nothing. Default: 0.
	Retention time.Duration
	// SKUDefaults are the settings SetStock gives a SKU it creates (a SKU
	// that exists keeps its own): a limit per buyer and a backorder. Stock
	// buckets are not offered: Buckets above 1 fails New with
	// inventory.ErrUnsupported. Default: the zero value.
	SKUDefaults inventory.StockOptions
	// MaxHold is the longest a hold may last from the moment it was
	// reserved: Extend never moves an expiry past it. Zero or negative means
	// the default. Default: 1h.
	MaxHold time.Duration
}

// Store keeps stock and the reservation ledger in one MySQL or MariaDB
// database. It implements everything a MySQL strategy offers; a strategy
// picks how Reserve takes stock (ReserveConditional, or Reserve with a
// Step). It is safe for concurrent use.
type Store struct {
	db     *sql.DB
	schema string
	quoted string
	ttl    time.Duration
	now    func() time.Time
	name   string
	keep   time.Duration          // Options.Retention; 0: keep everything
	sku    inventory.StockOptions // Options.SKUDefaults
	hold   time.Duration          // Options.MaxHold
	q      queries
	// conditional is the Call of ReserveConditional.
	conditional *Call

	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

// New returns a Store on db. It fails with an error that errors.Is
// inventory.ErrInvalidRequest when opts names an unusable schema. It does not
// touch the database: call Migrate, or run DDL with a migration tool, before
// use.
func New(db *sql.DB, opts *Options) (*Store, error) {
	s := &Store{db: db, schema: DefaultSchema, ttl: DefaultTTL, now: time.Now, name: "mystore", hold: ledger.DefaultMaxHold, stmts: make(map[string]*sql.Stmt)}
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
	}
	if db == nil {
		return nil, &inventory.ValidationError{Field: "db", Reason: "nil"}
	}
	if err := inventory.ValidateStockWith("SKUDefaults", 0, s.sku); err != nil {
		return nil, err
	}
	if s.sku.Buckets > 1 {
		return nil, fmt.Errorf("%s: %w: stock buckets (SKUDefaults.Buckets %d)", s.name, inventory.ErrUnsupported, s.sku.Buckets)
	}
	quoted, err := QuoteSchema(s.schema)
	if err != nil {
		return nil, err
	}
	s.quoted = quoted
	s.q = newQueries(quoted)
	s.conditional = s.NewCall(procReserve, false)
	s.conditional.one = "CALL " + s.Table(procReserveOne) + "(" + Placeholders(5, "?") + ")"
	return s, nil
}

// QuoteSchema checks a database name and returns it quoted for SQL, in
// backticks, every backtick in it doubled: quoting makes it one identifier,
// never SQL. It fails with an error that errors.Is
// inventory.ErrInvalidRequest for an empty name, one longer than 64
// characters, invalid UTF-8, a NUL byte, or a trailing space (which the
// server refuses).
func QuoteSchema(schema string) (string, error) {
	switch {
	case schema == "":
		return "", &inventory.ValidationError{Field: "Schema", Reason: "empty"}
	case !utf8.ValidString(schema):
		return "", &inventory.ValidationError{Field: "Schema", Reason: "not valid UTF-8"}
	case utf8.RuneCountInString(schema) > maxIdentLen:
		return "", &inventory.ValidationError{Field: "Schema", Reason: fmt.Sprintf("%d characters, at most %d allowed", utf8.RuneCountInString(schema), maxIdentLen)}
	case strings.IndexByte(schema, 0) >= 0:
		return "", &inventory.ValidationError{Field: "Schema", Reason: "contains NUL"}
	case strings.HasSuffix(schema, " "):
		return "", &inventory.ValidationError{Field: "Schema", Reason: "ends with a space"}
	}
	return quoteIdent(schema), nil
}

func quoteIdent(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

// DB returns the client the store was made with.
func (s *Store) DB() *sql.DB { return s.db }

// Schema returns the name of the database, unquoted.
func (s *Store) Schema() string { return s.schema }

// Name returns the name errors are prefixed with.
func (s *Store) Name() string { return s.name }

// Table returns the name of a table or procedure of the database, qualified
// and quoted for SQL: Table("stock") is `inventory`.`stock` by default.
func (s *Store) Table(name string) string { return s.quoted + "." + quoteIdent(name) }

// Now returns the store's clock reading, truncated to the microsecond that
// the ledger keeps, in UTC.
func (s *Store) Now() time.Time { return s.now().Truncate(time.Microsecond).UTC() }

// micros is how the ledger stores a time: microseconds since the Unix epoch,
// in a BIGINT, so that no time zone of the server or the client matters.
func micros(t time.Time) int64 { return t.UnixMicro() }

// Stmt returns the statement prepared once for sqlText on the store's pool
// (database/sql prepares it again on each connection as needed), so that a
// call costs one round trip, not a prepare and an execute. A failed prepare
// is not kept: the next call tries again.
func (s *Store) Stmt(ctx context.Context, sqlText string) (*sql.Stmt, error) {
	s.mu.Lock()
	st := s.stmts[sqlText]
	s.mu.Unlock()
	if st != nil {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, sqlText)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.stmts[sqlText]; old != nil {
		_ = st.Close()
		return old, nil
	}
	s.stmts[sqlText] = st
	return st, nil
}

// queries holds the store's fixed statements, built once for the schema.
type queries struct {
	giveBack  string // CALL of the procedure that settles a hold and returns its units
	lookup    string
	tombstone string
	commit    string
	purgeIDs  string
	purge     string // followed by the list of IDs
	dueIDs    string
	available string // the available units and the limit per buyer
	setStock  string // keeping the settings of a SKU that exists
	setWith   string // setting them
	addStock  string
	extend    string
	active    string // whether a hold is held and active
	levels    string
	// The statements of a reservation with a Buyer or Partial (see
	// recordWith); lockStock, lockUsage and takeStock are followed by a
	// list of SKUs, addLines and addUsage by rows of values.
	recordAs  string
	lockStock string
	lockUsage string
	takeStock string
	addLines  string
	addUsage  string
}

func newQueries(sc string) queries {
	stock := sc + ".`stock`"
	res := sc + ".`reservation`"
	lines := sc + ".`reservation_line`"
	usage := sc + ".`buyer_usage`"
	return queries{
		giveBack: "CALL " + sc + ".`" + procReturn + "`(?, ?, ?, ?)",
		// LEFT JOIN: a tombstone of Cancel is a reservation without lines.
		// No ORDER BY, which makes the server sort in a temporary table:
		// the lines are sorted in Go.
		// Buyer and Partial are on every line (see the migration
		// levels_limits).
		lookup: "SELECT r.state, r.expires_at, l.buyer, l.partial, l.sku, l.qty FROM " + res + " r LEFT JOIN " + lines +
			" l ON l.reservation_id = r.id WHERE r.id = ?",
		// The insert waits for an in-flight Reserve of the ID: if it
		// commits, the row is left as it is (no row affected) and Cancel
		// releases what it recorded; if it rolls back, the tombstone goes in.
		tombstone: "INSERT INTO " + res + " (id, state, expires_at, created_at, settled_at) VALUES (?, 3, ?, ?, ?) " +
			"ON DUPLICATE KEY UPDATE id = id",
		// settled_at is when the reservation left Held, which Purge reads
		// (see the migration retention).
		commit: "UPDATE " + res + " SET state = 2, settled_at = ? WHERE id = ? AND state = 1 AND expires_at > ?",
		// The oldest settled reservations past the cutoff, through the
		// index reservation_sweep, whose range of negative keys (minus when
		// they settled) holds no held reservation, read backwards: the
		// parameter is minus the cutoff. Rows another purger has locked are
		// skipped, not waited for.
		purgeIDs: "SELECT id FROM " + res + " WHERE sweep_key < 0 AND sweep_key > ? ORDER BY sweep_key DESC LIMIT ? FOR UPDATE SKIP LOCKED",
		purge:    "DELETE FROM " + res + " WHERE id IN ",
		// A plain read: each hold is then expired by a call of its own,
		// which finds out whether it is still held and due.
		// The held ones are the range of non-negative keys of
		// reservation_sweep: their expiry.
		dueIDs:    "SELECT id FROM " + res + " WHERE sweep_key BETWEEN 0 AND ? AND state = 1 ORDER BY sweep_key LIMIT ?",
		available: "SELECT available, buyer_limit FROM " + stock + " WHERE sku = ?",
		// The available units are the units on hand plus the backorder, and
		// received grows by what they changed by. An assignment reads the
		// columns assigned before it in the same statement (MySQL; MariaDB
		// unless SIMULTANEOUS_ASSIGNMENT is set), so received, which reads
		// the available units as they were, comes first, and no
		// assignment reads a column assigned before it.
		// The parameters: sku, units on hand, and for a new SKU the
		// limit and backorder of SKUDefaults, then the units on hand twice.
		setStock: "INSERT INTO " + stock + " (sku, available, buyer_limit, backorder, received) VALUES (?, ? + ?, ?, ?, ? + ?) " +
			"ON DUPLICATE KEY UPDATE received = received + (? + backorder - available), available = ? + backorder",
		// The parameters: sku, units on hand + backorder, limit, backorder,
		// units on hand + backorder; then units on hand + backorder, limit,
		// backorder.
		setWith: "INSERT INTO " + stock + " (sku, available, buyer_limit, backorder, received) VALUES (?, ?, ?, ?, ?) " +
			"ON DUPLICATE KEY UPDATE received = received + (? - available), available = ?, buyer_limit = ?, backorder = ?",
		// LAST_INSERT_ID(expr) hands the new value back in the OK packet:
		// one round trip, no second read. The bounds are those of the
		// units on hand: 0 .. MaxStock plus the backorder.
		addStock: "UPDATE " + stock + " SET received = received + ?, available = LAST_INSERT_ID(available + ?) " +
			"WHERE sku = ? AND available + ? BETWEEN 0 AND ? + backorder",
		// The new expiry is max(current, min(until, reserved + max hold)).
		// The server counts a row whose value did not change as not
		// affected, so Extend asks active after an UPDATE that affected
		// none.
		extend: "UPDATE " + res + " SET expires_at = GREATEST(expires_at, LEAST(?, created_at + ?)) " +
			"WHERE id = ? AND state = 1 AND expires_at > ?",
		active: "SELECT 1 FROM " + res + " WHERE id = ? AND state = 1 AND expires_at > ?",
		// One statement, so one snapshot: the available units, the
		// backorder, the units of held reservations (found through the
		// range of held ones in the index reservation_sweep, then each line
		// by its primary key), and what the SKU received: received plus received_before,
		// or, while that is not yet counted (NULL), the units of the
		// committed reservations the ledger holds.
		levels: "SELECT s.available, s.backorder, (SELECT COALESCE(SUM(l.qty), 0) FROM " + res + " r JOIN " + lines +
			" l ON l.reservation_id = r.id AND l.sku = s.sku WHERE r.sweep_key >= 0 AND r.state = 1), s.received, s.received_before, " +
			"IF(s.received_before IS NULL, (SELECT COALESCE(SUM(l.qty), 0) FROM " + lines + " l JOIN " + res +
			" r ON r.id = l.reservation_id WHERE l.sku = s.sku AND r.state = 2), 0) FROM " + stock + " s WHERE s.sku = ?",
		recordAs:  "INSERT INTO " + res + " (id, state, expires_at, created_at) VALUES (?, 1, ?, ?)",
		lockStock: "SELECT sku, available, buyer_limit FROM " + stock + " WHERE sku IN ",
		lockUsage: "SELECT sku, used FROM " + usage + " WHERE buyer = ? AND sku IN ",
		takeStock: "UPDATE " + stock + " SET available = available - CASE sku ",
		addLines:  "INSERT INTO " + lines + " (reservation_id, sku, qty, counted, buyer, partial) VALUES ",
		addUsage:  "INSERT INTO " + usage + " (sku, buyer, used) VALUES ",
	}
}

// Placeholders returns n comma-separated groups of group, such as "(?, ?)",
// for statements whose size depends on the request.
func Placeholders(n int, group string) string {
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(group)
	}
	return sb.String()
}
