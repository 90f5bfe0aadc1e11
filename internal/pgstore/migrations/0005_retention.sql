-- Retention: Purge deletes settled reservations once Options.Retention has
-- passed since they settled. {schema} stands for the quoted schema name.
--
-- settled_at is when a reservation left Held: the store's Commit, Release,
-- Cancel and expiry set it. Rows settled before this migration, or by a
-- writer that does not set it, have NULL there, and Purge reads their
-- expires_at instead: a commit or release happens before it, a tombstone at
-- it, an expiry at or after it. ADD COLUMN without a default changes only the
-- catalog: it does not rewrite the table.
ALTER TABLE {schema}.reservation ADD COLUMN IF NOT EXISTS settled_at timestamptz;

-- expire_due again (see 0004_expire_due.sql), with the moment of the expiry
-- recorded in settled_at. The groupcommit flush expires through it.
CREATE OR REPLACE FUNCTION {schema}.expire_due(now_ timestamptz, lim bigint)
RETURNS TABLE (o_n bigint, o_sku text, o_qty bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
	ids text[];
BEGIN
	WITH done AS (
		UPDATE {schema}.reservation r SET state = 4, settled_at = now_
		WHERE r.id = ANY (ARRAY(
			SELECT d.id FROM {schema}.reservation d
			WHERE d.state = 1 AND d.expires_at <= now_
			ORDER BY d.expires_at LIMIT lim FOR UPDATE SKIP LOCKED))
		RETURNING r.id
	)
	SELECT coalesce(array_agg(done.id), '{}') INTO ids FROM done;
	IF cardinality(ids) = 0 THEN
		RETURN;
	END IF;
	RETURN QUERY
	SELECT cardinality(ids)::bigint, l.sku, sum(l.qty)::bigint
	FROM {schema}.reservation_line l WHERE l.reservation_id = ANY (ids)
	GROUP BY l.sku ORDER BY l.sku;
END
$fn$;

-- Purge reads settled reservations in the order they settled, oldest first,
-- through this index; held ones stay out of it. On an empty table (a new
-- installation) it is built here, at no cost; on a ledger with rows it is
-- built below, without blocking writes.
DO $do$
BEGIN
	IF NOT EXISTS (SELECT FROM {schema}.reservation) THEN
		CREATE INDEX IF NOT EXISTS reservation_settled ON {schema}.reservation ((coalesce(settled_at, expires_at))) WHERE state <> 1;
	END IF;
END
$do$;

-- inventory:outside-transaction
-- A build that was interrupted (its process died) leaves the index invalid,
-- and IF NOT EXISTS would keep it so: drop it first. The table is found by
-- its row type, so that the schema's name appears in no string.
DO $do$
DECLARE
	ix regclass;
BEGIN
	SELECT i.indexrelid::regclass INTO ix FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
	WHERE i.indrelid = (SELECT t.typrelid FROM pg_type t WHERE t.oid = pg_typeof(NULL::{schema}.reservation))
		AND c.relname = 'reservation_settled' AND NOT i.indisvalid;
	IF ix IS NOT NULL THEN
		EXECUTE 'DROP INDEX ' || ix::text;
	END IF;
END
$do$

-- inventory:outside-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS reservation_settled ON {schema}.reservation ((coalesce(settled_at, expires_at))) WHERE state <> 1
