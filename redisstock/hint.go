package redisstock

import (
	"hash/maphash"
	"sync"

	"github.com/oversell/inventory"
)

// hints remembers the lines (and the buyer) of the reservations this
// process reserved, so
// that a Commit or Release of one whose record and lines share a bucket can
// name the lines' stock keys and settle and finish in one script call
// (settle1) instead of two. A hint is only a guess: the script compares it
// with the record's lines and, when they differ, settles as without one,
// and the caller finishes with the record's lines. It is bounded: past
// maxHints a shard drops an entry for each it takes.
type hints struct {
	seed   maphash.Seed
	shards [64]hintShard
}

type hintShard struct {
	mu sync.Mutex
	m  map[string]hint
	_  [40]byte // keep shards' mutexes on separate cache lines
}

// hint is what a process remembers of a reservation it reserved: its
// lines, which name their stock keys, and its buyer, whose usage keys go
// with them.
type hint struct {
	lines []inventory.Line
	buyer string
}

// maxHints bounds the hints a Reserver keeps (a few MB at most).
const maxHints = 1 << 16

func newHints() *hints {
	h := &hints{seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].m = make(map[string]hint)
	}
	return h
}

func (h *hints) shard(id string) *hintShard {
	return &h.shards[maphash.String(h.seed, id)%uint64(len(h.shards))]
}

// put remembers the lines and the buyer of id.
func (h *hints) put(id string, lines []inventory.Line, buyer string) {
	s := h.shard(id)
	s.mu.Lock()
	if len(s.m) >= maxHints/len(h.shards) {
		for k := range s.m {
			delete(s.m, k)
			break
		}
	}
	s.m[id] = hint{lines, buyer}
	s.mu.Unlock()
}

// take returns what is remembered of id, and forgets it.
func (h *hints) take(id string) (hint, bool) {
	s := h.shard(id)
	s.mu.Lock()
	l, ok := s.m[id]
	if ok {
		delete(s.m, id)
	}
	s.mu.Unlock()
	return l, ok
}
