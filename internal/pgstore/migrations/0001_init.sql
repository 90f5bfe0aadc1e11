-- Stock, the reservation ledger, and the function that aborts a reserve batch.
-- {schema} stands for the quoted schema name.

CREATE TABLE IF NOT EXISTS {schema}.stock (
	-- COLLATE "C" orders SKUs byte by byte, as Go sorts strings, so that every
	-- statement that locks rows in SKU order locks them in the same order.
	sku       text COLLATE "C" PRIMARY KEY,
	-- The CHECK is the last line of defence: a correct strategy never trips it.
	available bigint NOT NULL CONSTRAINT stock_available_not_negative CHECK (available >= 0),
	-- The fencing token of the last writer under a distributed lock. Only the
	-- redislock strategy reads or writes it; the others leave it at 0.
	fence     bigint NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS {schema}.reservation (
	id         text COLLATE "C" PRIMARY KEY,
	-- 1 held, 2 committed, 3 released, 4 expired (inventory.State).
	state      smallint NOT NULL CONSTRAINT reservation_state_valid CHECK (state BETWEEN 1 AND 4),
	expires_at timestamptz NOT NULL,
	created_at timestamptz NOT NULL
);

-- ExpireDue reads held reservations in expiry order; settled ones stay out of
-- the index.
CREATE INDEX IF NOT EXISTS reservation_held_due ON {schema}.reservation (expires_at) WHERE state = 1;

CREATE TABLE IF NOT EXISTS {schema}.reservation_line (
	reservation_id text COLLATE "C" NOT NULL REFERENCES {schema}.reservation (id) ON DELETE CASCADE,
	sku            text COLLATE "C" NOT NULL,
	qty            bigint NOT NULL CONSTRAINT reservation_line_qty_positive CHECK (qty > 0),
	PRIMARY KEY (reservation_id, sku)
);

-- reserve_abort raises an error with the given SQLSTATE, so that the batch
-- that calls it rolls back whole: a reserve batch calls it when it finds the
-- reservation ID taken (IV001) or a line refused (IV002), a settle batch when
-- the reservation has left the state it expected (IV003).
CREATE OR REPLACE FUNCTION {schema}.reserve_abort(code text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
	RAISE EXCEPTION USING
		ERRCODE = code,
		MESSAGE = CASE code
			WHEN 'IV001' THEN 'inventory: reservation id already recorded'
			WHEN 'IV002' THEN 'inventory: line refused'
			WHEN 'IV003' THEN 'inventory: reservation state changed'
			ELSE 'inventory: reserve aborted'
		END;
END
$fn$;
