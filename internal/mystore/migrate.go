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

// procReserveOne and procLockingReserveOne take a cart of one line: see
// Call.
const (
	procReserveOne        = "sqlcond_reserve_one"
	procLockingReserveOne = "pessimistic_reserve_one"
)

// procMigrateSweep is the procedure the migration
// one_line_calls_one_sweep_index runs once and drops.
const procMigrateSweep = "migrate_sweep"

// procMigrateLevels and procCountReceived are the procedures the migration
// levels_limits runs once and drops.
const (
	procMigrateLevels = "migrate_levels"
	procCountReceived = "count_received"
)

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
}, {
	version: 6,
	name:    "levels_limits",
	stmts: []string{
		// Backorders, stock levels and limits per buyer (see the package
		// documentation). stock.backorder is the SKU's StockOptions.Backorder:
		// its available units are the units on hand plus it, so that the
		// take stays "available >= n". stock.buyer_limit is its
		// StockOptions.Limit (0: none). stock.received counts what SetStock,
		// SetStockWith and AddStock changed the available units by, so that
		// Levels reads sold = received - available - held without summing a
		// ledger that Purge deletes from; received_before is what a SKU made
		// before this migration had received by then (NULL until counted, 0
		// for a SKU made after). reservation_line.buyer and partial are the
		// reservation's inventory.Request.Buyer and Partial, which a repeat
		// of the ID must match, on each of its lines: adding them to
		// reservation, whose indexed virtual column settled_key makes
		// MariaDB rebuild it under a shared lock, would block writers;
		// a reservation with a Buyer or Partial has lines, and a tombstone
		// has neither. reservation_line.counted marks a line whose units
		// count against its buyer's usage in buyer_usage. Every column is
		// added in place, without rewriting a table (INSTANT); MySQL 8 has
		// no ADD COLUMN IF NOT EXISTS, so a procedure reads the catalog
		// first and the statements can be run again.
		"DROP PROCEDURE IF EXISTS {schema}.`" + procMigrateLevels + "`",
		"CREATE PROCEDURE {schema}.`" + procMigrateLevels + "`()" + `
MODIFIES SQL DATA
BEGIN
	IF NOT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = 'stock' AND column_name = 'backorder') THEN
		ALTER TABLE {schema}.stock
			ADD COLUMN backorder BIGINT NOT NULL DEFAULT 0,
			ADD COLUMN buyer_limit BIGINT NOT NULL DEFAULT 0,
			ADD COLUMN received BIGINT NOT NULL DEFAULT 0,
			ADD COLUMN received_before BIGINT NULL,
			ALGORITHM=INSTANT;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = 'reservation_line' AND column_name = 'buyer') THEN
		ALTER TABLE {schema}.reservation_line
			ADD COLUMN buyer VARBINARY(128) NULL,
			ADD COLUMN partial TINYINT NOT NULL DEFAULT 0,
			ADD COLUMN counted TINYINT NOT NULL DEFAULT 0,
			ALGORITHM=INSTANT;
	END IF;
END`,
		"CALL {schema}.`" + procMigrateLevels + "`()",
		"DROP PROCEDURE {schema}.`" + procMigrateLevels + "`",
		// A SKU made from here on has received everything it holds.
		"ALTER TABLE {schema}.stock ALTER COLUMN received_before SET DEFAULT 0",
		// The units each buyer of a SKU with a limit holds and bought. Only
		// a transaction that holds the SKU's stock row reads or writes its
		// rows, so they add no lock order of their own. A row that reaches 0
		// is deleted; Purge leaves them alone, so committed units go on
		// counting.
		`CREATE TABLE IF NOT EXISTS {schema}.buyer_usage (
	sku   VARBINARY(128) NOT NULL,
	buyer VARBINARY(128) NOT NULL,
	-- The CHECK is the last line of defence: units are taken off once.
	used  BIGINT NOT NULL,
	PRIMARY KEY (sku, buyer),
	CONSTRAINT buyer_usage_used_not_negative CHECK (used >= 0)
) ENGINE=InnoDB`,
		// Count what each SKU made before this migration had received
		// (available + held + sold - received), a SKU per transaction,
		// under the lock of its stock row: every writer that changes the
		// SKU's stock changes it under that lock, with the ledger rows in
		// the same transaction, so the READ COMMITTED read of the ledger
		// that follows the lock agrees with the row. Sold units are those
		// of the committed reservations the ledger holds: units of
		// reservations purged before this migration are not counted.
		"DROP PROCEDURE IF EXISTS {schema}.`" + procCountReceived + "`",
		"CREATE PROCEDURE {schema}.`" + procCountReceived + "`()" + `
MODIFIES SQL DATA
BEGIN
	DECLARE v_done INT DEFAULT 0;
	DECLARE v_sku VARBINARY(128);
	DECLARE v_avail, v_units BIGINT;
	DECLARE v_skus CURSOR FOR SELECT sku FROM {schema}.stock WHERE received_before IS NULL ORDER BY sku;
	DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_done = 1;
	DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
	OPEN v_skus;
	each_sku: LOOP
		FETCH v_skus INTO v_sku;
		IF v_done = 1 THEN LEAVE each_sku; END IF;
		SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
		START TRANSACTION;
		SELECT available INTO v_avail FROM {schema}.stock WHERE sku = v_sku FOR UPDATE;
		SELECT COALESCE(SUM(l.qty), 0) INTO v_units FROM {schema}.reservation_line l
			JOIN {schema}.reservation r ON r.id = l.reservation_id WHERE l.sku = v_sku AND r.state IN (1, 2);
		UPDATE {schema}.stock SET received_before = v_avail + v_units - received WHERE sku = v_sku AND received_before IS NULL;
		COMMIT;
	END LOOP;
	CLOSE v_skus;
END`,
		"CALL {schema}.`" + procCountReceived + "`()",
		"DROP PROCEDURE {schema}.`" + procCountReceived + "`",
		// The reserve procedures again, with the parameters of the
		// previous version, so that processes of that version keep working
		// beside this one: a SKU with a limit per buyer is refused by them
		// (buyer_limit > 0), since they take requests without a Buyer; the
		// store then reports the limit. A request with a Buyer or Partial
		// is taken by the store in a transaction of its own (see
		// ReserveConditional).
		"DROP PROCEDURE IF EXISTS {schema}.`" + procReserve + "`",
		reserveProc(procReserve, "", "", "", sqlcondTakeUnlimited),
		"DROP PROCEDURE IF EXISTS {schema}.`" + ProcLockingReserve + "`",
		reserveProc(ProcLockingReserve, ", IN p_wait BIGINT", lockingDeclareLimit, lockingRestore, lockingTakeUnlimited),
		// return_units again (see return_units and retention): the units
		// of a counted line come off its buyer's usage, under the SKU's
		// stock row lock, in the transaction that moves the reservation out
		// of Held, so once.
		"DROP PROCEDURE IF EXISTS {schema}.`" + procReturn + "`",
		"CREATE PROCEDURE {schema}.`" + procReturn + "`(" + `
	IN p_id VARBINARY(128), IN p_to TINYINT, IN p_now BIGINT, IN p_due TINYINT)
MODIFIES SQL DATA
BEGIN
	DECLARE v_done INT DEFAULT 0;
	DECLARE v_sku VARBINARY(128);
	DECLARE v_qty BIGINT;
	DECLARE v_counted TINYINT;
	DECLARE v_buyer VARBINARY(128);
	DECLARE v_lines CURSOR FOR
		SELECT sku, qty, counted, buyer FROM {schema}.reservation_line WHERE reservation_id = p_id ORDER BY sku;
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
		FETCH v_lines INTO v_sku, v_qty, v_counted, v_buyer;
		IF v_done = 1 THEN LEAVE give; END IF;
		UPDATE {schema}.stock SET available = available + v_qty WHERE sku = v_sku;
		IF v_counted = 1 THEN
			UPDATE {schema}.buyer_usage SET used = used - v_qty WHERE sku = v_sku AND buyer = v_buyer;
			DELETE FROM {schema}.buyer_usage WHERE sku = v_sku AND buyer = v_buyer AND used = 0;
		END IF;
	END LOOP;
	CLOSE v_lines;
	COMMIT;
END`,
	},
}, {
	version: 7,
	name:    "one_line_calls_one_sweep_index",
	stmts: []string{
		// One secondary index on reservation instead of two, so that a
		// Reserve writes one index entry besides the primary key, not two,
		// and a Commit, Release or expiry moves one, not two: sweep_key is
		// the expiry of a held reservation (positive) and minus the moment a
		// settled one settled (settled_at, else expires_at, as settled_key;
		// negative), so that ExpireDue reads the due holds in one range of
		// it, oldest first, and Purge the settled reservations past the
		// retention in another, oldest first, read backwards. The column is
		// virtual (added in place), the index built without blocking writes,
		// and the two indexes it replaces dropped after it; settled_key
		// stays, unindexed, for processes of an older version, whose reads of
		// the due holds and of purge candidates then scan the table until
		// they are replaced.
		"DROP PROCEDURE IF EXISTS {schema}.`" + procMigrateSweep + "`",
		"CREATE PROCEDURE {schema}.`" + procMigrateSweep + "`()" + `
MODIFIES SQL DATA
BEGIN
	IF NOT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = DATABASE() AND table_name = 'reservation' AND column_name = 'sweep_key') THEN
		ALTER TABLE {schema}.reservation
			ADD COLUMN sweep_key BIGINT AS (IF(state = 1, expires_at, -COALESCE(settled_at, expires_at))) VIRTUAL,
			ALGORITHM=INSTANT;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND table_name = 'reservation' AND index_name = 'reservation_sweep') THEN
		ALTER TABLE {schema}.reservation ADD INDEX reservation_sweep (sweep_key), ALGORITHM=INPLACE, LOCK=NONE;
	END IF;
	IF EXISTS (SELECT 1 FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND table_name = 'reservation' AND index_name = 'reservation_due') THEN
		ALTER TABLE {schema}.reservation DROP INDEX reservation_due, ALGORITHM=INPLACE, LOCK=NONE;
	END IF;
	IF EXISTS (SELECT 1 FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND table_name = 'reservation' AND index_name = 'reservation_settled') THEN
		ALTER TABLE {schema}.reservation DROP INDEX reservation_settled, ALGORITHM=INPLACE, LOCK=NONE;
	END IF;
END`,
		"CALL {schema}.`" + procMigrateSweep + "`()",
		"DROP PROCEDURE {schema}.`" + procMigrateSweep + "`",
		// A cart of one line by a procedure of its own, whose parameters
		// are the line's SKU and quantity: no list to parse, no variables
		// to set, no test of the cart's size, so that the server runs the
		// seven statements the reservation needs and no other.
		"DROP PROCEDURE IF EXISTS {schema}.`" + procReserveOne + "`",
		oneLineProc(procReserveOne, "", "", "", sqlcondTakeOne),
		"DROP PROCEDURE IF EXISTS {schema}.`" + procLockingReserveOne + "`",
		oneLineProc(procLockingReserveOne, ", IN p_wait BIGINT", lockingDeclareLimit, lockingRestore, lockingTakeOne),
	},
}}

// sqlcondTakeOne takes p_qty units of p_sku with the conditional UPDATE, or
// signals the refusal of the line; a SKU with a limit per buyer is refused.
const sqlcondTakeOne = `UPDATE {schema}.stock SET available = available - p_qty WHERE sku = p_sku AND available >= p_qty AND buyer_limit = 0;
	IF ROW_COUNT() = 0 THEN
		SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 30002, MESSAGE_TEXT = 'inventory: line refused at 0';
	END IF;`

// lockingTakeOne takes p_qty units of p_sku under the row lock of SELECT
// ... FOR UPDATE, or signals the refusal of the line; a SKU with a limit
// per buyer is refused.
const lockingTakeOne = `SELECT available, buyer_limit INTO v_avail, v_limit FROM {schema}.stock WHERE sku = p_sku FOR UPDATE;
	IF v_avail IS NULL OR v_avail < p_qty OR v_limit > 0 THEN
		SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 30002, MESSAGE_TEXT = 'inventory: line refused at 0';
	END IF;
	UPDATE {schema}.stock SET available = v_avail - p_qty WHERE sku = p_sku;`

// oneLineProc returns the CREATE PROCEDURE of a reserve procedure of one
// line named name, with the parameters of reserveProc but the line's SKU
// (p_sku) and quantity (p_qty) in place of the lists: the ledger rows
// first, then take, then COMMIT, in one READ COMMITTED transaction.
func oneLineProc(name, extra, declare, restore, take string) string {
	setWait := ""
	if restore != "" {
		setWait = "IF p_wait IS NOT NULL THEN SET SESSION innodb_lock_wait_timeout = p_wait; END IF;\n\t"
	}
	return "CREATE PROCEDURE {schema}.`" + name + "`(" + `
	IN p_id VARBINARY(128), IN p_expires BIGINT, IN p_created BIGINT,
	IN p_sku VARBINARY(128), IN p_qty BIGINT` + extra + `)
MODIFIES SQL DATA
BEGIN
	` + declare + `
	DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN
		ROLLBACK;
		` + restore + `
		RESIGNAL;
	END;
	` + setWait + `SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
	START TRANSACTION;
	INSERT INTO {schema}.reservation (id, state, expires_at, created_at) VALUES (p_id, 1, p_expires, p_created);
	INSERT INTO {schema}.reservation_line (reservation_id, sku, qty) VALUES (p_id, p_sku, p_qty);
	` + take + `
	COMMIT;
	` + restore + `
END`
}

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

// sqlcondTakeUnlimited is sqlcondTake for a SKU without a limit per buyer:
// a line of a SKU with one is refused.
const sqlcondTakeUnlimited = `UPDATE {schema}.stock SET available = available - v_qty WHERE sku = v_sku AND available >= v_qty AND buyer_limit = 0;
		IF ROW_COUNT() = 0 THEN
			SET v_msg = CONCAT('inventory: line refused at ', v_i);
			SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 30002, MESSAGE_TEXT = v_msg;
		END IF;`

// lockingTakeUnlimited is lockingTake for a SKU without a limit per buyer:
// a line of a SKU with one is refused.
const lockingTakeUnlimited = `SET v_avail = NULL;
		SELECT available, buyer_limit INTO v_avail, v_limit FROM {schema}.stock WHERE sku = v_sku FOR UPDATE;
		IF v_avail IS NULL OR v_avail < v_qty OR v_limit > 0 THEN
			SET v_msg = CONCAT('inventory: line refused at ', v_i);
			SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 30002, MESSAGE_TEXT = v_msg;
		END IF;
		UPDATE {schema}.stock SET available = v_avail - v_qty WHERE sku = v_sku;`

// lockingDeclareLimit is lockingDeclare with the variable lockingTakeUnlimited
// reads the limit into.
const lockingDeclareLimit = `DECLARE v_avail, v_limit BIGINT;
	DECLARE v_wait BIGINT DEFAULT @@SESSION.innodb_lock_wait_timeout;
	DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_avail = NULL;`

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
