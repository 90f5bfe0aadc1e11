-- The epoch of the redisstock Load that started the Redis history each
-- bucket's writer follows: the Load writes it into PostgreSQL and into the
-- bucket's loaded marker, and the writer applies events only from a Redis
-- whose marker carries it. Another server that still answers as a master
-- (an old primary Sentinel has not turned into a replica yet, or one a
-- Load rebuilt while the client followed a switch of masters) keeps the
-- epoch of an older Load: its events are refused. Empty: no Load since
-- this column came, any epoch is followed until the next Load.
ALTER TABLE {schema}.redisstock_bucket ADD COLUMN IF NOT EXISTS epoch text NOT NULL DEFAULT '';
