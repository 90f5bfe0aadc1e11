-- The groupcommit flush looks up the reservations it settles by their
-- primary key, one at a time. {schema} stands for the quoted schema name.
--
-- groupcommit_flush_buyers of 0016_groupcommit_buyers.sql, with the same
-- arguments, results and rules, under the same name: processes of the
-- older version call it unchanged. Its commits and releases were each one
-- statement that joined the batch's IDs to the reservations held and not
-- expired; the server plans such a statement once per session and keeps
-- the plan, and a plan made while the ledger was small (a new schema, or
-- one no ANALYZE has seen yet) read the held reservations through
-- reservation_held_due and joined them to the IDs, so each flush read every
-- held reservation, more the longer the ledger held them. Now each ID is
-- settled by an UPDATE of its own row, by primary key, in ID order (the
-- order the statement locked them in), whatever the statistics; a release
-- then reads its lines by primary key. The unlocked read of a SKU in
-- buckets sums its buckets in the statement instead of calling
-- stock_available, a SQL function the server parsed and planned again on
-- every flush.

CREATE OR REPLACE FUNCTION {schema}.groupcommit_flush_buyers(
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
	p_home  int,           -- the caller's home bucket, >= 0
	r_buyer text[]         -- reserve: the buyer of each request, '' for none
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
	bh_sku   text[] := '{}';  -- per SKU units go back to a bucket of: its home bucket
	bh_b     int[] := '{}';
	snap     bigint[];        -- available per SKU, unlocked read (NULL: not stocked)
	dem      bigint[];        -- units the batch's requests ask per SKU
	bkt      bool[] := '{}';  -- per SKU: split into buckets (unlocked read)
	hb       int[] := '{}';   -- per SKU in buckets: its home bucket
	bkt_l    bool[];          -- per SKU kept whole: split into buckets under the row lock
	lim      bool[];          -- per SKU: a limit per buyer (unlocked read)
	lim_l    bool[];          -- per SKU: a limit per buyer, read once its row or home bucket is locked
	lim_b    bigint;
	lim_v    bigint[];        -- per SKU kept whole: its limit per buyer, under the row lock
	u_sku    text[] := '{}';  -- the usage rows the flush holds: SKU, buyer,
	u_buyer  text[] := '{}';  -- units as decided so far, units read
	u_used   bigint[] := '{}';
	u_used0  bigint[] := '{}';
	y_       text;
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
	left_    bigint := 0;     -- due holds with a buyer, left for the caller to expire
BEGIN
	IF coalesce(array_length(c_id, 1), 0) > 0 THEN
		FOR c, y_ IN SELECT u.i::int, u.id FROM unnest(c_id) WITH ORDINALITY AS u (id, i) ORDER BY u.id COLLATE "C" LOOP
			UPDATE {schema}.reservation r SET state = 2 WHERE r.id = y_ AND r.state::int = 1 AND r.expires_at > now_;
			CONTINUE WHEN NOT FOUND;
			o_kind := 2::smallint; o_idx := c; o_outcome := 0::smallint; o_sku := NULL::text; o_avail := NULL::bigint;
			RETURN NEXT;
		END LOOP;
	END IF;

	IF coalesce(array_length(x_id, 1), 0) > 0 THEN
		FOR c, y_ IN SELECT u.i::int, u.id FROM unnest(x_id) WITH ORDINALITY AS u (id, i) ORDER BY u.id COLLATE "C" LOOP
			UPDATE {schema}.reservation r SET state = 3
			WHERE r.id = y_ AND r.state::int = 1 AND r.expires_at > now_
				AND NOT EXISTS (SELECT FROM {schema}.reservation_line b WHERE b.reservation_id = r.id AND b.counted);
			CONTINUE WHEN NOT FOUND;
			o_kind := 3::smallint; o_idx := c; o_outcome := 0::smallint; o_sku := NULL::text; o_avail := NULL::bigint;
			RETURN NEXT;
			FOR s_, b_, a_ IN SELECT rl.sku, rl.bucket, rl.qty FROM {schema}.reservation_line rl WHERE rl.reservation_id = y_ LOOP
				IF b_ IS NULL THEN
					back_sku := back_sku || s_;
					back_qty := back_qty || a_;
				ELSE
					bx_sku := bx_sku || s_;
					bx_bkt := bx_bkt || b_;
					bx_qty := bx_qty || a_;
				END IF;
			END LOOP;
		END LOOP;
	END IF;

	IF e_limit > 0 THEN
		SELECT coalesce(max(e.o_n), 0), coalesce(max(e.o_left), 0),
			back_sku || coalesce(array_agg(e.o_sku ORDER BY e.o_sku) FILTER (WHERE e.o_sku IS NOT NULL AND e.o_bucket IS NULL), '{}'),
			back_qty || coalesce(array_agg(e.o_qty ORDER BY e.o_sku) FILTER (WHERE e.o_sku IS NOT NULL AND e.o_bucket IS NULL), '{}'),
			bx_sku || coalesce(array_agg(e.o_sku ORDER BY e.o_sku, e.o_bucket) FILTER (WHERE e.o_bucket IS NOT NULL), '{}'),
			bx_bkt || coalesce(array_agg(e.o_bucket ORDER BY e.o_sku, e.o_bucket) FILTER (WHERE e.o_bucket IS NOT NULL), '{}'),
			bx_qty || coalesce(array_agg(e.o_qty ORDER BY e.o_sku, e.o_bucket) FILTER (WHERE e.o_bucket IS NOT NULL), '{}')
		INTO expired, left_, back_sku, back_qty, bx_sku, bx_bkt, bx_qty
		FROM {schema}.expire_due_no_buyer(now_, e_limit) AS e;
		-- o_idx: the due holds with a buyer that were left Held, which the
		-- caller expires on its own (outcome 5).
		o_kind := 4::smallint; o_idx := left_::int; o_outcome := CASE WHEN left_ > 0 THEN 5 ELSE 0 END::smallint;
		o_sku := NULL::text; o_avail := expired;
		RETURN NEXT;
	END IF;

	IF n > 0 THEN
		-- 1. An ID already recorded is answered by its reservation, whatever
		-- the stock; refuse, against the unlocked stock, what it cannot serve.
		known := array_fill(false, ARRAY[n]);
		inserted := array_fill(false, ARRAY[n]);
		FOR c IN 1 .. n LOOP
			CONTINUE WHEN NOT EXISTS (SELECT FROM {schema}.reservation r WHERE r.id = r_id[c]);
			known[c] := true;
			n_known := n_known + 1;
			o_kind := 1::smallint; o_idx := c; o_outcome := 1::smallint; o_sku := NULL::text; o_avail := NULL::bigint;
			RETURN NEXT;
		END LOOP;
		-- The unlocked stock of each SKU (its stock row and every bucket)
		-- plus the units the batch gives back, the units the batch asks of
		-- it, and its home bucket when it is split into buckets.
		SELECT array_agg(s.available + CASE WHEN s.buckets > 1 THEN coalesce((SELECT sum(sb.available) FROM {schema}.stock_bucket sb WHERE sb.sku = s.sku), 0)::bigint ELSE 0 END + coalesce(b.qty, 0) ORDER BY u.k),
			array_agg(coalesce(d.qty, 0) ORDER BY u.k),
			array_agg(coalesce(s.buckets, 1) > 1 ORDER BY u.k),
			array_agg(CASE WHEN s.buckets > 1 THEN p_home % s.buckets END ORDER BY u.k),
			array_agg(coalesce(s.buyer_limit, 0) > 0 ORDER BY u.k)
		INTO snap, dem, bkt, hb, lim
		FROM unnest(skus) WITH ORDINALITY AS u (sku, k)
		LEFT JOIN {schema}.stock s ON s.sku = u.sku
		LEFT JOIN (SELECT bs.sku, sum(bs.qty)::bigint AS qty FROM unnest(back_sku || bx_sku, back_qty || bx_qty) AS bs (sku, qty) GROUP BY bs.sku) b ON b.sku = u.sku
		LEFT JOIN (SELECT l.k, sum(l.qty)::bigint AS qty FROM unnest(l_sku, l_qty) AS l (k, qty) GROUP BY l.k) d ON d.k = u.k;
		IF n_known = 0 AND (SELECT bool_and(coalesce(x.s >= x.d, false) AND NOT x.l) FROM unnest(snap, dem, lim) AS x (s, d, l)) THEN
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
					ELSIF lim[k] AND (bkt[k] OR r_buyer[c] = '') THEN
						-- A SKU with a limit per buyer in buckets, or a request
						-- without a buyer on one: taken alone, by every rule.
						o_kind := 1::smallint; o_idx := c; o_outcome := 5::smallint; o_sku := skus[k]; o_avail := NULL::bigint;
						RETURN NEXT;
						ok := false;
						EXIT;
					ELSIF snap[k] < l_qty[j] AND NOT lim[k] THEN
						-- (A line with a limit is decided under the locks: the
						-- limit refuses before the stock.)
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
			INSERT INTO {schema}.reservation (id, state, expires_at, created_at, buyer)
			SELECT r_id[x], 1, r_exp[x], now_, nullif(r_buyer[x], '') FROM unnest(cand) AS x ORDER BY r_id[x]
			ON CONFLICT (id) DO NOTHING RETURNING id
		), got AS (
			SELECT x FROM unnest(cand) AS x JOIN ins ON ins.id = r_id[x]
		), lines AS (
			INSERT INTO {schema}.reservation_line (reservation_id, sku, qty, bucket, counted)
			SELECT r_id[got.x], skus[l_sku[y]], l_qty[y], hb[l_sku[y]], lim[l_sku[y]]
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
		lim_l := array_fill(false, ARRAY[greatest(m, 1)]);
		lim_v := array_fill(0::bigint, ARRAY[greatest(m, 1)]);
		hs := array_fill(NULL::int, ARRAY[greatest(m, 1)]);
		IF cardinality(bx_sku) > 0 THEN
			SELECT coalesce(array_agg(s.sku), '{}'), coalesce(array_agg(p_home % greatest(s.buckets, 1)), '{}') INTO bh_sku, bh_b
			FROM {schema}.stock s WHERE s.sku = ANY (bx_sku);
		END IF;
		IF cardinality(bx_sku) = 0 AND NOT coalesce((SELECT bool_or(x) FROM unnest(bkt) AS x), false)
			AND NOT (coalesce(array_length(cand, 1), 0) > 0 AND coalesce((SELECT bool_or(x) FROM unnest(lim) AS x), false)) THEN
			-- Stock rows only: one statement, as before buckets.
			FOR s_, a_, b_, lim_b IN SELECT s.sku, s.available, s.buckets, s.buyer_limit FROM {schema}.stock s
				WHERE s.sku = ANY (skus || back_sku) ORDER BY s.sku FOR UPDATE LOOP
				k := array_position(skus, s_);
				IF k IS NOT NULL THEN
					avail[k] := a_;
					bkt_l[k] := b_ > 1;
					lim_l[k] := lim_b > 0;
					lim_v[k] := lim_b;
				END IF;
			END LOOP;
		ELSE
			FOR s_, w_, b_, y_ IN
				SELECT x.s, x.w, x.b, x.y FROM (
					SELECT u.s, 0 AS w, NULL::int AS b, NULL::text AS y FROM unnest(skus, bkt) AS u (s, bk) WHERE NOT u.bk
					UNION
					SELECT u.s, 0, NULL, NULL FROM unnest(back_sku) AS u (s)
					UNION
					SELECT u.s, 1, u.h, NULL FROM unnest(skus, hb) AS u (s, h) WHERE u.h IS NOT NULL AND cardinality(cand) > 0
					UNION
					SELECT u.s, 1, u.b, NULL FROM unnest(bh_sku, bh_b) AS u (s, b)
					UNION
					SELECT u.s, 1, u.b, NULL FROM unnest(bx_sku, bx_bkt) AS u (s, b) WHERE u.s <> ALL (bh_sku)
					UNION
					-- the usage rows of the candidates' buyers on SKUs kept
					-- whole with a limit, after the SKU's stock row
					SELECT skus[l_sku[y]], 2, NULL, r_buyer[q.x] FROM unnest(cand) AS q (x)
					CROSS JOIN LATERAL generate_series(r_off[q.x], r_off[q.x + 1] - 1) AS y
					WHERE lim[l_sku[y]] AND NOT bkt[l_sku[y]] AND r_buyer[q.x] <> ''
				) x ORDER BY x.s COLLATE "C", x.w, x.b, x.y COLLATE "C"
			LOOP
				k := array_position(skus, s_);
				IF w_ = 0 THEN
					SELECT s.available, s.buckets, s.buyer_limit INTO a_, b_, lim_b FROM {schema}.stock s WHERE s.sku = s_ FOR UPDATE;
					IF FOUND AND k IS NOT NULL AND NOT bkt[k] THEN
						avail[k] := a_;
						bkt_l[k] := b_ > 1;
						lim_l[k] := lim_b > 0;
						lim_v[k] := lim_b;
					END IF;
				ELSIF w_ = 2 THEN
					-- Under the SKU's stock row lock, taken just before.
					IF lim_l[k] THEN
						INSERT INTO {schema}.buyer_usage (sku, buyer, used) VALUES (s_, y_, 0) ON CONFLICT (sku, buyer) DO NOTHING;
						SELECT u.used INTO a_ FROM {schema}.buyer_usage u WHERE u.sku = s_ AND u.buyer = y_ FOR UPDATE;
						u_sku := u_sku || s_;
						u_buyer := u_buyer || y_;
						u_used := u_used || a_;
						u_used0 := u_used0 || a_;
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
						-- Read once the home bucket is locked: a SetStockWith
						-- that sets a limit holds every bucket of the SKU.
						lim_l[k] := coalesce((SELECT s.buyer_limit > 0 FROM {schema}.stock s WHERE s.sku = s_), false);
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
		-- Units given back to a bucket the pass did not lock: to that bucket
		-- when no other transaction holds it (SKIP LOCKED, never waiting:
		-- the flush of another process holds its home bucket), else to the
		-- home bucket of the SKU, which the flush holds.
		FOR j IN 1 .. cardinality(bx_sku) LOOP
			p := NULL;
			FOR i IN 1 .. cardinality(lk_b) LOOP
				IF lk_sku[i] = bx_sku[j] AND lk_b[i] = bx_bkt[j] THEN
					p := i;
					EXIT;
				END IF;
			END LOOP;
			CONTINUE WHEN p IS NOT NULL;
			SELECT c.available INTO a_ FROM {schema}.stock_bucket c WHERE c.sku = bx_sku[j] AND c.bucket = bx_bkt[j] FOR UPDATE SKIP LOCKED;
			IF FOUND THEN
				lk_sku := lk_sku || bx_sku[j];
				lk_b := lk_b || bx_bkt[j];
				lk_av := lk_av || a_;
				lk_av0 := lk_av0 || a_;
			ELSE
				bx_bkt[j] := bh_b[array_position(bh_sku, bx_sku[j])];
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
				ok := hs[k] IS NOT NULL AND NOT lim_l[k] AND lk_av[hs[k]] >= dem[k];
			ELSE
				ok := NOT bkt_l[k] AND NOT lim_l[k] AND coalesce(avail[k] >= dem[k], false);
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
					IF lim_l[k] <> lim[k] OR (lim_l[k] AND (bkt[k] OR r_buyer[c] = '')) THEN
						-- The limit changed since the line was recorded, or the
						-- SKU is in buckets, or the request names no buyer.
						o_kind := 1::smallint; o_idx := c; o_outcome := 5::smallint; o_sku := skus[k]; o_avail := NULL::bigint;
						RETURN NEXT;
						ok := false;
						EXIT;
					ELSIF bkt[k] THEN
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
					ELSIF lim_l[k] AND coalesce((SELECT u_used[y] + l_qty[j] > lim_v[k] FROM generate_subscripts(u_sku, 1) AS y
							WHERE u_sku[y] = skus[k] AND u_buyer[y] = r_buyer[c]), true) THEN
						-- Past the buyer's limit (checked before the stock, as
						-- the store does): the caller's own take says so.
						o_kind := 1::smallint; o_idx := c; o_outcome := 5::smallint; o_sku := skus[k]; o_avail := NULL::bigint;
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
							IF lim_l[k] THEN
								FOR i IN 1 .. cardinality(u_sku) LOOP
									IF u_sku[i] = skus[k] AND u_buyer[i] = r_buyer[c] THEN
										u_used[i] := u_used[i] + l_qty[j];
										EXIT;
									END IF;
								END LOOP;
							END IF;
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
		IF cardinality(u_sku) > 0 THEN
			UPDATE {schema}.buyer_usage t SET used = u.a
			FROM unnest(u_sku, u_buyer, u_used, u_used0) AS u (s, y, a, a0)
			WHERE u.a <> u.a0 AND t.sku = u.s AND t.buyer = u.y;
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
