-- The function that applies one batch of the groupcommit strategy: many
-- reservations, commits, releases and an expiry sweep, in one statement and
-- so in one transaction and one round trip. {schema} stands for the quoted
-- schema name.
--
-- Lock order, the same as every other writer of the schema: reservation rows
-- first (commits, releases and expiry lock theirs in ID order; new IDs are
-- inserted in ID order), stock rows last, in SKU order, all in one
-- statement. The stock UPDATE is the last write but the DELETE of refused
-- candidates, so that a hot SKU's row is locked only while the server
-- decides the batch and commits it.
--
-- Reservations are decided one by one in the order given (FIFO), each all or
-- nothing across its lines:
--
--  1. against the stock the statement reads without a lock (plus the units
--     this batch gives back): a request that cannot be served even by that
--     on its own is refused there, at that moment, and costs no write;
--  2. the others (candidates) are recorded, then decided again, in order,
--     against the stock read under the row locks; a candidate refused there
--     has its rows deleted before the commit.
--
-- Each ID array is followed by an 8-byte parameter, so that a fault test
-- finds an ID bound in a flush as it finds it in the other strategies'
-- writing statements (the ID, then the length 8).
--
-- Result rows: (kind, idx, outcome, sku, avail), idx counting from 1 within
-- its kind's arrays.
--   kind 1, reserve: only requests not granted. outcome 1: the ID is
--     already recorded (the caller looks it up); 2: too few units of sku,
--     avail left; 3: sku is not stocked.
--   kind 2, commit / kind 3, release: the IDs this batch settled; the others
--     were not held and active, and the caller settles them one by one.
--   kind 4, expire: one row, avail is the number of holds expired.
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
			SELECT r.id FROM {schema}.reservation r
			WHERE r.id = ANY (c_id) AND r.state = 1 AND r.expires_at > now_
			ORDER BY r.id FOR UPDATE
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
				SELECT r.id FROM {schema}.reservation r
				WHERE r.id = ANY (x_id) AND r.state = 1 AND r.expires_at > now_
				ORDER BY r.id FOR UPDATE
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
		WITH due AS (
			SELECT r.id FROM {schema}.reservation r WHERE r.state = 1 AND r.expires_at <= now_
			ORDER BY r.expires_at LIMIT e_limit FOR UPDATE SKIP LOCKED
		), done AS (
			UPDATE {schema}.reservation AS r SET state = 4 FROM due WHERE r.id = due.id AND r.state = 1 RETURNING r.id
		), units AS (
			SELECT rl.sku, sum(rl.qty)::bigint AS qty
			FROM {schema}.reservation_line rl JOIN done ON rl.reservation_id = done.id GROUP BY rl.sku
		)
		SELECT (SELECT count(*) FROM done),
			back_sku || coalesce((SELECT array_agg(units.sku) FROM units), '{}'),
			back_qty || coalesce((SELECT array_agg(units.qty) FROM units), '{}')
		INTO expired, back_sku, back_qty;
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
			o_kind := 1::smallint; o_idx := c; o_outcome := 1::smallint; o_sku := NULL::text; o_avail := NULL::bigint;
			RETURN NEXT;
		END LOOP;
		snap := array_fill(NULL::bigint, ARRAY[m]);
		FOR k, a_ IN SELECT u.k, s.available FROM unnest(skus) WITH ORDINALITY AS u (sku, k)
			JOIN {schema}.stock s ON s.sku = u.sku LOOP
			snap[k] := a_;
		END LOOP;
		FOR j IN 1 .. coalesce(array_length(back_sku, 1), 0) LOOP
			k := array_position(skus, back_sku[j]);
			IF k IS NOT NULL AND snap[k] IS NOT NULL THEN
				snap[k] := snap[k] + back_qty[j];
			END IF;
		END LOOP;
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

	IF coalesce(array_length(cand, 1), 0) > 0 THEN
		-- 2. Record the candidates, in ID order; an ID recorded meanwhile is
		-- skipped (ON CONFLICT waits for a transaction inserting it).
		FOR c IN
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
			SELECT x FROM got
		LOOP
			inserted[c] := true;
		END LOOP;
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

		-- 4. Decide the candidates in order against the locked stock.
		FOREACH c IN ARRAY cand LOOP
			IF NOT inserted[c] THEN
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
