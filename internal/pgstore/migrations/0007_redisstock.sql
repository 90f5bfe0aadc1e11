-- What the redisstock strategy's writer keeps beside the shared ledger, so
-- that a Redis that lost writes can be rebuilt without losing or doubling a
-- unit. {schema} stands for the quoted schema name. The other strategies
-- leave both tables empty.

-- One row per reservation and SKU whose units a take removed from the stock
-- row, written in the same transaction as the stock version the take left,
-- and moved to U (undone) or G (given back) in the transaction of the
-- version that returned them. A take travels in its SKU's stream and the
-- reservation in its ID's stream: after a Redis loss, Load gives back the
-- units of takes whose reservation PostgreSQL never got.
CREATE TABLE IF NOT EXISTS {schema}.redisstock_hold (
	reservation_id text COLLATE "C" NOT NULL,
	sku            text COLLATE "C" NOT NULL,
	attempt        bigint NOT NULL,
	qty            bigint NOT NULL CONSTRAINT redisstock_hold_qty_positive CHECK (qty > 0),
	-- T taken, U undone, G given back.
	state          text NOT NULL CONSTRAINT redisstock_hold_state_valid CHECK (state IN ('T', 'U', 'G')),
	PRIMARY KEY (reservation_id, sku)
);

-- Per bucket, the highest event sequence number applied and the stream
-- entry that carried it. Within one Redis history the two grow together;
-- an event that breaks that order, or a Redis whose sequence is below the
-- one applied, comes from a Redis that went back in time (a failover to a
-- replica that missed writes).
CREATE TABLE IF NOT EXISTS {schema}.redisstock_bucket (
	bucket   integer PRIMARY KEY,
	seq      bigint NOT NULL,
	entry_ms bigint NOT NULL,
	entry_n  bigint NOT NULL
);
