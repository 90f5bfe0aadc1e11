-- Expiry, written once for every PostgreSQL strategy: expire_due claims the
-- due holds and marks them expired, and reports their units per SKU; the
-- store's ExpireDue and the groupcommit flush function (again, below, with
-- only its expiry changed) give the units back.
--
-- Each of its statements reads one table by the index it needs, with no join
-- for the planner to misjudge: statistics taken before a flood of abandoned
-- carts say that no reservation is held, and a plan that believed it
-- nested-looped every held row against every claimed one (11.6 s for 1,000
-- of 20,000 due holds). The claim reads the partial index of held
-- reservations in expiry order, LIMIT ... FOR UPDATE SKIP LOCKED, as an
-- InitPlan; the update finds the claimed rows by primary key (= ANY), and
-- needs no "state = 1" of its own, which would tempt the planner back onto
-- the partial index: the rows are locked, held, since the claim; the lines
-- are summed by the primary key of reservation_line.
--
-- Result rows: (o_n, o_sku, o_qty) in SKU order: o_n holds were expired, and
-- o_qty units of o_sku are theirs; no row when none was due.
CREATE OR REPLACE FUNCTION {schema}.expire_due(now_ timestamptz, lim bigint)
RETURNS TABLE (o_n bigint, o_sku text, o_qty bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
	ids text[];
BEGIN
	WITH done AS (
		UPDATE {schema}.reservation r SET state = 4
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

-- The flush function of the groupcommit strategy again (see
-- 0003_groupcommit_flush.sql), its expiry through expire_due.
CREATE OR REPLACE FUNCTION {schema}.groupcommit_flush(
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
			back_sku || coalesce(array_agg(e.o_sku ORDER BY e.o_sku), '{}'),
			back_qty || coalesce(array_agg(e.o_qty ORDER BY e.o_sku), '{}')
		INTO expired, back_sku, back_qty
		FROM {schema}.expire_due(now_, e_limit) AS e;
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
		SELECT array_agg(s.available + coalesce(b.qty, 0) ORDER BY u.k), array_agg(coalesce(d.qty, 0) ORDER BY u.k)
		INTO snap, dem
		FROM unnest(skus) WITH ORDINALITY AS u (sku, k)
		LEFT JOIN {schema}.stock s ON s.sku = u.sku
		LEFT JOIN (SELECT bs.sku, sum(bs.qty)::bigint AS qty FROM unnest(back_sku, back_qty) AS bs (sku, qty) GROUP BY bs.sku) b ON b.sku = u.sku
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
		FOR s_, a_ IN SELECT s.sku, s.available FROM {schema}.stock s
			WHERE s.sku = ANY (skus || back_sku) ORDER BY s.sku FOR UPDATE LOOP
			k := array_position(skus, s_);
			IF k IS NOT NULL THEN
				avail[k] := a_;
			END IF;
		END LOOP;
		FOR j IN 1 .. coalesce(array_length(back_sku, 1), 0) LOOP
			k := array_position(skus, back_sku[j]);
			IF k IS NOT NULL AND avail[k] IS NOT NULL THEN
				avail[k] := avail[k] + back_qty[j];
			END IF;
		END LOOP;

		-- 4. Decide the candidates in order against the locked stock. When
		-- every request was recorded and every SKU can serve the whole
		-- batch, each is granted, as the loop would find one by one.
		IF all_cand AND all_ins AND (SELECT bool_and(coalesce(x.a >= x.d, false)) FROM unnest(avail[1:m], dem) AS x (a, d)) THEN
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
					IF avail[k] IS NULL THEN
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
