package redisstock

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/oversell/inventory"
)

// Key layout. The keys are spread over Options.Buckets buckets; every key of
// a bucket carries the bucket's hash tag, so a bucket lives in one Redis
// Cluster slot and one script call can touch any of its keys. A SKU lives in
// the bucket its name hashes to, a reservation record in the bucket its ID
// hashes to:
//
//	<prefix>{b<n>}:m          the bucket's loaded marker (the epoch of the last Load)
//	<prefix>{b<n>}:e          the bucket's event stream (consumer group "writer")
//	<prefix>{b<n>}:x          the bucket's dead-letter stream
//	<prefix>{b<n>}:d          due set: reservation IDs (and moves, \x1e<token>) by the time they need a sweep
//	<prefix>{b<n>}:s:<sku>    stock of a SKU: a (available), v (version), l (limit per buyer), ...
//	                          and k, the stock buckets of a SKU split into more than one
//	<prefix>{b<m>}:s:<sku>\x1e<j> stock bucket j (1..k-1) of a split SKU, m = (n+j) mod Options.Buckets
//	<prefix>{b<n>}:u:<sku>    usage of a SKU with a limit: buyer -> units held and committed
//	<prefix>{b<n>}:h:<id>     the hold of reservation <id> on this bucket's lines
//	<prefix>{b<n>}:r:<id>     the reservation record (and, for one reserved in one
//	                          call under an ID new to the bucket, its hold: field hs)
//	<prefix>{b<n>}:o:<token>  the answer of one AddStock call, for its retries
//	<prefix>{b<n>}:v:<token>  a move of units from a stock bucket here to another, until it is finished
//	<prefix>{b<n>}:w:<token>  the token of a move of units to a stock bucket here: armed, then in
//
// The hash tag is the first {...} of a key, and the prefix holds no brace, so
// a SKU or an ID (which may hold any byte) never changes a key's slot. Keys
// are always built here and passed to the script, never inside it.

// bucket returns the bucket of a SKU or a reservation ID.
func (r *Reserver) bucket(name string) int {
	if r.buckets == 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32() % uint32(r.buckets))
}

func (r *Reserver) key(b int, kind string) string {
	return r.prefix + "{b" + strconv.Itoa(b) + "}:" + kind
}

func (r *Reserver) marker(b int) string             { return r.key(b, "m") }
func (r *Reserver) stream(b int) string             { return r.key(b, "e") }
func (r *Reserver) deadStream(b int) string         { return r.key(b, "x") }
func (r *Reserver) dueKey(b int) string             { return r.key(b, "d") }
func (r *Reserver) stockKey(sku string) string      { return r.key(r.skuBucket(sku), "s:"+sku) }
func (r *Reserver) usageKey(sku string) string      { return r.key(r.skuBucket(sku), "u:"+sku) }
func (r *Reserver) holdKey(b int, id string) string { return r.key(b, "h:"+id) }
func (r *Reserver) recordKey(id string) string      { return r.key(r.bucket(id), "r:"+id) }

// checkPrefix refuses a key prefix holding a brace: it would take the place
// of the bucket's hash tag.
func checkPrefix(prefix string) error {
	if strings.ContainsAny(prefix, "{}") {
		return &inventory.ValidationError{Field: "KeyPrefix", Reason: fmt.Sprintf("%q holds a brace; the strategy sets the hash tags itself", prefix)}
	}
	return nil
}

// group is the lines of a cart that fall into one bucket, in SKU order.
type group struct {
	bucket int
	lines  []inventory.Line
	idx    []int // index of each of its lines in the sorted cart
}

// groups splits sorted lines by bucket. Groups come in the order of their
// first SKU, so that every cart takes its buckets in one global order.
func (r *Reserver) groups(lines []inventory.Line) []group {
	var gs []group
	at := map[int]int{}
	for i, l := range lines {
		b := r.skuBucket(l.SKU)
		k, ok := at[b]
		if !ok {
			k = len(gs)
			at[b] = k
			gs = append(gs, group{bucket: b})
		}
		gs[k].lines = append(gs[k].lines, l)
		gs[k].idx = append(gs[k].idx, i)
	}
	return gs
}
