package mystore

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"strings"
)

// procReserve is the procedure that runs a whole conditional reservation in
// the server: see ReserveConditional.
const procReserve = "sqlcond_reserve"

// procReturn is the procedure that settles a hold and gives its units back
// in one call: see ReturnUnits.
const procReturn = "return_units"

// procMigrateRetention is the procedure the retention migration runs once
// and drops.
const procMigrateRetention = "migrate_retention"

// ProcLockingReserve is the procedure that runs a whole locking reservation
// in the server: see LockingCall.
const ProcLockingReserve = "pessimistic_reserve"

// migration is one step of the schema, applied once and recorded in
// schema_migrations. Each statement is idempotent on its own, so that DDL
// can be run more than once; {schema} stands for the quoted database name.
type migration struct {
	version int
	name    string
	stmts   []string
}

var migrations = []migration{{
	version: 1,
	name:    "init",
	stmts: []string{
		// VARBINARY keys compare byte by byte, as Go sorts strings, so that
		// every statement that locks stock rows in SKU order locks them in
		// the same order.
		`CREATE TABLE IF NOT EXISTS {schema}.stock (
	sku       VARBINARY(128) NOT NULL PRIMARY KEY,
	-- The CHECK is the last line of defence: a correct strategy never trips it.
	available BIGINT NOT NULL,
	CONSTRAINT stock_available_not_negative CHECK (available >= 0)
) ENGINE=InnoDB`,
		// expires_at and created_at are microseconds since the Unix epoch,
		// so no time zone of server or client matters.
		`CREATE TABLE IF NOT EXISTS {schema}.reservation (
	id         VARBINARY(128) NOT NULL PRIMARY KEY,
	-- 1 held, 2 committed, 3 released, 4 expired (inventory.State).
	state      TINYINT NOT NULL,
	expires_at BIGINT NOT NULL,
	created_at BIGINT NOT NULL,
	CONSTRAINT reservation_state_valid CHECK (state BETWEEN 1 AND 4),
	KEY reservation_due (state, expires_at)
) ENGINE=InnoDB`,
		`CREATE TABLE IF NOT EXISTS {schema}.reservation_line (
	reservation_id VARBINARY(128) NOT NULL,
	sku            VARBINARY(128) NOT NULL,
	qty            BIGINT NOT NULL,
	PRIMARY KEY (reservation_id, sku),
	CONSTRAINT reservation_line_qty_positive CHECK (qty > 0),
	CONSTRAINT reservation_line_reservation FOREIGN KEY (reservation_id)
		REFERENCES {schema}.reservation (id) ON DELETE CASCADE
) ENGINE=InnoDB`,
		"DROP PROCEDURE IF EXISTS {schema}.`" + procReserve + "`",
		// The whole reservation in one call, so that the row lock of a hot
		// SKU is held only while the server runs the rest of the
		// procedure, never across a client round trip: the ledger rows
		// first (a taken ID fails with 1062 before any stock is touched),
		// then the conditional UPDATE of each line in SKU order, then
		// COMMIT. p_skus holds the SKUs, sorted, joined by 0x1F (a control
		// character, which no SKU holds); p_qtys their quantities, joined by
		// commas. A refused line signals 30002 with its index.
		"CREATE PROCEDURE {schema}.`" + procReserve + "`(" + `
	IN p_id VARBINARY(128), IN p_expires BIGINT, IN p_created BIGINT,
	IN p_skus VARBINARY(13000), IN p_qtys VARCHAR(1200))
MODIFIES SQL DATA
BEGIN
	DECLARE v_pass, v_i, v_pos, v_end, v_qpos, v_qend INT;
	DECLARE v_sku VARBINARY(128);
	DECLARE v_qty BIGINT;
	DECLARE v_msg VARCHAR(64);
	DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
	SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
	START TRANSACTION;
	INSERT INTO {schema}.reservation (id, state, expires_at, created_at) VALUES (p_id, 1, p_expires, p_created);
	SET v_pass = 0;
	WHILE v_pass < 2 DO
		SET v_i = 0, v_pos = 1, v_qpos = 1;
		WHILE v_pos <= LENGTH(p_skus) DO
			SET v_end = LOCATE(X'1F', p_skus, v_pos);
			IF v_end = 0 THEN SET v_end = LENGTH(p_skus) + 1; END IF;
			SET v_qend = LOCATE(',', p_qtys, v_qpos);
			IF v_qend = 0 THEN SET v_qend = LENGTH(p_qtys) + 1; END IF;
			SET v_sku = SUBSTRING(p_skus, v_pos, v_end - v_pos);
			SET v_qty = CAST(SUBSTRING(p_qtys, v_qpos, v_qend - v_qpos) AS SIGNED);
			IF v_pass = 0 THEN
				INSERT INTO {schema}.reservation_line (reservation_id, sku, qty) VALUES (p_id, v_sku, v_qty);
			ELSE
				UPDATE {schema}.stock SET available = available - v_qty WHERE sku = v_sku AND available >= v_qty;
				IF ROW_COUNT() = 0 THEN
					SET v_msg = CONCAT('inventory: line refused at ', v_i);
					SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 30002, MESSAGE_TEXT = v_msg;
				END IF;
			END IF;
			SET v_i = v_i + 1, v_pos = v_end + 1, v_qpos = v_qend + 1;
		END WHILE;
		SET v_pass = v_pass + 1;
	END WHILE;
	COMMIT;
END`,
	},
}, {
	version: 2,
	name:    "return_units",
	stmts: []string{
		"DROP PROCEDURE IF EXISTS {schema}.`" + procReturn + "`",
		// Release, Cancel and an overdue Commit in one call, so that the
		// stock rows are locked only inside the server: the reservation
		// moves from held to p_to while it is active (p_due 0) or due (p_due
		// 1), else 30003 and nothing changes; then its lines give their
		// units back in SKU order; then COMMIT.
		"CREATE PROCEDURE {schema}.`" + procReturn + "`(" + `
	IN p_id VARBINARY(128), IN p_to TINYINT, IN p_now BIGINT, IN p_due TINYINT)
MODIFIES SQL DATA
BEGIN
	DECLARE v_done INT DEFAULT 0;
	DECLARE v_sku VARBINARY(128);
	DECLARE v_qty BIGINT;
	DECLARE v_lines CURSOR FOR
		SELECT sku, qty FROM {schema}.reservation_line WHERE reservation_id = p_id ORDER BY sku;
	DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
	DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
	SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
	START TRANSACTION;
	UPDATE {schema}.reservation SET state = p_to
	WHERE id = p_id AND state = 1 AND IF(p_due = 1, expires_at <= p_now, expires_at > p_now);
	IF ROW_COUNT() = 0 THEN
		SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 30003, MESSAGE_TEXT = 'inventory: reservation state changed';
	END IF;
	OPEN v_lines;
	give: LOOP
		FETCH v_lines INTO v_sku, v_qty;
		IF v_done = 1 THEN LEAVE give; END IF;
		UPDATE {schema}.stock SET available = available + v_qty WHERE sku = v_sku;
	END LOOP;
	CLOSE v_lines;
	COMMIT;
END`,
	},
}, {
	version: 3,
	name:    "pessimistic_reserve",
	stmts: []string{
		"DROP PROCEDURE IF EXISTS {schema}.`" + ProcLockingReserve + "`",
		// The locking reservation in one call, so that the row locks are
		// held only while the server runs the rest of the procedure, never
		// across a client round trip: the ledger rows first (a taken ID
		// fails with 1062 before any stock row is locked), then, line by
		// line in SKU order, SELECT ... FOR UPDATE of the stock row, the
		// check, and the UPDATE; then COMMIT. The lines are passed as to
		// sqlcond_reserve; a refused line signals 30002 with its index.
		// p_wait, unless NULL, is the session's innodb_lock_wait_timeout
		// while the call runs (0: fail at once rather than wait, as NOWAIT
		// does, which MariaDB refuses inside a procedure); the session's own
		// is put back before the call returns, refused or not.
		"CREATE PROCEDURE {schema}.`" + ProcLockingReserve + "`(" + `
	IN p_id VARBINARY(128), IN p_expires BIGINT, IN p_created BIGINT,
	IN p_skus VARBINARY(13000), IN p_qtys VARCHAR(1200), IN p_wait BIGINT)
MODIFIES SQL DATA
BEGIN
	DECLARE v_pass, v_i, v_pos, v_end, v_qpos, v_qend INT;
	DECLARE v_sku VARBINARY(128);
	DECLARE v_qty, v_avail BIGINT;
	DECLARE v_msg VARCHAR(64);
	DECLARE v_wait BIGINT DEFAULT @@SESSION.innodb_lock_wait_timeout;
	DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_avail = NULL;
	DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN
		ROLLBACK;
		IF p_wait IS NOT NULL THEN SET SESSION innodb_lock_wait_timeout = v_wait; END IF;
		RESIGNAL;
	END;
	IF p_wait IS NOT NULL THEN SET SESSION innodb_lock_wait_timeout = p_wait; END IF;
	SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
	START TRANSACTION;
	INSERT INTO {schema}.reservation (id, state, expires_at, created_at) VALUES (p_id, 1, p_expires, p_created);
	SET v_pass = 0;
	WHILE v_pass < 2 DO
		SET v_i = 0, v_pos = 1, v_qpos = 1;
		WHILE v_pos <= LENGTH(p_skus) DO
			SET v_end = LOCATE(X'1F', p_skus, v_pos);
			IF v_end = 0 THEN SET v_end = LENGTH(p_skus) + 1; END IF;
			SET v_qend = LOCATE(',', p_qtys, v_qpos);
			IF v_qend = 0 THEN SET v_qend = LENGTH(p_qtys) + 1; END IF;
			SET v_sku = SUBSTRING(p_skus, v_pos, v_end - v_pos);
			SET v_qty = CAST(SUBSTRING(p_qtys, v_qpos, v_qend - v_qpos) AS SIGNED);
			IF v_pass = 0 THEN
				INSERT INTO {schema}.reservation_line (reservation_id, sku, qty) VALUES (p_id, v_sku, v_qty);
			ELSE
				SET v_avail = NULL;
				SELECT available INTO v_avail FROM {schema}.stock WHERE sku = v_sku FOR UPDATE;
				IF v_avail IS NULL OR v_avail < v_qty THEN
					SET v_msg = CONCAT('inventory: line refused at ', v_i);
					SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 30002, MESSAGE_TEXT = v_msg;
				END IF;
				UPDATE {schema}.stock SET available = v_avail - v_qty WHERE sku = v_sku;
			END IF;
			SET v_i = v_i + 1, v_pos = v_end + 1, v_qpos = v_qend + 1;
		END WHILE;
		SET v_pass = v_pass + 1;
	END WHILE;
	COMMIT;
	IF p_wait IS NOT NULL THEN SET SESSION innodb_lock_wait_timeout = v_wait; END IF;
END`,
	},
}, {
	version: 4,
	name:    "one_line_reserve",
	stmts: []string{
		// The same procedures with a path of their own for a cart of one
		// line, the common case, which skips the parsing loop: each
		// statement of a procedure costs the server about as much as a
		// small query, and the loop runs about twenty of them a line. The
		// parameters and what the procedures do are unchanged, so that
		// processes of the previous version keep working beside them.
		"DROP PROCEDURE IF EXISTS {schema}.`" + procReserve + "`",
		reserveProc(procReserve, "", "", "", sqlcondTake),
		"DROP PROCEDURE IF EXISTS {schema}.`" + ProcLockingReserve + "`",
		reserveProc(ProcLockingReserve, ", IN p_wait BIGINT", lockingDeclare, lockingRestore, lockingTake),
	},
}, {
	version: 5,
	name:    "retention",
	stmts: []string{
		// settled_at is when a reservation left Held (microseconds since
		// the Unix epoch, by the store's clock): Commit, Release, Cancel and
		// expiry set it. Rows settled before this migration, or by a writer
		// that does not set it, have NULL there, and settled_key, which
		// Purge reads, is their expires_at instead: a commit or release
		// comes before it, a tombstone at it, an expiry at or after it.
		// settled_key is NULL for a held reservation, so that the range
		// Purge reads never holds one. The column is added without
		// rewriting the table (INSTANT) and the index built without
		// blocking writes (INPLACE, LOCK=NONE); MySQL 8 has no ADD COLUMN
		// IF NOT EXISTS, so a procedure reads the catalog first and the
		// statement can be run again.
		"DROP PROCEDURE IF EXISTS {schema}.`" + procMigrateRetention + "`",
		"CREATE PROCEDURE {schema}.`" + procMigrateRetention + "`()" + `
MODIFIES SQL DATA
BEGIN
	IF NOT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = 'reservation' AND column_name = 'settled_at') THEN
		ALTER TABLE {schema}.reservation ADD COLUMN settled_at BIGINT NULL, ALGORITHM=INSTANT;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = 'reservation' AND column_name = 'settled_key') THEN
		ALTER TABLE {schema}.reservation
			ADD COLUMN settled_key BIGINT AS (IF(state = 1, NULL, COALESCE(settled_at, expires_at))) VIRTUAL,
			ALGORITHM=INSTANT;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND table_name = 'reservation' AND index_name = 'reservation_settled') THEN
		ALTER TABLE {schema}.reservation ADD INDEX reservation_settled (settled_key), ALGORITHM=INPLACE, LOCK=NONE;
	END IF;
END`,
		"CALL {schema}.`" + procMigrateRetention + "`()",
		"DROP PROCEDURE {schema}.`" + procMigrateRetention + "`",
		// return_units again (see return_units), recording when the
		// reservation settled.
		"DROP PROCEDURE IF EXISTS {schema}.`" + procReturn + "`",
		"CREATE PROCEDURE {schema}.`" + procReturn + "`(" + `
	IN p_id VARBINARY(128), IN p_to TINYINT, IN p_now BIGINT, IN p_due TINYINT)
MODIFIES SQL DATA
BEGIN
	DECLARE v_done INT DEFAULT 0;
	DECLARE v_sku VARBINARY(128);
	DECLARE v_qty BIGINT;
	DECLARE v_lines CURSOR FOR
		SELECT sku, qty FROM {schema}.reservation_line WHERE reservation_id = p_id ORDER BY sku;
	DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
	DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
	SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
	START TRANSACTION;
	UPDATE {schema}.reservation SET state = p_to, settled_at = p_now
	WHERE id = p_id AND state = 1 AND IF(p_due = 1, expires_at <= p_now, expires_at > p_now);
	IF ROW_COUNT() = 0 THEN
		SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 30003, MESSAGE_TEXT = 'inventory: reservation state changed';
	END IF;
	OPEN v_lines;
	give: LOOP
		FETCH v_lines INTO v_sku, v_qty;
		IF v_done = 1 THEN LEAVE give; END IF;
		UPDATE {schema}.stock SET available = available + v_qty WHERE sku = v_sku;
	END LOOP;
	CLOSE v_lines;
	COMMIT;
END`,
	},
}}

// sqlcondTake takes v_qty units of v_sku, line v_i, with the conditional
// UPDATE, or signals the refusal of the line.
const sqlcondTake = `UPDATE {schema}.stock SET available = available - v_qty WHERE sku = v_sku AND available >= v_qty;
		IF ROW_COUNT() = 0 THEN
			SET v_msg = CONCAT('inventory: line refused at ', v_i);
			SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 30002, MESSAGE_TEXT = v_msg;
		END IF;`

// lockingTake takes v_qty units of v_sku, line v_i, under the row lock of
// SELECT ... FOR UPDATE, or signals the refusal of the line.
const lockingTake = `SET v_avail = NULL;
		SELECT available INTO v_avail FROM {schema}.stock WHERE sku = v_sku FOR UPDATE;
		IF v_avail IS NULL OR v_avail < v_qty THEN
			SET v_msg = CONCAT('inventory: line refused at ', v_i);
			SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 30002, MESSAGE_TEXT = v_msg;
		END IF;
		UPDATE {schema}.stock SET available = v_avail - v_qty WHERE sku = v_sku;`

// lockingDeclare and lockingRestore set the session's lock wait timeout to
// p_wait while the locking procedure runs, and put it back, refused or not.
const (
	lockingDeclare = `DECLARE v_avail BIGINT;
	DECLARE v_wait BIGINT DEFAULT @@SESSION.innodb_lock_wait_timeout;
	DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_avail = NULL;`
	lockingRestore = "IF p_wait IS NOT NULL THEN SET SESSION innodb_lock_wait_timeout = v_wait; END IF;"
)

// reserveProc returns the CREATE PROCEDURE of a reserve procedure named
// name: the ledger rows first (a taken ID fails with 1062 before any stock
// row is touched), then take for each line in SKU order, then COMMIT, in
// one READ COMMITTED transaction; restore runs before it returns, refused
// or not. A cart of one line is recorded and taken without the parsing
// loop. extra are parameters after the lines, declare declarations take
// needs.
func reserveProc(name, extra, declare, restore, take string) string {
	setWait := ""
	if restore != "" {
		setWait = "IF p_wait IS NOT NULL THEN SET SESSION innodb_lock_wait_timeout = p_wait; END IF;\n\t"
	}
	return "CREATE PROCEDURE {schema}.`" + name + "`(" + `
	IN p_id VARBINARY(128), IN p_expires BIGINT, IN p_created BIGINT,
	IN p_skus VARBINARY(13000), IN p_qtys VARCHAR(1200)` + extra + `)
MODIFIES SQL DATA
BEGIN
	DECLARE v_pass, v_i, v_pos, v_end, v_qpos, v_qend INT;
	DECLARE v_sku VARBINARY(128);
	DECLARE v_qty BIGINT;
	DECLARE v_msg VARCHAR(64);
	` + declare + `
	DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN
		ROLLBACK;
		` + restore + `
		RESIGNAL;
	END;
	` + setWait + `SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
	START TRANSACTION;
	INSERT INTO {schema}.reservation (id, state, expires_at, created_at) VALUES (p_id, 1, p_expires, p_created);
	IF LOCATE(X'1F', p_skus) = 0 THEN
		SET v_i = 0, v_sku = p_skus, v_qty = CAST(p_qtys AS SIGNED);
		INSERT INTO {schema}.reservation_line (reservation_id, sku, qty) VALUES (p_id, v_sku, v_qty);
		` + take + `
	ELSE
	SET v_pass = 0;
	WHILE v_pass < 2 DO
		SET v_i = 0, v_pos = 1, v_qpos = 1;
		WHILE v_pos <= LENGTH(p_skus) DO
			SET v_end = LOCATE(X'1F', p_skus, v_pos);
			IF v_end = 0 THEN SET v_end = LENGTH(p_skus) + 1; END IF;
			SET v_qend = LOCATE(',', p_qtys, v_qpos);
			IF v_qend = 0 THEN SET v_qend = LENGTH(p_qtys) + 1; END IF;
			SET v_sku = SUBSTRING(p_skus, v_pos, v_end - v_pos);
			SET v_qty = CAST(SUBSTRING(p_qtys, v_qpos, v_qend - v_qpos) AS SIGNED);
			IF v_pass = 0 THEN
				INSERT INTO {schema}.reservation_line (reservation_id, sku, qty) VALUES (p_id, v_sku, v_qty);
			ELSE
		` + take + `
			END IF;
			SET v_i = v_i + 1, v_pos = v_end + 1, v_qpos = v_qend + 1;
		END WHILE;
		SET v_pass = v_pass + 1;
	END WHILE;
	END IF;
	COMMIT;
	` + restore + `
END`
}

func expand(stmt, quoted string) string { return strings.ReplaceAll(stmt, "{schema}", quoted) }

// DDL returns the SQL that creates the database named schema and everything
// in it, for users who run their own migration tool, as the mysql client
// reads it (the procedure between DELIMITER lines). It is idempotent. It
// fails as QuoteSchema does for an unusable name.
func DDL(schema string) (string, error) {
	quoted, err := QuoteSchema(schema)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.WriteString("CREATE DATABASE IF NOT EXISTS " + quoted + ";\n")
	for _, m := range migrations {
		fmt.Fprintf(&sb, "\n-- %04d_%s\n", m.version, m.name)
		for _, st := range m.stmts {
			st = expand(st, quoted)
			if strings.HasPrefix(st, "CREATE PROCEDURE") {
				sb.WriteString("DELIMITER //\n" + st + " //\nDELIMITER ;\n")
				continue
			}
			sb.WriteString(st + ";\n")
		}
	}
	return sb.String(), nil
}

// migrateLockName is the GET_LOCK name that serializes migrations of one
// database across processes (at most 64 characters).
func migrateLockName(schema string) string {
	h := fnv.New64a()
	h.Write([]byte("github.com/oversell/inventory/migrate\x00"))
	h.Write([]byte(schema))
	return fmt.Sprintf("inventory-migrate-%016x", h.Sum64())
}

// Migrate creates or upgrades the database and its tables. It is idempotent
// and safe to run from many processes at once: it holds a named lock
// (GET_LOCK) while it works, and records the migrations it applied in the
// database's schema_migrations table. MySQL commits each DDL statement by
// itself, so a migration cut short is finished by the next Migrate: every
// statement is idempotent.
func (s *Store) Migrate(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return s.fail(ctx, "migrate", err)
	}
	defer conn.Close()
	lock := migrateLockName(s.schema)
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 60)", lock).Scan(&got); err != nil {
		return s.fail(ctx, "migrate", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return s.fail(ctx, "migrate", fmt.Errorf("could not take the migration lock %s", lock))
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		_, _ = conn.ExecContext(rctx, "SELECT RELEASE_LOCK(?)", lock)
	}()
	versions := s.quoted + ".`schema_migrations`"
	for _, st := range []string{
		"CREATE DATABASE IF NOT EXISTS " + s.quoted + " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
		"CREATE TABLE IF NOT EXISTS " + versions + " (version INT NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL, applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
	} {
		if _, err := conn.ExecContext(ctx, st); err != nil {
			return s.fail(ctx, "migrate", err)
		}
	}
	applied := make(map[int]bool)
	rows, err := conn.QueryContext(ctx, "SELECT version FROM "+versions)
	if err != nil {
		return s.fail(ctx, "migrate", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return s.fail(ctx, "migrate", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.fail(ctx, "migrate", err)
	}
	for _, m := range migrations {
		if applied[m.version] {
			continue
		}
		for _, st := range m.stmts {
			if _, err := conn.ExecContext(ctx, expand(st, s.quoted)); err != nil {
				return s.fail(ctx, "migrate", fmt.Errorf("%04d_%s: %w", m.version, m.name, err))
			}
		}
		if _, err := conn.ExecContext(ctx, "INSERT INTO "+versions+" (version, name) VALUES (?, ?)", m.version, m.name); err != nil {
			return s.fail(ctx, "migrate", err)
		}
	}
	return nil
}
