package pgstore

import "context"

// FlushFunction is the name of the function, created by the migrations, that
// applies one batch of the groupcommit strategy in one statement; qualify it
// with Table. This version decides in the batch the requests of buyers on
// SKUs kept whole with a limit per buyer, its last argument the buyer of each
// request (see 0016_groupcommit_buyers.sql); it takes the lines of SKUs split
// into stock buckets
// from the caller's home bucket (Store.Home), its last argument (see
// 0011_bucket_home.sql), gives units back without waiting for a bucket
// another transaction holds (0012_give_back_free.sql), and leaves to its
// caller the requests on SKUs with a limit per buyer and the due holds with
// a buyer (0015_groupcommit_limits.sql); it settles each commit and release
// by the primary key of its reservation, one UPDATE each, so that no plan
// made on a small ledger reads every hold (0020_groupcommit_settle_by_key.sql).
const FlushFunction = "groupcommit_flush_buyers"

// CommitError classifies err, the error of a call that sent a commit (COMMIT,
// or a statement or batch that is its own implicit transaction) for the
// operation op on id: an *inventory.OutcomeUnknownError when the server may
// have committed it, else the error of a call that changed nothing, mapped
// to the inventory sentinels as the store's own calls map theirs.
func (s *Store) CommitError(ctx context.Context, op, id string, err error) error {
	return s.afterCommit(ctx, op, id, err)
}

// Retryable reports whether err is the server's refusal of a whole
// transaction that may succeed when sent again unchanged: a deadlock
// (40P01), a serialization failure (40001) or a lock timeout (55P03).
// Nothing was changed by it.
func Retryable(err error) bool {
	return hasCode(err, "40P01") || hasCode(err, codeSerializationFailure) || hasCode(err, codeLockNotAvailable)
}
