package groupcommit

// DecideLastFirst makes r decide each batch in the reverse of arrival
// order: a deliberately wrong strategy that the FIFO test must catch.
func DecideLastFirst(r *Reserver) { r.lifo = true }
