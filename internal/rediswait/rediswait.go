// Package rediswait runs a Lua script and Redis WAIT over one connection,
// so that WAIT counts the replicas that have the script's writes: the one
// way the Redis strategies ask for replicas' confirmation.
package rediswait

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pipeliner is what Run needs of a client: a *redis.Client, a *redis.Conn
// (one connection of it), or any redis.UniversalClient.
type Pipeliner interface {
	Pipeline() redis.Pipeliner
}

// Run runs s once on c with keys and args, followed by WAIT for n replicas
// for at most timeout, in one pipeline (one connection). It returns the
// script's reply and how many replicas confirmed. A script the server does
// not know (NOSCRIPT) did not run, and is sent again with its text. A
// Redis Cluster client may split a pipeline over connections: callers
// refuse WAIT with one.
func Run(ctx context.Context, c Pipeliner, s *redis.Script, keys []string, args []any, n int, timeout time.Duration) (*redis.Cmd, int64, error) {
	for try := 0; ; try++ {
		p := c.Pipeline()
		run := s.EvalSha(ctx, p, keys, args...)
		if try > 0 {
			run = s.Eval(ctx, p, keys, args...)
		}
		wait := p.Do(ctx, "WAIT", n, timeout.Milliseconds())
		_, _ = p.Exec(ctx)
		if try == 0 && redis.HasErrorPrefix(run.Err(), "NOSCRIPT") {
			continue // not run: safe to send again, with the script's text
		}
		if err := run.Err(); err != nil {
			return nil, 0, err
		}
		got, err := wait.Int64()
		if err != nil {
			return nil, 0, err
		}
		return run, got, nil
	}
}
