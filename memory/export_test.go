package memory

import "github.com/oversell/inventory"

// Stored counts the reservations r keeps, Held and settled, and the settled
// ones queued to be forgotten, so tests can see the store shrink.
func (r *Reserver) Stored() (held, settled, queued int) {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for _, res := range sh.res {
			if res.state == inventory.Held {
				held++
			} else {
				settled++
			}
		}
		queued += len(sh.gone)
		sh.mu.Unlock()
	}
	return held, settled, queued
}
