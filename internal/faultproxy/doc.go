// Package faultproxy is a small TCP proxy for fault tests. It forwards every
// connection from a local address to a target (PostgreSQL, Redis) and, on
// command, breaks them the way networks and servers do:
//
//   - a Rule fires when a client sends bytes containing a pattern (a
//     PostgreSQL COMMIT, a request ID, a Redis command name): DropReply
//     forwards them and loses the server's reply with the connection, so the
//     server acted and the client cannot know; DropRequest loses them, so the
//     server never acted though the client sent them. A rule fires a given
//     number of times, or until disarmed.
//   - CutAll cuts every live connection at once.
//   - RefuseFor closes every new connection for a while.
//
// # Guarantees
//
// Bytes are forwarded unchanged and in order until a fault hits a
// connection; a fault cuts the whole connection, both ways, never a part of
// it. Patterns are found across read boundaries. Close stops every goroutine
// the proxy started.
//
// # Cost
//
// Two goroutines and two 32 KiB buffers per connection; each chunk the
// client sends is searched for the armed pattern. It is meant for tests, not
// for production traffic.
//
// # Failures
//
// A connection the proxy cannot open to the target is closed on the client
// side at once. Under DropReply, a server that never replies has its
// connection cut after five seconds.
package faultproxy
