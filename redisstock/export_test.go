package redisstock

import "context"

// Script is the package's script, for tests that load it or match its calls.
var Script = script

// SetBeforeGrant sets the hook that runs between the last take and the
// grant of a cart that spans buckets.
func (r *Reserver) SetBeforeGrant(f func(id string) error) { r.beforeGrant = f }

// Bucket returns the bucket of a SKU or an ID.
func (r *Reserver) Bucket(name string) int { return r.bucket(name) }

// Wipe deletes every key of the store, as a Redis that lost its data.
func (r *Reserver) Wipe(ctx context.Context) error { return r.wipe(ctx) }
