-- The version of the redisstock stock event that last set a SKU's
-- backorder. {schema} stands for the quoted schema name. The writer
-- applies an event's backorder only over an older one, so that events
-- applied twice or out of order leave the newest, as the fence column does
-- for the available units. The other strategies leave it 0.
ALTER TABLE {schema}.stock ADD COLUMN IF NOT EXISTS backorder_fence bigint NOT NULL DEFAULT 0;
