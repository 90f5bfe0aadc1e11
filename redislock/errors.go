package redislock

import (
	"errors"
	"fmt"
	"time"

	"github.com/oversell/inventory"
)

// ErrFenced reports a reservation refused because its lock had lapsed: while
// the request held the lock of a SKU, the lock expired (a pause longer than
// LockTTL: garbage collection, a stalled network, a stopped process), another
// request took it and wrote the SKU's stock with a newer fencing token, and
// PostgreSQL refused the older token's write. The whole transaction rolled
// back: nothing was recorded and no stock changed. Retrying is safe. See
// FencedError, which also satisfies errors.Is inventory.ErrContended.
var ErrFenced = errors.New("redislock: fenced off by a newer lock holder")

// FencedError names the SKU whose write was fenced off. It unwraps to
// ErrFenced and to inventory.ErrContended.
type FencedError struct {
	SKU   string
	Fence int64 // the fencing token of this request's lock
	Seen  int64 // the newer token the stock row carried
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("%v: %v: the lock of sku %q lapsed and a newer holder wrote its stock (token %d, the row has %d)", inventory.ErrContended, ErrFenced, e.SKU, e.Fence, e.Seen)
}

// Unwrap returns ErrFenced and inventory.ErrContended.
func (e *FencedError) Unwrap() []error { return []error{ErrFenced, inventory.ErrContended} }

// ErrNotReplicated reports locks the primary gave that fewer replicas than
// Options.WaitReplicas confirmed within Options.ReplicaTimeout. The locks
// were given back before anything was written: it comes wrapped in an
// *inventory.UnavailableError, and a retry is safe.
var ErrNotReplicated = errors.New("redislock: locks not confirmed by enough replicas")

// ContendedError reports that another owner held the lock of SKU for the
// whole of Options.WaitTimeout. Nothing was changed. It unwraps to
// inventory.ErrContended.
type ContendedError struct {
	SKU    string
	Waited time.Duration
}

func (e *ContendedError) Error() string {
	return fmt.Sprintf("%v: redislock: lock of sku %q still held by another owner after %v", inventory.ErrContended, e.SKU, e.Waited.Round(time.Millisecond))
}

// Unwrap returns inventory.ErrContended.
func (e *ContendedError) Unwrap() error { return inventory.ErrContended }
