-- What the redisstock strategy's ledger keeps of the committed
-- reservations it forgets: Purge, past Options.Retention, and the writer,
-- when a settled ID was taken anew after its record expired in Redis,
-- delete them, and their sold units still count. {schema} stands for the
-- quoted schema name. The other strategies leave it empty.
--
-- Per SKU, the units of the committed reservations forgotten: Load counts
-- them as sold, beside those of the committed reservations the ledger
-- still holds. (The units a buyer of a SKU with a limit committed go to
-- buyer_usage, which this strategy's writer leaves empty otherwise: Load
-- adds them to the usage it rebuilds from the ledger.)
CREATE TABLE IF NOT EXISTS {schema}.redisstock_sold (
	sku text COLLATE "C" PRIMARY KEY,
	qty bigint NOT NULL CONSTRAINT redisstock_sold_qty_not_negative CHECK (qty >= 0)
);
