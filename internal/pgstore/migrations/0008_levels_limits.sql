-- Backorders, stock levels, limits per buyer, partial carts and longer
-- holds. {schema} stands for the quoted schema name.
--
-- stock.backorder is the SKU's StockOptions.Backorder (B): its available
-- units are the units on hand plus B, so that the conditional take stays
-- "available >= n"; the units held and sold beyond the stock on hand are
-- max(0, B - available). stock.buyer_limit is its StockOptions.Limit (0: no
-- limit).
--
-- stock.received counts what SetStock, SetStockWith and AddStock changed the
-- available units by (B included), summed, so that Levels reads
-- sold = received - available - held without summing a ledger that
-- retention purges. Buyers, settlement, expiry and purges never change it.
-- stock.received_before is what a SKU made before this migration had
-- received by then (available + held + sold as its ledger showed): NULL
-- until the statement at the end of this file counts it, 0 for a SKU made
-- after. received_before + received = available + held + sold.
--
-- buyer_usage holds, per SKU with a limit and buyer, the units of the
-- buyer's held and committed reservations: the step that takes a line of
-- a limited SKU checks it and adds to it in the same transaction, under its
-- row lock, and a release, cancellation or expiry takes the line's units
-- off it in the transaction that moves the reservation out of Held, so
-- once. reservation_line.counted marks the lines counted there. A row that
-- reaches 0 is deleted. Purge deletes reservations only, never usage:
-- committed units stay counted.
--
-- Lock order, as every writer of the schema: SKUs in order; within one SKU,
-- its stock row, then its bucket rows in bucket order, then its usage rows
-- in buyer order. Reserve still waits for no bucket row (SKIP LOCKED).
--
-- Every column is added without a default or with a constant one, and the
-- table is new: no table is rewritten, and the locks of ALTER TABLE last as
-- long as the catalog change. The count of received_before for the SKUs
-- that exist runs after the migration transaction, a SKU at a time (see the
-- end of the file).
--
-- The functions of 0006_stock_buckets.sql that set and add stock and give
-- units back are replaced, under the same names, so that processes of an
-- older version keep received and the usage right during a rolling deploy;
-- such processes still take units without checking a limit, so give SKUs a
-- limit once every process runs this version.

ALTER TABLE {schema}.stock ADD COLUMN IF NOT EXISTS backorder bigint NOT NULL DEFAULT 0;
ALTER TABLE {schema}.stock ADD COLUMN IF NOT EXISTS buyer_limit bigint NOT NULL DEFAULT 0;
ALTER TABLE {schema}.stock ADD COLUMN IF NOT EXISTS received bigint NOT NULL DEFAULT 0;
ALTER TABLE {schema}.stock ADD COLUMN IF NOT EXISTS received_before bigint;
ALTER TABLE {schema}.stock ALTER COLUMN received_before SET DEFAULT 0;

ALTER TABLE {schema}.reservation ADD COLUMN IF NOT EXISTS buyer text COLLATE "C";
ALTER TABLE {schema}.reservation ADD COLUMN IF NOT EXISTS partial boolean NOT NULL DEFAULT false;

ALTER TABLE {schema}.reservation_line ADD COLUMN IF NOT EXISTS counted boolean NOT NULL DEFAULT false;

CREATE TABLE IF NOT EXISTS {schema}.buyer_usage (
	sku   text COLLATE "C" NOT NULL,
	buyer text COLLATE "C" NOT NULL,
	-- The CHECK is the last line of defence: units are taken off once.
	used  bigint NOT NULL CONSTRAINT buyer_usage_used_not_negative CHECK (used >= 0),
	PRIMARY KEY (sku, buyer)
);

-- stock_spread again (see 0006_stock_buckets.sql): the bounds are those of
-- the units on hand (0 .. p_max plus the SKU's backorder), and received
-- changes by what the available units changed by.
CREATE OR REPLACE FUNCTION {schema}.stock_spread(p_sku text, p_total bigint, p_delta bigint, p_buckets int, p_max bigint) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
	k      int;
	row_av bigint;
	bo     bigint;
	bs     int[];
	av     bigint[];
	was    bigint;
	total  bigint;
BEGIN
	SELECT s.buckets, s.available, s.backorder INTO k, row_av, bo FROM {schema}.stock s WHERE s.sku = p_sku FOR UPDATE;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	SELECT coalesce(array_agg(b.bucket ORDER BY b.bucket), '{}'), coalesce(array_agg(b.available ORDER BY b.bucket), '{}') INTO bs, av
	FROM (SELECT c.bucket, c.available FROM {schema}.stock_bucket c WHERE c.sku = p_sku ORDER BY c.bucket FOR UPDATE) b;
	was := row_av + coalesce((SELECT sum(x) FROM unnest(av) AS x), 0);
	total := coalesce(p_total, was + coalesce(p_delta, 0));
	IF total < 0 OR total > p_max + bo THEN
		RETURN NULL;
	END IF;
	k := greatest(coalesce(p_buckets, k), 1);
	IF k = 1 THEN
		UPDATE {schema}.stock SET available = total, buckets = 1, received = received + (total - was) WHERE sku = p_sku;
		UPDATE {schema}.stock_bucket SET available = 0 WHERE sku = p_sku AND bucket = ANY (bs) AND available <> 0;
		RETURN total;
	END IF;
	UPDATE {schema}.stock SET available = 0, buckets = k, received = received + (total - was) WHERE sku = p_sku;
	UPDATE {schema}.stock_bucket t
	SET available = CASE WHEN t.bucket < k THEN total / k + CASE WHEN t.bucket < total % k THEN 1 ELSE 0 END ELSE 0 END
	WHERE t.sku = p_sku AND t.bucket = ANY (bs);
	INSERT INTO {schema}.stock_bucket AS t (sku, bucket, available)
	SELECT p_sku, g.b, total / k + CASE WHEN g.b < total % k THEN 1 ELSE 0 END
	FROM generate_series(0, k - 1) AS g (b) WHERE g.b <> ALL (bs) ORDER BY g.b
	ON CONFLICT (sku, bucket) DO UPDATE SET available = t.available + EXCLUDED.available;
	RETURN total;
END
$fn$;

-- stock_set_with sets the units on hand of p_sku to p_available, so its
-- available units to p_available plus its backorder. A new SKU gets
-- p_buckets buckets, the limit p_limit and the backorder p_backorder. With
-- p_keep a SKU that exists keeps its own (SetStock); otherwise it gets them
-- (SetStockWith).
CREATE OR REPLACE FUNCTION {schema}.stock_set_with(p_sku text, p_available bigint, p_buckets int, p_limit bigint, p_backorder bigint, p_keep bool) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
	bo bigint;
BEGIN
	INSERT INTO {schema}.stock (sku, available, buckets, buyer_limit, backorder) VALUES (p_sku, 0, greatest(p_buckets, 1), p_limit, p_backorder)
	ON CONFLICT (sku) DO NOTHING;
	IF p_keep THEN
		SELECT s.backorder INTO bo FROM {schema}.stock s WHERE s.sku = p_sku FOR UPDATE;
	ELSE
		UPDATE {schema}.stock SET buyer_limit = p_limit, backorder = p_backorder WHERE sku = p_sku;
		bo := p_backorder;
	END IF;
	PERFORM {schema}.stock_spread(p_sku, p_available + bo, NULL, CASE WHEN p_keep THEN NULL ELSE p_buckets END, p_available);
END
$fn$;

-- stock_set again (see 0006_stock_buckets.sql), for processes of an older
-- version: a SKU keeps its backorder with SetStock, and SetStockWith of
-- such a process sets no limit and no backorder.
CREATE OR REPLACE FUNCTION {schema}.stock_set(p_sku text, p_available bigint, p_buckets int, p_keep bool) RETURNS void
LANGUAGE sql AS $fn$
	SELECT {schema}.stock_set_with(p_sku, p_available, p_buckets, 0, 0, p_keep)
$fn$;

-- stock_add again (see 0006_stock_buckets.sql), counting the units in
-- received, within the bounds of the units on hand.
CREATE OR REPLACE FUNCTION {schema}.stock_add(p_sku text, p_delta bigint, p_max bigint) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
	total bigint;
BEGIN
	UPDATE {schema}.stock SET available = available + p_delta, received = received + p_delta
	WHERE sku = p_sku AND buckets <= 1 AND available + p_delta BETWEEN 0 AND p_max + backorder
		AND NOT EXISTS (SELECT FROM {schema}.stock_bucket b WHERE b.sku = p_sku AND b.available > 0)
	RETURNING available INTO total;
	IF FOUND THEN
		RETURN total;
	END IF;
	RETURN {schema}.stock_spread(p_sku, NULL, p_delta, NULL, p_max);
END
$fn$;

-- stock_take_line takes the line p_sku x p_qty of reservation p_id (already
-- recorded) by every rule of the SKU, and returns the units it held:
--
--  - a SKU with a limit refuses a line without a buyer (p_buyer NULL), and
--    one that would take the buyer's usage past the limit, with IV005,
--    whose DETAIL is "<limit> <usage>";
--  - with p_partial the line holds as many units as it can, from
--    greatest(p_min, 1) up to p_qty, within the stock and what is left of
--    the limit; without, p_qty or nothing;
--  - an unknown SKU, or too few units, raise IV002; for a SKU in buckets,
--    IV004 when other transactions hold the buckets with the units (see
--    stock_take).
--
-- A SKU kept whole is read under its row lock, then its usage row is
-- locked: the line is decided under both. A SKU in buckets takes from one
-- bucket with stock_take (the units a partial line can have are those of
-- the SKU, gathered into one bucket when no bucket has them), then adds to
-- the usage under its row lock, refusing with IV005 when the usage grew
-- meanwhile. The line's held units and whether they count against the
-- buyer's usage are recorded on it.
CREATE OR REPLACE FUNCTION {schema}.stock_take_line(p_id text, p_sku text, p_qty bigint, p_start bigint, p_buyer text, p_min bigint, p_partial bool) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
	k     int;
	lim   bigint;
	av    bigint;
	had   bigint;
	lo    bigint := CASE WHEN p_partial THEN greatest(p_min, 1) ELSE p_qty END;
	want  bigint := p_qty;
	got   bigint;
	r     int;
BEGIN
	SELECT s.buckets, s.buyer_limit INTO k, lim FROM {schema}.stock s WHERE s.sku = p_sku;
	IF NOT FOUND THEN
		PERFORM {schema}.reserve_abort('IV002');
	END IF;
	IF k <= 1 THEN
		SELECT s.available, s.buckets, s.buyer_limit INTO av, k, lim FROM {schema}.stock s WHERE s.sku = p_sku FOR UPDATE;
	END IF;
	IF lim > 0 THEN
		IF p_buyer IS NULL THEN
			RAISE EXCEPTION USING ERRCODE = 'IV005', MESSAGE = 'inventory: limit per buyer exceeded', DETAIL = lim || ' 0';
		END IF;
		IF k <= 1 THEN
			INSERT INTO {schema}.buyer_usage AS u (sku, buyer, used) VALUES (p_sku, p_buyer, 0)
			ON CONFLICT (sku, buyer) DO UPDATE SET used = u.used RETURNING u.used INTO had;
		ELSE
			had := coalesce((SELECT u.used FROM {schema}.buyer_usage u WHERE u.sku = p_sku AND u.buyer = p_buyer), 0);
		END IF;
		IF had + lo > lim THEN
			RAISE EXCEPTION USING ERRCODE = 'IV005', MESSAGE = 'inventory: limit per buyer exceeded', DETAIL = lim || ' ' || had;
		END IF;
		want := least(p_qty, lim - had);
	END IF;

	IF k <= 1 THEN
		IF p_partial THEN
			want := least(want, av);
		END IF;
		IF want < lo OR av < want THEN
			PERFORM {schema}.reserve_abort('IV002');
		END IF;
		UPDATE {schema}.stock SET available = available - want WHERE sku = p_sku;
	ELSIF NOT p_partial THEN
		PERFORM {schema}.stock_take(p_id, p_sku, want, p_start);
	ELSE
		-- The stock may move between the snapshot that sizes the line and
		-- the take: size it again, a few times.
		FOR r IN 1 .. 4 LOOP
			got := least(want, {schema}.stock_available(p_sku));
			IF got < lo THEN
				PERFORM {schema}.reserve_abort('IV002');
			END IF;
			BEGIN
				PERFORM {schema}.stock_take(p_id, p_sku, got, p_start);
				EXIT;
			EXCEPTION WHEN SQLSTATE 'IV002' THEN
				got := NULL;
			END;
		END LOOP;
		IF got IS NULL THEN
			PERFORM {schema}.reserve_abort('IV002');
		END IF;
		want := got;
	END IF;

	IF lim > 0 THEN
		IF k <= 1 THEN
			UPDATE {schema}.buyer_usage SET used = used + want WHERE sku = p_sku AND buyer = p_buyer;
		ELSE
			INSERT INTO {schema}.buyer_usage AS u (sku, buyer, used) VALUES (p_sku, p_buyer, want)
			ON CONFLICT (sku, buyer) DO UPDATE SET used = u.used + EXCLUDED.used WHERE u.used + EXCLUDED.used <= lim
			RETURNING u.used INTO got;
			IF NOT FOUND THEN
				had := coalesce((SELECT u.used FROM {schema}.buyer_usage u WHERE u.sku = p_sku AND u.buyer = p_buyer), 0);
				RAISE EXCEPTION USING ERRCODE = 'IV005', MESSAGE = 'inventory: limit per buyer exceeded', DETAIL = lim || ' ' || had;
			END IF;
		END IF;
		UPDATE {schema}.reservation_line SET qty = want, counted = true WHERE reservation_id = p_id AND sku = p_sku;
	ELSIF want <> p_qty THEN
		UPDATE {schema}.reservation_line SET qty = want WHERE reservation_id = p_id AND sku = p_sku;
	END IF;
	RETURN want;
END
$fn$;

-- stock_lock locks the stock rows of p_sku in SKU order, each followed by
-- the usage row of p_buyer when the SKU has a limit, and returns them: the
-- row lock of the pessimistic strategy for a request with a buyer. With
-- p_nowait a row another transaction holds fails at once (55P03). A SKU not
-- stocked is left out; o_used is NULL for a SKU without a limit, or without
-- a buyer.
CREATE OR REPLACE FUNCTION {schema}.stock_lock(p_sku text[], p_buyer text, p_nowait bool)
RETURNS TABLE (o_sku text, o_available bigint, o_limit bigint, o_used bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
	s_ text;
BEGIN
	FOR s_ IN SELECT DISTINCT u.s COLLATE "C" FROM unnest(p_sku) AS u (s) ORDER BY 1 LOOP
		IF p_nowait THEN
			SELECT s.sku, s.available, s.buyer_limit INTO o_sku, o_available, o_limit FROM {schema}.stock s WHERE s.sku = s_ FOR UPDATE NOWAIT;
		ELSE
			SELECT s.sku, s.available, s.buyer_limit INTO o_sku, o_available, o_limit FROM {schema}.stock s WHERE s.sku = s_ FOR UPDATE;
		END IF;
		CONTINUE WHEN NOT FOUND;
		o_used := NULL;
		IF o_limit > 0 AND p_buyer IS NOT NULL THEN
			INSERT INTO {schema}.buyer_usage (sku, buyer, used) VALUES (s_, p_buyer, 0) ON CONFLICT (sku, buyer) DO NOTHING;
			IF p_nowait THEN
				SELECT u.used INTO o_used FROM {schema}.buyer_usage u WHERE u.sku = s_ AND u.buyer = p_buyer FOR UPDATE NOWAIT;
			ELSE
				SELECT u.used INTO o_used FROM {schema}.buyer_usage u WHERE u.sku = s_ AND u.buyer = p_buyer FOR UPDATE;
			END IF;
		END IF;
		RETURN NEXT;
	END LOOP;
END
$fn$;

-- stock_held records what the step of the pessimistic strategy held of
-- reservation p_id: p_qty[i] units of line p_sku[i], counted against the
-- usage of p_buyer when p_counted[i]. The caller holds the rows (stock_lock).
CREATE OR REPLACE FUNCTION {schema}.stock_held(p_id text, p_buyer text, p_sku text[], p_qty bigint[], p_counted bool[]) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
	UPDATE {schema}.buyer_usage t SET used = t.used + u.q
	FROM unnest(p_sku, p_qty, p_counted) AS u (s, q, c) WHERE u.c AND t.sku = u.s AND t.buyer = p_buyer;
	UPDATE {schema}.reservation_line l SET qty = u.q, counted = u.c
	FROM unnest(p_sku, p_qty, p_counted) AS u (s, q, c) WHERE l.reservation_id = p_id AND l.sku = u.s AND (l.qty <> u.q OR l.counted <> u.c);
END
$fn$;

-- stock_return gives units back: p_qty[i] units of p_sku[i] to bucket
-- p_bucket[i] (NULL: the stock row), as stock_give does, and takes them off
-- the usage of buyer p_buyer[i] (NULL: not counted), in the lock order:
-- SKU by SKU, its stock row, its buckets in order, its usage rows in buyer
-- order.
CREATE OR REPLACE FUNCTION {schema}.stock_return(p_sku text[], p_bucket int[], p_qty bigint[], p_buyer text[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
	s_ text;
	w_ int;
	b_ int;
	y_ text;
	q_ bigint;
	n_ bigint;
BEGIN
	FOR s_, w_, b_, y_, q_ IN
		SELECT g.s, g.w, g.b, g.y, g.q FROM (
			SELECT u.s, 0 AS w, u.b, NULL::text AS y, sum(u.q)::bigint AS q FROM unnest(p_sku, p_bucket, p_qty) AS u (s, b, q) GROUP BY u.s, u.b
			UNION ALL
			SELECT u.s, 1, NULL::int, u.y, sum(u.q)::bigint FROM unnest(p_sku, p_buyer, p_qty) AS u (s, y, q) WHERE u.y IS NOT NULL GROUP BY u.s, u.y
		) g ORDER BY g.s COLLATE "C", g.w, g.b NULLS FIRST, g.y COLLATE "C"
	LOOP
		IF w_ = 1 THEN
			UPDATE {schema}.buyer_usage SET used = used - q_ WHERE sku = s_ AND buyer = y_ RETURNING used INTO n_;
			IF n_ = 0 THEN
				DELETE FROM {schema}.buyer_usage WHERE sku = s_ AND buyer = y_ AND used = 0;
			END IF;
		ELSIF b_ IS NULL THEN
			UPDATE {schema}.stock SET available = available + q_ WHERE sku = s_;
		ELSE
			INSERT INTO {schema}.stock_bucket AS t (sku, bucket, available) VALUES (s_, b_, q_)
			ON CONFLICT (sku, bucket) DO UPDATE SET available = t.available + EXCLUDED.available;
		END IF;
	END LOOP;
END
$fn$;

-- stock_give_lines again (see 0006_stock_buckets.sql): the units of the
-- counted lines come off the buyer's usage too.
CREATE OR REPLACE FUNCTION {schema}.stock_give_lines(p_id text) RETURNS void
LANGUAGE sql AS $fn$
	SELECT {schema}.stock_return(coalesce(array_agg(l.sku), '{}'), coalesce(array_agg(l.bucket), '{}'), coalesce(array_agg(l.qty), '{}'),
		coalesce(array_agg(CASE WHEN l.counted THEN (SELECT r.buyer FROM {schema}.reservation r WHERE r.id = p_id) END), '{}'))
	FROM {schema}.reservation_line l WHERE l.reservation_id = p_id
$fn$;

-- expire_due_lines is expire_due_buckets (0006_stock_buckets.sql)
-- reporting the units of the expired holds per SKU, bucket and the buyer
-- whose usage they count against (NULL: none), in the lock order, for
-- stock_return.
CREATE OR REPLACE FUNCTION {schema}.expire_due_lines(now_ timestamptz, lim bigint)
RETURNS TABLE (o_n bigint, o_sku text, o_bucket int, o_buyer text, o_qty bigint)
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
	SELECT cardinality(ids)::bigint, x.sku, x.bucket, x.buyer, sum(x.qty)::bigint
	FROM (SELECT l.sku, l.bucket, l.qty,
			CASE WHEN l.counted THEN (SELECT r.buyer FROM {schema}.reservation r WHERE r.id = l.reservation_id) END AS buyer
		FROM {schema}.reservation_line l WHERE l.reservation_id = ANY (ids)) x
	GROUP BY x.sku, x.bucket, x.buyer ORDER BY x.sku, x.bucket NULLS FIRST, x.buyer;
END
$fn$;

-- stock_levels returns the levels of p_sku in one snapshot (the caller's
-- statement): the available units of the stock row and every bucket, the
-- units of held reservations, what the SKU received (received_before, or
-- while it is not yet counted the count itself, plus received) and its
-- backorder; no row for an unknown SKU.
CREATE OR REPLACE FUNCTION {schema}.stock_levels(p_sku text)
RETURNS TABLE (o_available bigint, o_held bigint, o_received bigint, o_backorder bigint)
LANGUAGE sql STABLE AS $fn$
	SELECT a.available, a.held,
		coalesce(a.received_before, a.available + a.held + (
			SELECT coalesce(sum(l.qty), 0) FROM {schema}.reservation_line l JOIN {schema}.reservation r ON r.id = l.reservation_id
			WHERE l.sku = a.sku AND r.state = 2) - a.received)::bigint + a.received,
		a.backorder
	FROM (
		SELECT s.sku, s.received, s.received_before, s.backorder,
			(s.available + coalesce((SELECT sum(b.available) FROM {schema}.stock_bucket b WHERE b.sku = s.sku), 0))::bigint AS available,
			coalesce((SELECT sum(l.qty) FROM {schema}.reservation r JOIN {schema}.reservation_line l ON l.reservation_id = r.id AND l.sku = s.sku
				WHERE r.state = 1), 0)::bigint AS held
		FROM {schema}.stock s WHERE s.sku = p_sku
	) a
$fn$;

-- inventory:outside-transaction
-- Count what each SKU made before this migration had received, a SKU at a
-- time, each in a transaction of its own, so that no stock row stays locked
-- longer than its own update. The counts are read in one snapshot, before
-- the first update: received_before = available + held + sold - received
-- then, and SetStock and AddStock change received and the rest by the same
-- units afterwards. Sold units are those of committed reservations the
-- ledger still holds: units of reservations purged before this migration
-- are not counted.
DO $do$
DECLARE
	c record;
BEGIN
	FOR c IN
		SELECT s.sku, (s.available
			+ coalesce((SELECT sum(b.available) FROM {schema}.stock_bucket b WHERE b.sku = s.sku), 0)
			+ coalesce(h.qty, 0) - s.received)::bigint AS base
		FROM {schema}.stock s
		LEFT JOIN (SELECT l.sku, sum(l.qty) AS qty FROM {schema}.reservation_line l JOIN {schema}.reservation r ON r.id = l.reservation_id
			WHERE r.state IN (1, 2) GROUP BY l.sku) h ON h.sku = s.sku
		WHERE s.received_before IS NULL ORDER BY s.sku
	LOOP
		UPDATE {schema}.stock SET received_before = c.base WHERE sku = c.sku AND received_before IS NULL;
		COMMIT;
	END LOOP;
END
$do$
