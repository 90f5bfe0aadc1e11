package redisstock

import (
	"errors"
	"fmt"

	"github.com/oversell/inventory"
)

// ErrNotLoaded reports that Redis holds none of the store's data where it
// should (the loaded marker of a bucket is missing): Redis restarted without
// persistence, or failed over to a replica that never had it, or Load was
// never called. A missing key is then never read as zero stock or an
// unknown SKU: every call refuses, changing nothing, until Load rebuilds
// Redis from PostgreSQL. See NotLoadedError.
var ErrNotLoaded = errors.New("redisstock: redis holds no data for this store; run Load")

// NotLoadedError names the marker found missing. It unwraps to ErrNotLoaded
// and inventory.ErrUnavailable: nothing changed, and the same call may be
// made again once Load has run.
type NotLoadedError struct {
	Key string // the loaded marker that is missing
}

func (e *NotLoadedError) Error() string {
	return fmt.Sprintf("%v: %v: marker %q is missing: redis lost the store's data or was never loaded", inventory.ErrUnavailable, ErrNotLoaded, e.Key)
}

// Unwrap returns ErrNotLoaded and inventory.ErrUnavailable.
func (e *NotLoadedError) Unwrap() []error { return []error{ErrNotLoaded, inventory.ErrUnavailable} }
