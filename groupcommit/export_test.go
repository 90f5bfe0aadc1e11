package groupcommit

// DecideLastFirst makes r decide each batch in the reverse of arrival
// order: a deliberately wrong strategy that the FIFO test must catch.
func DecideLastFirst(r *Reserver) { r.lifo = true }

// SplitAlways makes r start a flush beside the one in flight for any call
// queued, however few: the batching before minSplit, a deliberately wrong
// variant that the split test must catch.
func SplitAlways(r *Reserver) { r.splitAt = 0 }

// MinSplit is minSplit, for the tests.
const MinSplit = minSplit
