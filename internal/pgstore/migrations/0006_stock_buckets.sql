-- Stock buckets: one SKU's available units split over rows of their own, so
-- that buyers take units of one hot SKU at once instead of queueing on one
-- row lock. {schema} stands for the quoted schema name.
--
-- stock.buckets is the number of buckets of the SKU. With 1 (the default,
-- and every SKU made before this migration) the SKU is kept whole in its
-- stock row, as before. With K > 1 its units are in stock_bucket rows
-- 0 .. K-1 and its stock row holds none, but units a settlement gives back
-- to the row meanwhile (an older version's release, say) are still the
-- SKU's: Available sums the stock row and every bucket row of the SKU, and
-- the functions below gather such units back into the buckets. Adding the
-- columns with a constant default or none rewrites no table.
--
-- reservation_line.bucket records the bucket a line was taken from (NULL:
-- the stock row), so that releases, cancellations and expiry give its units
-- back there.
--
-- Lock order, as every writer of the schema: SKUs in order; within one SKU,
-- its stock row, then its bucket rows in bucket order. Reserve never waits
-- for a bucket row: it takes the one it can lock at once (SKIP LOCKED), and
-- when every bucket with the units is held by someone else it rolls back
-- with IV004 and is sent again; so a buyer waits only for the stock rows of
-- SKUs kept whole, in SKU order, as before. Settlement, administration and
-- Rebalance wait for rows in that order.
--
-- These are new functions next to the older ones (expire_due, the
-- groupcommit flush), which stay for processes of an older version during a
-- rolling deploy: they know nothing of buckets, give units back to the stock
-- row, and those units are gathered as above. Make SKUs of more than one
-- bucket once every process runs this version.

ALTER TABLE {schema}.stock ADD COLUMN IF NOT EXISTS buckets integer NOT NULL DEFAULT 1;

ALTER TABLE {schema}.reservation_line ADD COLUMN IF NOT EXISTS bucket integer;

CREATE TABLE IF NOT EXISTS {schema}.stock_bucket (
	sku       text COLLATE "C" NOT NULL,
	bucket    integer NOT NULL,
	available bigint NOT NULL CONSTRAINT stock_bucket_available_not_negative CHECK (available >= 0),
	PRIMARY KEY (sku, bucket)
);

-- stock_available returns the available units of a SKU, its stock row and
-- every bucket, read in one snapshot; NULL for an unknown SKU.
CREATE OR REPLACE FUNCTION {schema}.stock_available(p_sku text) RETURNS bigint
LANGUAGE sql STABLE AS $fn$
	SELECT s.available + coalesce((SELECT sum(b.available) FROM {schema}.stock_bucket b WHERE b.sku = s.sku), 0)::bigint
	FROM {schema}.stock s WHERE s.sku = p_sku
$fn$;

-- stock_take takes p_qty units of p_sku for the line of reservation p_id
-- (already recorded), from one bucket, and records the bucket on the line.
-- p_start spreads the buyers: the buckets are tried from p_start mod K on.
-- It raises IV002 when the SKU is unknown or short as a whole, and IV004
-- when the units are there but other transactions hold the buckets that
-- have them (the caller rolls back and sends the reservation again).
--
--  1. K = 1: the conditional UPDATE of the stock row.
--  2. K > 1: the first bucket, from p_start on, that has the units and that
--     no other transaction holds (FOR UPDATE SKIP LOCKED).
--  3. Else, when one snapshot of the stock row and every bucket finds the
--     SKU short, refuse: the SKU was short at that moment.
--  4. Else gather: lock the stock row and the buckets no other transaction
--     holds (SKIP LOCKED), move into one of them (for K = 1, the stock row)
--     just the units the line lacks, and take the line from it. The line
--     comes from one bucket; no unit is made or lost by the move.
CREATE OR REPLACE FUNCTION {schema}.stock_take(p_id text, p_sku text, p_qty bigint, p_start bigint) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
	k      int;
	b      int;
	total  bigint;
	bs     int[];
	av     bigint[];
	tgt    int;  -- index into bs/av of the bucket the line is taken from; 0: the stock row
	row_av bigint;
	need   bigint;
	mv     bigint;
	i      int;
BEGIN
	SELECT s.buckets INTO k FROM {schema}.stock s WHERE s.sku = p_sku;
	IF NOT FOUND THEN
		PERFORM {schema}.reserve_abort('IV002');
	END IF;
	IF k <= 1 THEN
		UPDATE {schema}.stock SET available = available - p_qty WHERE sku = p_sku AND available >= p_qty AND buckets <= 1;
		IF FOUND THEN
			RETURN;
		END IF;
	ELSE
		UPDATE {schema}.stock_bucket t SET available = t.available - p_qty
		FROM (SELECT c.bucket FROM {schema}.stock_bucket c
			WHERE c.sku = p_sku AND c.bucket < k AND c.available >= p_qty
			ORDER BY (c.bucket - p_start % k + k) % k LIMIT 1 FOR UPDATE SKIP LOCKED) c
		WHERE t.sku = p_sku AND t.bucket = c.bucket
		RETURNING t.bucket INTO b;
		IF FOUND THEN
			UPDATE {schema}.reservation_line SET bucket = b WHERE reservation_id = p_id AND sku = p_sku;
			RETURN;
		END IF;
	END IF;

	total := {schema}.stock_available(p_sku);
	IF total < p_qty THEN
		PERFORM {schema}.reserve_abort('IV002');
	END IF;

	-- Gather. K is read again under the lock of the stock row.
	SELECT s.available, s.buckets INTO row_av, k FROM {schema}.stock s WHERE s.sku = p_sku FOR UPDATE SKIP LOCKED;
	IF NOT FOUND THEN
		row_av := NULL;
		k := greatest(k, 2); -- the stock row is held: only a bucket can take the line
	END IF;
	SELECT coalesce(array_agg(g.bucket ORDER BY g.o), '{}'), coalesce(array_agg(g.available ORDER BY g.o), '{}') INTO bs, av
	FROM (SELECT c.bucket, c.available, (c.bucket - p_start % k + k) % k AS o FROM {schema}.stock_bucket c
		WHERE c.sku = p_sku ORDER BY c.bucket FOR UPDATE SKIP LOCKED) g;
	IF k <= 1 THEN
		tgt := CASE WHEN row_av IS NULL THEN NULL ELSE 0 END;
	ELSE
		tgt := NULL;
		FOR i IN 1 .. cardinality(bs) LOOP
			IF bs[i] < k THEN
				tgt := i;
				EXIT;
			END IF;
		END LOOP;
	END IF;
	IF tgt IS NULL OR coalesce(row_av, 0) + coalesce((SELECT sum(x) FROM unnest(av) AS x), 0) < p_qty THEN
		RAISE EXCEPTION USING ERRCODE = 'IV004', MESSAGE = 'inventory: the buckets with the units are held by other transactions';
	END IF;
	need := p_qty - CASE WHEN tgt = 0 THEN row_av ELSE av[tgt] END;
	IF need > 0 AND tgt <> 0 AND row_av > 0 THEN
		mv := least(need, row_av);
		UPDATE {schema}.stock SET available = available - mv WHERE sku = p_sku;
		av[tgt] := av[tgt] + mv;
		need := need - mv;
	END IF;
	FOR i IN 1 .. cardinality(bs) LOOP
		EXIT WHEN need <= 0;
		CONTINUE WHEN i = tgt OR av[i] = 0;
		mv := least(need, av[i]);
		av[i] := av[i] - mv;
		need := need - mv;
		IF tgt = 0 THEN
			row_av := row_av + mv;
		ELSE
			av[tgt] := av[tgt] + mv;
		END IF;
	END LOOP;
	IF tgt = 0 THEN
		row_av := row_av - p_qty;
	ELSE
		av[tgt] := av[tgt] - p_qty;
	END IF;
	UPDATE {schema}.stock_bucket t SET available = u.a
	FROM unnest(bs, av) AS u (b, a) WHERE t.sku = p_sku AND t.bucket = u.b AND t.available <> u.a;
	IF tgt = 0 THEN
		UPDATE {schema}.stock SET available = row_av WHERE sku = p_sku;
	ELSE
		UPDATE {schema}.reservation_line SET bucket = bs[tgt] WHERE reservation_id = p_id AND sku = p_sku;
	END IF;
END
$fn$;

-- stock_give gives units back: p_qty[i] units of p_sku[i] to bucket
-- p_bucket[i] (NULL: the stock row), in the lock order (SKU, then the stock
-- row, then buckets in order). A bucket row that is not there (the SKU has
-- fewer buckets now) is made: no unit is dropped.
CREATE OR REPLACE FUNCTION {schema}.stock_give(p_sku text[], p_bucket int[], p_qty bigint[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
	s_ text;
	b_ int;
	q_ bigint;
BEGIN
	FOR s_, b_, q_ IN
		SELECT u.s, u.b, sum(u.q)::bigint FROM unnest(p_sku, p_bucket, p_qty) AS u (s, b, q)
		GROUP BY u.s, u.b ORDER BY u.s, u.b NULLS FIRST
	LOOP
		IF b_ IS NULL THEN
			UPDATE {schema}.stock SET available = available + q_ WHERE sku = s_;
		ELSE
			INSERT INTO {schema}.stock_bucket AS t (sku, bucket, available) VALUES (s_, b_, q_)
			ON CONFLICT (sku, bucket) DO UPDATE SET available = t.available + EXCLUDED.available;
		END IF;
	END LOOP;
END
$fn$;

-- stock_give_lines gives back the units of every line of reservation p_id
-- to the bucket it was taken from. The caller has moved the reservation out
-- of Held in the same transaction.
CREATE OR REPLACE FUNCTION {schema}.stock_give_lines(p_id text) RETURNS void
LANGUAGE sql AS $fn$
	SELECT {schema}.stock_give(coalesce(array_agg(l.sku), '{}'), coalesce(array_agg(l.bucket), '{}'), coalesce(array_agg(l.qty), '{}'))
	FROM {schema}.reservation_line l WHERE l.reservation_id = p_id
$fn$;

-- expire_due_buckets is expire_due (0005_retention.sql) reporting the units
-- of the expired holds per SKU and bucket, in the lock order.
CREATE OR REPLACE FUNCTION {schema}.expire_due_buckets(now_ timestamptz, lim bigint)
RETURNS TABLE (o_n bigint, o_sku text, o_bucket int, o_qty bigint)
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
	SELECT cardinality(ids)::bigint, l.sku, l.bucket, sum(l.qty)::bigint
	FROM {schema}.reservation_line l WHERE l.reservation_id = ANY (ids)
	GROUP BY l.sku, l.bucket ORDER BY l.sku, l.bucket NULLS FIRST;
END
$fn$;

-- stock_spread locks the stock row of p_sku, then its bucket rows in order,
-- and sets its available units to p_total (NULL: the units it has now plus
-- p_delta) spread evenly over p_buckets buckets (NULL: the SKU's own), the
-- first (units mod K) buckets one unit more: all in the stock row for one
-- bucket, none there for more. It counts and changes only the rows it
-- locked, and adds to (never overwrites) a bucket row made meanwhile by a
-- settlement, so that no unit is made or lost. It records p_buckets on the
-- SKU and returns the new number, or NULL, changing nothing, for an unknown
-- SKU or a number outside 0 .. p_max.
CREATE OR REPLACE FUNCTION {schema}.stock_spread(p_sku text, p_total bigint, p_delta bigint, p_buckets int, p_max bigint) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
	k      int;
	row_av bigint;
	bs     int[];
	av     bigint[];
	total  bigint;
BEGIN
	SELECT s.buckets, s.available INTO k, row_av FROM {schema}.stock s WHERE s.sku = p_sku FOR UPDATE;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	SELECT coalesce(array_agg(b.bucket ORDER BY b.bucket), '{}'), coalesce(array_agg(b.available ORDER BY b.bucket), '{}') INTO bs, av
	FROM (SELECT c.bucket, c.available FROM {schema}.stock_bucket c WHERE c.sku = p_sku ORDER BY c.bucket FOR UPDATE) b;
	total := coalesce(p_total, row_av + coalesce((SELECT sum(x) FROM unnest(av) AS x), 0) + coalesce(p_delta, 0));
	IF total < 0 OR total > p_max THEN
		RETURN NULL;
	END IF;
	k := greatest(coalesce(p_buckets, k), 1);
	IF k = 1 THEN
		UPDATE {schema}.stock SET available = total, buckets = 1 WHERE sku = p_sku;
		UPDATE {schema}.stock_bucket SET available = 0 WHERE sku = p_sku AND bucket = ANY (bs) AND available <> 0;
		RETURN total;
	END IF;
	UPDATE {schema}.stock SET available = 0, buckets = k WHERE sku = p_sku;
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

-- stock_set sets the available units of p_sku to p_available, creating the
-- SKU with p_buckets buckets when it is new. p_keep keeps the buckets of a
-- SKU that exists (SetStock); otherwise it gets p_buckets (SetStockWith).
CREATE OR REPLACE FUNCTION {schema}.stock_set(p_sku text, p_available bigint, p_buckets int, p_keep bool) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
	INSERT INTO {schema}.stock (sku, available, buckets) VALUES (p_sku, 0, greatest(p_buckets, 1))
	ON CONFLICT (sku) DO NOTHING;
	PERFORM {schema}.stock_spread(p_sku, p_available, NULL, CASE WHEN p_keep THEN NULL ELSE p_buckets END, p_available);
END
$fn$;

-- stock_add adds p_delta units to p_sku. A SKU kept whole takes the one
-- conditional UPDATE of before; one of several buckets has its units spread
-- again (stock_spread). It returns the new number, or NULL, changing
-- nothing, when the SKU is unknown or the result would leave 0 .. p_max.
CREATE OR REPLACE FUNCTION {schema}.stock_add(p_sku text, p_delta bigint, p_max bigint) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
	total bigint;
BEGIN
	UPDATE {schema}.stock SET available = available + p_delta
	WHERE sku = p_sku AND buckets <= 1 AND available + p_delta BETWEEN 0 AND p_max
		AND NOT EXISTS (SELECT FROM {schema}.stock_bucket b WHERE b.sku = p_sku AND b.available > 0)
	RETURNING available INTO total;
	IF FOUND THEN
		RETURN total;
	END IF;
	RETURN {schema}.stock_spread(p_sku, NULL, p_delta, NULL, p_max);
END
$fn$;

-- The flush function of the groupcommit strategy again (see
-- 0004_expire_due.sql), under a name of its own, so that processes of an
-- older version keep the one they know, for a schema with SKUs split into
-- buckets. It decides what it did before for SKUs kept whole; a request
-- with a line of a SKU in buckets, by the unlocked read or under the lock,
-- is left out (outcome 5, its rows not recorded or deleted again) for the
-- caller to take with stock_take on its own; a release of a reservation
-- with a line taken from a bucket is left out too, for the caller to
-- release on its own (stock_give_lines). Expiry claims through
-- expire_due_buckets and gives the units of a line taken from a bucket back
-- to that bucket, unless another transaction holds it: then to the row of
-- its SKU, from where stock_take, Rebalance and AddStock gather them.
CREATE OR REPLACE FUNCTION {schema}.groupcommit_flush_buckets(
	r_id    text[],        -- reserve: request IDs, each once
	r_exp   timestamptz[], -- reserve: expiry of each request
	r_off   int[],         -- reserve: request i has lines r_off[i] .. r_off[i+1]-1
	l_sku   int[],         -- line: index into skus; a request's lines in SKU order
	l_qty   bigint[],      -- line: units
	skus    text[],        -- the SKUs of the lines, each once
	c_id    text[],        -- commit: IDs, each once
	now_    timestamptz,   -- the clock reading of the batch
	x_id    text[],        -- release: IDs, each once
	e_limit bigint         -- expire at most this many due holds; 0 for none
) RETURNS TABLE (o_kind smallint, o_idx int, o_outcome smallint, o_sku text, o_avail bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
	n        int := coalesce(array_length(r_id, 1), 0);
	m        int := coalesce(array_length(skus, 1), 0);
	back_sku text[] := '{}';  -- units given back by releases and expiry
	back_qty bigint[] := '{}';
	snap     bigint[];        -- available per SKU, unlocked read (NULL: not stocked)
	dem      bigint[];        -- units the batch's requests ask per SKU
	bkt      bool[];          -- per SKU: split into buckets (unlocked read)
	bkt_l    bool[];          -- per SKU: split into buckets (under the row lock)
	bx_sku   text[] := '{}';  -- units expired from lines taken from buckets
	bx_bkt   int[] := '{}';
	bx_qty   bigint[] := '{}';
	b_       int;
	n_known  int := 0;        -- requests whose ID was recorded before the batch
	all_cand bool := false;   -- every request is a candidate
	all_ins  bool := false;   -- every candidate was recorded by this batch
	ins_idx  int[];           -- the candidates recorded by this batch
	avail    bigint[];        -- available per SKU, under the row lock
	took     bigint[];        -- units granted per SKU
	cand     int[] := '{}';   -- requests decided under the lock
	known    bool[];          -- per request: its ID was recorded before the batch
	inserted bool[];          -- per request: its rows were recorded by this batch
	refused  text[] := '{}';  -- candidates refused under the lock
	ok       bool;
	c        int;
	j        int;
	k        int;
	s_       text;
	a_       bigint;
	expired  bigint := 0;
BEGIN
	IF coalesce(array_length(c_id, 1), 0) > 0 THEN
		RETURN QUERY
		WITH l AS (
			SELECT r.id FROM unnest(c_id) AS u (id) JOIN {schema}.reservation r ON r.id = u.id
			WHERE r.state = 1 AND r.expires_at > now_
			ORDER BY r.id FOR UPDATE OF r
		), t AS (
			UPDATE {schema}.reservation r SET state = 2 FROM l WHERE r.id = l.id AND r.state = 1 RETURNING r.id
		)
		SELECT 2::smallint, u.i::int, 0::smallint, NULL::text, NULL::bigint
		FROM unnest(c_id) WITH ORDINALITY AS u (id, i) JOIN t ON t.id = u.id;
	END IF;

	IF coalesce(array_length(x_id, 1), 0) > 0 THEN
		j := 0;
		FOR c, s_, a_ IN
			WITH l AS (
				SELECT r.id FROM unnest(x_id) AS u (id) JOIN {schema}.reservation r ON r.id = u.id
				WHERE r.state = 1 AND r.expires_at > now_
					AND NOT EXISTS (SELECT FROM {schema}.reservation_line b WHERE b.reservation_id = r.id AND b.bucket IS NOT NULL)
				ORDER BY r.id FOR UPDATE OF r
			), t AS (
				UPDATE {schema}.reservation r SET state = 3 FROM l WHERE r.id = l.id AND r.state = 1 RETURNING r.id
			)
			SELECT u.i::int, rl.sku, rl.qty
			FROM unnest(x_id) WITH ORDINALITY AS u (id, i)
			JOIN t ON t.id = u.id
			JOIN {schema}.reservation_line rl ON rl.reservation_id = t.id
			ORDER BY u.i
		LOOP
			IF c <> j THEN
				o_kind := 3::smallint; o_idx := c; o_outcome := 0::smallint; o_sku := NULL::text; o_avail := NULL::bigint;
				RETURN NEXT;
				j := c;
			END IF;
			back_sku := back_sku || s_;
			back_qty := back_qty || a_;
		END LOOP;
	END IF;

	IF e_limit > 0 THEN
		SELECT coalesce(max(e.o_n), 0),
			back_sku || coalesce(array_agg(e.o_sku ORDER BY e.o_sku) FILTER (WHERE e.o_bucket IS NULL), '{}'),
			back_qty || coalesce(array_agg(e.o_qty ORDER BY e.o_sku) FILTER (WHERE e.o_bucket IS NULL), '{}'),
			coalesce(array_agg(e.o_sku ORDER BY e.o_sku, e.o_bucket) FILTER (WHERE e.o_bucket IS NOT NULL), '{}'),
			coalesce(array_agg(e.o_bucket ORDER BY e.o_sku, e.o_bucket) FILTER (WHERE e.o_bucket IS NOT NULL), '{}'),
			coalesce(array_agg(e.o_qty ORDER BY e.o_sku, e.o_bucket) FILTER (WHERE e.o_bucket IS NOT NULL), '{}')
		INTO expired, back_sku, back_qty, bx_sku, bx_bkt, bx_qty
		FROM {schema}.expire_due_buckets(now_, e_limit) AS e;
		-- The rows of their SKUs are locked with the others (step 3).
		back_sku := back_sku || bx_sku;
		back_qty := back_qty || array_fill(0::bigint, ARRAY[cardinality(bx_sku)]);
		o_kind := 4::smallint; o_idx := 0; o_outcome := 0::smallint; o_sku := NULL::text; o_avail := expired;
		RETURN NEXT;
	END IF;

	IF n > 0 THEN
		-- 1. An ID already recorded is answered by its reservation, whatever
		-- the stock; refuse, against the unlocked stock, what it cannot serve.
		known := array_fill(false, ARRAY[n]);
		inserted := array_fill(false, ARRAY[n]);
		FOR c IN SELECT u.i FROM unnest(r_id) WITH ORDINALITY AS u (id, i)
			JOIN {schema}.reservation r ON r.id = u.id LOOP
			known[c] := true;
			n_known := n_known + 1;
			o_kind := 1::smallint; o_idx := c; o_outcome := 1::smallint; o_sku := NULL::text; o_avail := NULL::bigint;
			RETURN NEXT;
		END LOOP;
		-- The unlocked stock of each SKU plus the units the batch gives back,
		-- and the units the batch asks of it.
		SELECT array_agg(s.available + coalesce(b.qty, 0) ORDER BY u.k), array_agg(coalesce(d.qty, 0) ORDER BY u.k),
			array_agg(coalesce(s.buckets, 1) > 1 ORDER BY u.k)
		INTO snap, dem, bkt
		FROM unnest(skus) WITH ORDINALITY AS u (sku, k)
		LEFT JOIN {schema}.stock s ON s.sku = u.sku
		LEFT JOIN (SELECT bs.sku, sum(bs.qty)::bigint AS qty FROM unnest(back_sku, back_qty) AS bs (sku, qty) GROUP BY bs.sku) b ON b.sku = u.sku
		LEFT JOIN (SELECT l.k, sum(l.qty)::bigint AS qty FROM unnest(l_sku, l_qty) AS l (k, qty) GROUP BY l.k) d ON d.k = u.k;
		IF n_known = 0 AND NOT (SELECT bool_or(x) FROM unnest(bkt) AS x)
			AND (SELECT bool_and(coalesce(x.s >= x.d, false)) FROM unnest(snap, dem) AS x (s, d)) THEN
			-- Every SKU can serve the whole batch: every request is a
			-- candidate, as the loop below would find one by one.
			all_cand := true;
			cand := array(SELECT generate_series(1, n));
		ELSE
			FOR c IN 1 .. n LOOP
				CONTINUE WHEN known[c];
				ok := true;
				FOR j IN r_off[c] .. r_off[c + 1] - 1 LOOP
					k := l_sku[j];
					IF bkt[k] THEN
						o_kind := 1::smallint; o_idx := c; o_outcome := 5::smallint; o_sku := skus[k]; o_avail := NULL::bigint;
						RETURN NEXT;
						ok := false;
						EXIT;
					ELSIF snap[k] IS NULL THEN
						o_kind := 1::smallint; o_idx := c; o_outcome := 3::smallint; o_sku := skus[k]; o_avail := NULL::bigint;
						RETURN NEXT;
						ok := false;
						EXIT;
					ELSIF snap[k] < l_qty[j] THEN
						o_kind := 1::smallint; o_idx := c; o_outcome := 2::smallint; o_sku := skus[k]; o_avail := snap[k];
						RETURN NEXT;
						ok := false;
						EXIT;
					END IF;
				END LOOP;
				IF ok THEN
					cand := cand || c;
				END IF;
			END LOOP;
		END IF;
	END IF;

	IF coalesce(array_length(cand, 1), 0) > 0 THEN
		-- 2. Record the candidates, in ID order; an ID recorded meanwhile is
		-- skipped (ON CONFLICT waits for a transaction inserting it).
		WITH ins AS (
			INSERT INTO {schema}.reservation (id, state, expires_at, created_at)
			SELECT r_id[x], 1, r_exp[x], now_ FROM unnest(cand) AS x ORDER BY r_id[x]
			ON CONFLICT (id) DO NOTHING RETURNING id
		), got AS (
			SELECT x FROM unnest(cand) AS x JOIN ins ON ins.id = r_id[x]
		), lines AS (
			INSERT INTO {schema}.reservation_line (reservation_id, sku, qty)
			SELECT r_id[got.x], skus[l_sku[y]], l_qty[y]
			FROM got CROSS JOIN LATERAL generate_series(r_off[got.x], r_off[got.x + 1] - 1) AS y
		)
		SELECT array_agg(got.x) INTO ins_idx FROM got;
		IF coalesce(array_length(ins_idx, 1), 0) = array_length(cand, 1) THEN
			all_ins := true;
		ELSE
			FOREACH c IN ARRAY coalesce(ins_idx, '{}') LOOP
				inserted[c] := true;
			END LOOP;
		END IF;
	END IF;

	-- 3. Lock every stock row the batch changes, in SKU order, and read it.
	IF coalesce(array_length(cand, 1), 0) > 0 OR coalesce(array_length(back_sku, 1), 0) > 0 THEN
		avail := array_fill(NULL::bigint, ARRAY[greatest(m, 1)]);
		took := array_fill(0::bigint, ARRAY[greatest(m, 1)]);
		bkt_l := array_fill(false, ARRAY[greatest(m, 1)]);
		FOR s_, a_, b_ IN SELECT s.sku, s.available, s.buckets FROM {schema}.stock s
			WHERE s.sku = ANY (skus || back_sku) ORDER BY s.sku FOR UPDATE LOOP
			k := array_position(skus, s_);
			IF k IS NOT NULL THEN
				avail[k] := a_;
				bkt_l[k] := b_ > 1;
			END IF;
		END LOOP;
		FOR j IN 1 .. coalesce(array_length(back_sku, 1), 0) LOOP
			k := array_position(skus, back_sku[j]);
			IF k IS NOT NULL AND avail[k] IS NOT NULL THEN
				avail[k] := avail[k] + back_qty[j];
			END IF;
		END LOOP;

		-- Expired units of lines taken from buckets go back to their bucket
		-- when no other transaction holds it (the flush waits for no bucket
		-- row), else to the row of their SKU, locked above, from where
		-- stock_take and Rebalance gather them. Their SKUs' requests are not
		-- decided here, so avail needs none of them.
		IF cardinality(bx_sku) > 0 THEN
			WITH g AS (
				SELECT c.sku, c.bucket FROM {schema}.stock_bucket c
				JOIN unnest(bx_sku, bx_bkt) AS u (s, b) ON c.sku = u.s AND c.bucket = u.b
				ORDER BY c.sku, c.bucket FOR UPDATE OF c SKIP LOCKED
			), d AS (
				UPDATE {schema}.stock_bucket t SET available = t.available + u.q
				FROM g JOIN unnest(bx_sku, bx_bkt, bx_qty) AS u (s, b, q) ON u.s = g.sku AND u.b = g.bucket
				WHERE t.sku = g.sku AND t.bucket = g.bucket
				RETURNING t.sku, t.bucket
			)
			SELECT back_sku || coalesce(array_agg(u.s), '{}'), back_qty || coalesce(array_agg(u.q), '{}') INTO back_sku, back_qty
			FROM unnest(bx_sku, bx_bkt, bx_qty) AS u (s, b, q)
			WHERE NOT EXISTS (SELECT FROM d WHERE d.sku = u.s AND d.bucket = u.b);
		END IF;

		-- 4. Decide the candidates in order against the locked stock. When
		-- every request was recorded and every SKU can serve the whole
		-- batch, each is granted, as the loop would find one by one.
		IF all_cand AND all_ins AND NOT (SELECT bool_or(x) FROM unnest(bkt_l[1:m]) AS x)
			AND (SELECT bool_and(coalesce(x.a >= x.d, false)) FROM unnest(avail[1:m], dem) AS x (a, d)) THEN
			took := dem;
		ELSE
			FOREACH c IN ARRAY cand LOOP
				IF NOT (all_ins OR inserted[c]) THEN
					o_kind := 1::smallint; o_idx := c; o_outcome := 1::smallint; o_sku := NULL::text; o_avail := NULL::bigint;
					RETURN NEXT;
					CONTINUE;
				END IF;
				ok := true;
				FOR j IN r_off[c] .. r_off[c + 1] - 1 LOOP
					k := l_sku[j];
					IF bkt_l[k] THEN
						o_kind := 1::smallint; o_idx := c; o_outcome := 5::smallint; o_sku := skus[k]; o_avail := NULL::bigint;
						RETURN NEXT;
						ok := false;
						EXIT;
					ELSIF avail[k] IS NULL THEN
						o_kind := 1::smallint; o_idx := c; o_outcome := 3::smallint; o_sku := skus[k]; o_avail := NULL::bigint;
						RETURN NEXT;
						ok := false;
						EXIT;
					ELSIF avail[k] < l_qty[j] THEN
						o_kind := 1::smallint; o_idx := c; o_outcome := 2::smallint; o_sku := skus[k]; o_avail := avail[k];
						RETURN NEXT;
						ok := false;
						EXIT;
					END IF;
				END LOOP;
				IF ok THEN
					FOR j IN r_off[c] .. r_off[c + 1] - 1 LOOP
						k := l_sku[j];
						avail[k] := avail[k] - l_qty[j];
						took[k] := took[k] + l_qty[j];
					END LOOP;
				ELSE
					refused := refused || r_id[c];
				END IF;
			END LOOP;
		END IF;

		-- 5. One UPDATE per changed SKU: units taken, units given back.
		UPDATE {schema}.stock s SET available = s.available + d.delta
		FROM (
			SELECT u.sku, sum(u.qty)::bigint AS delta
			FROM unnest(coalesce(skus, '{}') || back_sku, array(SELECT -t FROM unnest(took[1:m]) AS t) || back_qty) AS u (sku, qty)
			GROUP BY u.sku HAVING sum(u.qty) <> 0
		) d
		WHERE s.sku = d.sku;

		IF coalesce(array_length(refused, 1), 0) > 0 THEN
			DELETE FROM {schema}.reservation WHERE id = ANY (refused);
		END IF;
	END IF;
END
$fn$;
