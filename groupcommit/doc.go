// Package groupcommit is the inventory strategy that coalesces concurrent
// calls into one PostgreSQL transaction per flush.
package groupcommit
