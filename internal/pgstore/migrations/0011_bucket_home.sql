-- Stock buckets that scale across processes. {schema} stands for the quoted
-- schema name.
--
-- A buyer now waits for one bucket instead of skipping held ones and
-- pausing: the conditional UPDATE of the bucket it starts from waits in
-- that row's queue, as the take of a SKU kept whole waits in its row's;
-- with K buckets each queue is 1/K as long. Only when that bucket is short
-- does it look further, at buckets no other transaction holds (SKIP
-- LOCKED), and only when none of them has the units does it gather them,
-- waiting for the SKU's stock row and then every bucket in bucket order.
-- The take never raises IV004 any more.
--
-- The groupcommit flush takes the lines of SKUs in buckets itself, from
-- the home bucket of the process (the caller's p_home modulo K), and gives
-- the units of released and expired lines back to the bucket each came
-- from, all in its one transaction.
--
-- Lock order, as every writer of the schema: SKUs in order; within one SKU,
-- its stock row, then its bucket rows in bucket order, then its usage rows
-- in buyer order. A transaction waits for a row only when every row it
-- holds comes before that row in this order; a row it takes out of order
-- it takes with SKIP LOCKED, never waiting. So no two transactions wait for
-- each other: the one holding the row that comes last in the order waits
-- for no row the other holds.
--
-- The flush of 0006_stock_buckets.sql stays, for processes of an older
-- version during a rolling deploy; they take lines of SKUs in buckets with
-- stock_take, which keeps its name and arguments.

-- stock_bucket_more looks, for a line of p_qty units of p_sku, for a bucket
-- beyond those the caller holds (p_held, with p_av the units it counts in
-- each): the first from p_start on, modulo the SKU's K, that has the units
-- and that no other transaction holds, which it locks (FOR UPDATE SKIP
-- LOCKED) and returns with its units. When there is none, o_bucket is NULL
-- and o_total is what the SKU has as a whole: its stock row and the buckets
-- the caller does not hold, read in one snapshot, plus p_av; NULL for an
-- unknown SKU. The caller refuses the line when o_total is short: it was
-- short at that moment.
CREATE OR REPLACE FUNCTION {schema}.stock_bucket_more(p_sku text, p_qty bigint, p_start bigint, p_held int[], p_av bigint[],
	OUT o_bucket int, OUT o_avail bigint, OUT o_total bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
	k int;
BEGIN
	SELECT s.buckets INTO k FROM {schema}.stock s WHERE s.sku = p_sku;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	IF k > 1 THEN
		SELECT c.bucket, c.available INTO o_bucket, o_avail FROM {schema}.stock_bucket c
		WHERE c.sku = p_sku AND c.bucket < k AND c.available >= p_qty AND c.bucket <> ALL (p_held)
		ORDER BY (c.bucket - p_start % k + k) % k LIMIT 1 FOR UPDATE SKIP LOCKED;
		IF FOUND THEN
			RETURN;
		END IF;
	END IF;
	SELECT s.available + coalesce((SELECT sum(c.available) FROM {schema}.stock_bucket c
		WHERE c.sku = s.sku AND c.bucket <> ALL (p_held)), 0)::bigint
	INTO o_total FROM {schema}.stock s WHERE s.sku = p_sku;
	o_total := o_total + coalesce((SELECT sum(x) FROM unnest(p_av) AS x), 0)::bigint;
END
$fn$;

-- stock_take again (see 0006_stock_buckets.sql): p_qty units of p_sku for
-- the line of reservation p_id (already recorded), from one bucket,
-- recorded on the line. It raises IV002 when the SKU is unknown or short as
-- a whole.
--
--  1. K = 1: the conditional UPDATE of the stock row.
--  2. K > 1: the conditional UPDATE of bucket p_start mod K, which waits
--     for the row as long as another transaction holds it.
--  3. When that bucket is short: the first other bucket with the units that
--     no other transaction holds (stock_bucket_more), else refuse when one
--     snapshot finds the SKU short as a whole. Steps 2 and 3 run in a
--     subtransaction that is rolled back when they take nothing, so that
--     no lock they took stays held.
--  4. Else gather: lock the stock row, then every bucket in bucket order,
--     waiting (the step holds no row of the SKU), refuse when the SKU is
--     short under the
--     locks, else move into one bucket (for K = 1, the stock row) just the
--     units the line lacks, and take the line from it. The line comes from
--     one bucket; no unit is made or lost by the move.
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
		-- In a subtransaction: an UPDATE that waited for a row and then
		-- found it short still holds its lock (READ COMMITTED locks the new
		-- version before it checks it again), and so may a SKIP LOCKED read
		-- that found a row changed; rolling the subtransaction back lets go
		-- of them, so that the gather below holds no row of the SKU.
		BEGIN
			UPDATE {schema}.stock_bucket SET available = available - p_qty
			WHERE sku = p_sku AND bucket = p_start % k AND available >= p_qty
			RETURNING bucket INTO b;
			IF NOT FOUND THEN
				SELECT m.o_bucket, m.o_total INTO b, total FROM {schema}.stock_bucket_more(p_sku, p_qty, p_start, '{}', '{}') AS m;
				IF b IS NULL THEN
					RAISE EXCEPTION USING ERRCODE = 'IV006';
				END IF;
				UPDATE {schema}.stock_bucket SET available = available - p_qty WHERE sku = p_sku AND bucket = b;
			END IF;
		EXCEPTION WHEN SQLSTATE 'IV006' THEN
			b := NULL;
		END;
		IF b IS NOT NULL THEN
			UPDATE {schema}.reservation_line SET bucket = b WHERE reservation_id = p_id AND sku = p_sku;
			RETURN;
		END IF;
		IF coalesce(total, 0) < p_qty THEN
			PERFORM {schema}.reserve_abort('IV002');
		END IF;
	END IF;

	IF k <= 1 AND {schema}.stock_available(p_sku) < p_qty THEN
		PERFORM {schema}.reserve_abort('IV002');
	END IF;

	-- Gather, waiting for the rows in the lock order. K is read again under
	-- the lock of the stock row.
	SELECT s.available, s.buckets INTO row_av, k FROM {schema}.stock s WHERE s.sku = p_sku FOR UPDATE;
	IF NOT FOUND THEN
		PERFORM {schema}.reserve_abort('IV002');
	END IF;
	SELECT coalesce(array_agg(g.bucket ORDER BY g.o), '{}'), coalesce(array_agg(g.available ORDER BY g.o), '{}') INTO bs, av
	FROM (SELECT c.bucket, c.available, (c.bucket - p_start % greatest(k, 1) + greatest(k, 1)) % greatest(k, 1) AS o FROM {schema}.stock_bucket c
		WHERE c.sku = p_sku ORDER BY c.bucket FOR UPDATE) g;
	IF row_av + coalesce((SELECT sum(x) FROM unnest(av) AS x), 0) < p_qty THEN
		PERFORM {schema}.reserve_abort('IV002');
	END IF;
	tgt := 0;
	IF k > 1 THEN
		FOR i IN 1 .. cardinality(bs) LOOP
			IF bs[i] < k THEN
				tgt := i;
				EXIT;
			END IF;
		END LOOP;
	END IF;
	need := p_qty - CASE WHEN tgt = 0 THEN row_av ELSE av[tgt] END;
	IF need > 0 AND tgt <> 0 AND row_av > 0 THEN
		mv := least(need, row_av);
		row_av := row_av - mv;
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
	UPDATE {schema}.stock SET available = row_av WHERE sku = p_sku AND available <> row_av;
	IF tgt <> 0 THEN
		UPDATE {schema}.reservation_line SET bucket = bs[tgt] WHERE reservation_id = p_id AND sku = p_sku;
	END IF;
END
$fn$;

-- The flush function of the groupcommit strategy again (see
-- 0006_stock_buckets.sql), under a name of its own, which serves SKUs split
-- into buckets inside the flush. p_home is the caller's home bucket: a line
-- of a SKU of K buckets is taken from bucket p_home mod K when it has the
-- units (the line is recorded with that bucket before the rows are locked),
-- else from another bucket the flush holds, else from one that
-- stock_bucket_more finds free; when none has the units the request is
-- refused if the SKU is short as a whole, else left out (outcome 5) for the
-- caller to take on its own with stock_take, which gathers the units.
-- Released and expired units go back to the bucket their line was taken
-- from (the stock row for a line taken from it), in the flush. A release of
-- a reservation with a line counted against a buyer's limit is left out for
-- the caller to release on its own, which takes the units off the usage.
--
-- Rows are locked as every writer locks them: in one pass, in the lock
-- order (SKU; its stock row; its buckets in order), waiting: the stock rows
-- of the SKUs kept whole, the home bucket of each SKU in buckets the
-- batch's requests take, and the buckets released and expired units go
-- back to. The stock row of a SKU in buckets is not locked for its
-- requests, so flushes of processes with other home buckets run at once.
-- The only rows taken after that pass, out of order, are the further
-- buckets of stock_bucket_more, with SKIP LOCKED: the flush never waits for
-- them.
CREATE OR REPLACE FUNCTION {schema}.groupcommit_flush_home(
	r_id    text[],        -- reserve: request IDs, each once
	r_exp   timestamptz[], -- reserve: expiry of each request
	r_off   int[],         -- reserve: request i has lines r_off[i] .. r_off[i+1]-1
	l_sku   int[],         -- line: index into skus; a request's lines in SKU order
	l_qty   bigint[],      -- line: units
	skus    text[],        -- the SKUs of the lines, each once
	c_id    text[],        -- commit: IDs, each once
	now_    timestamptz,   -- the clock reading of the batch
	x_id    text[],        -- release: IDs, each once
	e_limit bigint,        -- expire at most this many due holds; 0 for none
	p_home  int            -- the caller's home bucket, >= 0
) RETURNS TABLE (o_kind smallint, o_idx int, o_outcome smallint, o_sku text, o_avail bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
	n        int := coalesce(array_length(r_id, 1), 0);
	m        int := coalesce(array_length(skus, 1), 0);
	back_sku text[] := '{}';  -- units given back to stock rows by releases and expiry
	back_qty bigint[] := '{}';
	bx_sku   text[] := '{}';  -- units given back to buckets by releases and expiry
	bx_bkt   int[] := '{}';
	bx_qty   bigint[] := '{}';
	snap     bigint[];        -- available per SKU, unlocked read (NULL: not stocked)
	dem      bigint[];        -- units the batch's requests ask per SKU
	bkt      bool[] := '{}';  -- per SKU: split into buckets (unlocked read)
	hb       int[] := '{}';   -- per SKU in buckets: its home bucket
	bkt_l    bool[];          -- per SKU kept whole: split into buckets under the row lock
	lk_sku   text[] := '{}';  -- the buckets the flush holds: SKU, bucket,
	lk_b     int[] := '{}';   -- units as decided so far, units read
	lk_av    bigint[] := '{}';
	lk_av0   bigint[] := '{}';
	hs       int[];           -- per SKU in buckets: index into lk_* of its home bucket
	pick     int[];           -- per line of a request: index into lk_* of its bucket
	fix_id   text[] := '{}';  -- lines taken from another bucket than recorded
	fix_sku  text[] := '{}';
	fix_b    int[] := '{}';
	b_       int;
	w_       int;
	p        int;
	mb       int;
	ma       bigint;
	mt       bigint;
	n_known  int := 0;        -- requests whose ID was recorded before the batch
	all_cand bool := false;   -- every request is a candidate
	all_ins  bool := false;   -- every candidate was recorded by this batch
	ins_idx  int[];           -- the candidates recorded by this batch
	avail    bigint[];        -- available per SKU kept whole, under the row lock
	took     bigint[];        -- units granted per SKU kept whole
	cand     int[] := '{}';   -- requests decided under the lock
	known    bool[];          -- per request: its ID was recorded before the batch
	inserted bool[];          -- per request: its rows were recorded by this batch
	refused  text[] := '{}';  -- candidates refused under the lock
	ok       bool;
	c        int;
	i        int;
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
		FOR c, s_, b_, a_ IN
			WITH l AS (
				SELECT r.id FROM unnest(x_id) AS u (id) JOIN {schema}.reservation r ON r.id = u.id
				WHERE r.state = 1 AND r.expires_at > now_
					AND NOT EXISTS (SELECT FROM {schema}.reservation_line b WHERE b.reservation_id = r.id AND b.counted)
				ORDER BY r.id FOR UPDATE OF r
			), t AS (
				UPDATE {schema}.reservation r SET state = 3 FROM l WHERE r.id = l.id AND r.state = 1 RETURNING r.id
			)
			SELECT u.i::int, rl.sku, rl.bucket, rl.qty
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
			IF b_ IS NULL THEN
				back_sku := back_sku || s_;
				back_qty := back_qty || a_;
			ELSE
				bx_sku := bx_sku || s_;
				bx_bkt := bx_bkt || b_;
				bx_qty := bx_qty || a_;
			END IF;
		END LOOP;
	END IF;

	IF e_limit > 0 THEN
		SELECT coalesce(max(e.o_n), 0),
			back_sku || coalesce(array_agg(e.o_sku ORDER BY e.o_sku) FILTER (WHERE e.o_bucket IS NULL), '{}'),
			back_qty || coalesce(array_agg(e.o_qty ORDER BY e.o_sku) FILTER (WHERE e.o_bucket IS NULL), '{}'),
			bx_sku || coalesce(array_agg(e.o_sku ORDER BY e.o_sku, e.o_bucket) FILTER (WHERE e.o_bucket IS NOT NULL), '{}'),
			bx_bkt || coalesce(array_agg(e.o_bucket ORDER BY e.o_sku, e.o_bucket) FILTER (WHERE e.o_bucket IS NOT NULL), '{}'),
			bx_qty || coalesce(array_agg(e.o_qty ORDER BY e.o_sku, e.o_bucket) FILTER (WHERE e.o_bucket IS NOT NULL), '{}')
		INTO expired, back_sku, back_qty, bx_sku, bx_bkt, bx_qty
		FROM {schema}.expire_due_buckets(now_, e_limit) AS e;
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
		-- The unlocked stock of each SKU (its stock row and every bucket)
		-- plus the units the batch gives back, the units the batch asks of
		-- it, and its home bucket when it is split into buckets.
		SELECT array_agg(CASE WHEN s.buckets > 1 THEN {schema}.stock_available(s.sku) ELSE s.available END + coalesce(b.qty, 0) ORDER BY u.k),
			array_agg(coalesce(d.qty, 0) ORDER BY u.k),
			array_agg(coalesce(s.buckets, 1) > 1 ORDER BY u.k),
			array_agg(CASE WHEN s.buckets > 1 THEN p_home % s.buckets END ORDER BY u.k)
		INTO snap, dem, bkt, hb
		FROM unnest(skus) WITH ORDINALITY AS u (sku, k)
		LEFT JOIN {schema}.stock s ON s.sku = u.sku
		LEFT JOIN (SELECT bs.sku, sum(bs.qty)::bigint AS qty FROM unnest(back_sku || bx_sku, back_qty || bx_qty) AS bs (sku, qty) GROUP BY bs.sku) b ON b.sku = u.sku
		LEFT JOIN (SELECT l.k, sum(l.qty)::bigint AS qty FROM unnest(l_sku, l_qty) AS l (k, qty) GROUP BY l.k) d ON d.k = u.k;
		IF n_known = 0 AND (SELECT bool_and(coalesce(x.s >= x.d, false)) FROM unnest(snap, dem) AS x (s, d)) THEN
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
					IF snap[k] IS NULL THEN
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
		-- 2. Record the candidates, in ID order, a line of a SKU in buckets
		-- with its home bucket; an ID recorded meanwhile is skipped (ON
		-- CONFLICT waits for a transaction inserting it).
		WITH ins AS (
			INSERT INTO {schema}.reservation (id, state, expires_at, created_at)
			SELECT r_id[x], 1, r_exp[x], now_ FROM unnest(cand) AS x ORDER BY r_id[x]
			ON CONFLICT (id) DO NOTHING RETURNING id
		), got AS (
			SELECT x FROM unnest(cand) AS x JOIN ins ON ins.id = r_id[x]
		), lines AS (
			INSERT INTO {schema}.reservation_line (reservation_id, sku, qty, bucket)
			SELECT r_id[got.x], skus[l_sku[y]], l_qty[y], hb[l_sku[y]]
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

	-- 3. Lock every row the batch changes, in the lock order, and read it.
	IF coalesce(array_length(cand, 1), 0) > 0 OR cardinality(back_sku) > 0 OR cardinality(bx_sku) > 0 THEN
		avail := array_fill(NULL::bigint, ARRAY[greatest(m, 1)]);
		took := array_fill(0::bigint, ARRAY[greatest(m, 1)]);
		bkt_l := array_fill(false, ARRAY[greatest(m, 1)]);
		hs := array_fill(NULL::int, ARRAY[greatest(m, 1)]);
		IF cardinality(bx_sku) = 0 AND NOT coalesce((SELECT bool_or(x) FROM unnest(bkt) AS x), false) THEN
			-- Stock rows only: one statement, as before buckets.
			FOR s_, a_, b_ IN SELECT s.sku, s.available, s.buckets FROM {schema}.stock s
				WHERE s.sku = ANY (skus || back_sku) ORDER BY s.sku FOR UPDATE LOOP
				k := array_position(skus, s_);
				IF k IS NOT NULL THEN
					avail[k] := a_;
					bkt_l[k] := b_ > 1;
				END IF;
			END LOOP;
		ELSE
			FOR s_, w_, b_ IN
				SELECT x.s, x.w, x.b FROM (
					SELECT u.s, 0 AS w, NULL::int AS b FROM unnest(skus, bkt) AS u (s, bk) WHERE NOT u.bk
					UNION
					SELECT u.s, 0, NULL FROM unnest(back_sku) AS u (s)
					UNION
					SELECT u.s, 1, u.h FROM unnest(skus, hb) AS u (s, h) WHERE u.h IS NOT NULL AND cardinality(cand) > 0
					UNION
					SELECT u.s, 1, u.b FROM unnest(bx_sku, bx_bkt) AS u (s, b)
				) x ORDER BY x.s COLLATE "C", x.w, x.b
			LOOP
				k := array_position(skus, s_);
				IF w_ = 0 THEN
					SELECT s.available, s.buckets INTO a_, b_ FROM {schema}.stock s WHERE s.sku = s_ FOR UPDATE;
					IF FOUND AND k IS NOT NULL AND NOT bkt[k] THEN
						avail[k] := a_;
						bkt_l[k] := b_ > 1;
					END IF;
				ELSE
					SELECT c.available INTO a_ FROM {schema}.stock_bucket c WHERE c.sku = s_ AND c.bucket = b_ FOR UPDATE;
					IF NOT FOUND THEN
						INSERT INTO {schema}.stock_bucket (sku, bucket, available) VALUES (s_, b_, 0) ON CONFLICT DO NOTHING;
						SELECT c.available INTO a_ FROM {schema}.stock_bucket c WHERE c.sku = s_ AND c.bucket = b_ FOR UPDATE;
					END IF;
					lk_sku := lk_sku || s_;
					lk_b := lk_b || b_;
					lk_av := lk_av || a_;
					lk_av0 := lk_av0 || a_;
					IF k IS NOT NULL AND b_ = hb[k] THEN
						hs[k] := cardinality(lk_b);
					END IF;
				END IF;
			END LOOP;
		END IF;
		FOR j IN 1 .. cardinality(back_sku) LOOP
			k := array_position(skus, back_sku[j]);
			IF k IS NOT NULL AND avail[k] IS NOT NULL THEN
				avail[k] := avail[k] + back_qty[j];
			END IF;
		END LOOP;
		FOR j IN 1 .. cardinality(bx_sku) LOOP
			FOR i IN 1 .. cardinality(lk_b) LOOP
				IF lk_sku[i] = bx_sku[j] AND lk_b[i] = bx_bkt[j] THEN
					lk_av[i] := lk_av[i] + bx_qty[j];
					EXIT;
				END IF;
			END LOOP;
		END LOOP;

		-- 4. Decide the candidates in order against the locked stock. When
		-- every request was recorded and every SKU's row (for a SKU in
		-- buckets, its home bucket) can serve the whole batch, each is
		-- granted, as the loop would find one by one.
		ok := all_cand AND all_ins;
		FOR k IN 1 .. m LOOP
			EXIT WHEN NOT ok;
			IF bkt[k] THEN
				ok := hs[k] IS NOT NULL AND lk_av[hs[k]] >= dem[k];
			ELSE
				ok := NOT bkt_l[k] AND coalesce(avail[k] >= dem[k], false);
			END IF;
		END LOOP;
		IF ok THEN
			FOR k IN 1 .. m LOOP
				IF bkt[k] THEN
					lk_av[hs[k]] := lk_av[hs[k]] - dem[k];
				ELSE
					took[k] := dem[k];
				END IF;
			END LOOP;
		ELSE
			FOREACH c IN ARRAY cand LOOP
				IF NOT (all_ins OR inserted[c]) THEN
					o_kind := 1::smallint; o_idx := c; o_outcome := 1::smallint; o_sku := NULL::text; o_avail := NULL::bigint;
					RETURN NEXT;
					CONTINUE;
				END IF;
				ok := true;
				pick := '{}';
				FOR j IN r_off[c] .. r_off[c + 1] - 1 LOOP
					k := l_sku[j];
					IF bkt[k] THEN
						-- The home bucket, another bucket held, or one more.
						p := NULL;
						IF hs[k] IS NOT NULL AND lk_av[hs[k]] >= l_qty[j] THEN
							p := hs[k];
						ELSE
							FOR i IN 1 .. cardinality(lk_b) LOOP
								IF lk_sku[i] = skus[k] AND lk_av[i] >= l_qty[j] THEN
									p := i;
									EXIT;
								END IF;
							END LOOP;
						END IF;
						IF p IS NULL THEN
							SELECT x.o_bucket, x.o_avail, x.o_total INTO mb, ma, mt
							FROM {schema}.stock_bucket_more(skus[k], l_qty[j], p_home,
								array(SELECT lk_b[y] FROM generate_subscripts(lk_b, 1) AS y WHERE lk_sku[y] = skus[k]),
								array(SELECT lk_av[y] FROM generate_subscripts(lk_b, 1) AS y WHERE lk_sku[y] = skus[k])) AS x;
							IF mb IS NOT NULL THEN
								lk_sku := lk_sku || skus[k];
								lk_b := lk_b || mb;
								lk_av := lk_av || ma;
								lk_av0 := lk_av0 || ma;
								p := cardinality(lk_b);
							ELSE
								o_kind := 1::smallint; o_idx := c; o_sku := skus[k];
								IF mt IS NULL THEN
									o_outcome := 3::smallint; o_avail := NULL::bigint;
								ELSIF mt < l_qty[j] THEN
									o_outcome := 2::smallint; o_avail := mt;
								ELSE
									o_outcome := 5::smallint; o_avail := NULL::bigint;
								END IF;
								RETURN NEXT;
								ok := false;
								EXIT;
							END IF;
						END IF;
						pick[j - r_off[c] + 1] := p;
					ELSIF bkt_l[k] THEN
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
						IF bkt[k] THEN
							p := pick[j - r_off[c] + 1];
							lk_av[p] := lk_av[p] - l_qty[j];
							IF lk_b[p] <> hb[k] THEN
								fix_id := fix_id || r_id[c];
								fix_sku := fix_sku || skus[k];
								fix_b := fix_b || lk_b[p];
							END IF;
						ELSE
							avail[k] := avail[k] - l_qty[j];
							took[k] := took[k] + l_qty[j];
						END IF;
					END LOOP;
				ELSE
					refused := refused || r_id[c];
				END IF;
			END LOOP;
		END IF;

		-- 5. One UPDATE per changed stock row and per changed bucket: units
		-- taken, units given back; the bucket of each line taken from
		-- another bucket than its SKU's home.
		UPDATE {schema}.stock s SET available = s.available + d.delta
		FROM (
			SELECT u.sku, sum(u.qty)::bigint AS delta
			FROM unnest(coalesce(skus, '{}') || back_sku, array(SELECT -t FROM unnest(took[1:m]) AS t) || back_qty) AS u (sku, qty)
			GROUP BY u.sku HAVING sum(u.qty) <> 0
		) d
		WHERE s.sku = d.sku;
		IF cardinality(lk_b) > 0 THEN
			UPDATE {schema}.stock_bucket t SET available = u.a
			FROM unnest(lk_sku, lk_b, lk_av, lk_av0) AS u (s, b, a, a0)
			WHERE u.a <> u.a0 AND t.sku = u.s AND t.bucket = u.b;
		END IF;
		IF cardinality(fix_id) > 0 THEN
			UPDATE {schema}.reservation_line l SET bucket = u.b
			FROM unnest(fix_id, fix_sku, fix_b) AS u (id, s, b)
			WHERE l.reservation_id = u.id AND l.sku = u.s;
		END IF;

		IF coalesce(array_length(refused, 1), 0) > 0 THEN
			DELETE FROM {schema}.reservation WHERE id = ANY (refused);
		END IF;
	END IF;
END
$fn$;
