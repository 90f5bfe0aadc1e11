package redistest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oversell/inventory"
)

// FailoverConfig is a run of Sentinel.Hammer.
type FailoverConfig struct {
	// Strategy is reserved from, one unit of SKU a call. Required.
	Strategy inventory.Reserver
	// SKU is the SKU the buyers reserve; stock it first. Required.
	SKU string
	// NewID returns the request IDs. Default: a counter.
	NewID func() string
	// Workers is the number of buyers. Default: 8.
	Workers int
	// KillAfter is how many reservations are acknowledged before the
	// primary is SIGKILLed. Default: 100.
	KillAfter int
	// StallReplica, when positive, holds the replication stream (Link)
	// that long before the kill and cuts it with the kill, losing what it
	// held: the primary acknowledged what the replica never got, as for a
	// replica that lags. Default: 0.
	StallReplica time.Duration
	// OnError, when set, is called with every error of a call other than a
	// refusal, before the call is sent again: a strategy that refuses
	// until it is rebuilt (redisstock's Load) rebuilds there. Default: nil.
	OnError func(ctx context.Context, err error)
	// RestartEmpty brings the old primary back as an empty master, as a
	// supervisor restarts a server without persistence, instead of as a
	// replica of the new master. Sentinel turns it into a replica only some
	// seconds later, and until then a second failover (Sentinels that take
	// the new master for down on a loaded machine) can promote it empty:
	// the new master then resyncs from it, and every copy of what was not
	// written behind is gone. Default: false, the old primary comes back
	// with --replicaof the new master, as such a server must.
	RestartEmpty bool
}

// FailoverRun is what Sentinel.Hammer saw.
type FailoverRun struct {
	// Acked are the IDs whose Reserve returned a reservation.
	Acked []string
	// AckedBeforeKill are those whose answer came before the kill.
	AckedBeforeKill []string
	// Refused counts the requests refused for want of stock.
	Refused int64
	// Retries counts the calls sent again with the same ID after an error
	// (outcome unknown, store unavailable) while the primary was away.
	Retries int64
	// FailoverTook is the time from the kill until the Sentinels agreed on
	// the new master.
	FailoverTook time.Duration
	// Failovers counts the switches of master one Sentinel announced
	// during the run: 1, or more when the Sentinels took a new master for
	// down too.
	Failovers int64
}

// String summarises the run on one line.
func (r *FailoverRun) String() string {
	return fmt.Sprintf("acked=%d acked_before_kill=%d refused=%d retries=%d failover_ms=%d failovers=%d",
		len(r.Acked), len(r.AckedBeforeKill), r.Refused, r.Retries, r.FailoverTook.Milliseconds(), r.Failovers)
}

// Hammer has buyers reserve one unit at a time until the stock is gone;
// after KillAfter acknowledged reservations it SIGKILLs the primary, waits
// for the Sentinels to promote the replica, and restarts the old primary
// empty, as a replica of the new master (see FailoverConfig.RestartEmpty).
// A call
// that fails with an error other than a refusal is sent again with the same
// ID until it is answered. It returns when every buyer has been refused, or
// with ctx's error.
func (s *Sentinel) Hammer(ctx context.Context, cfg FailoverConfig) (*FailoverRun, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.KillAfter <= 0 {
		cfg.KillAfter = 100
	}
	var seq atomic.Int64
	if cfg.NewID == nil {
		cfg.NewID = func() string { return fmt.Sprintf("failover-%d", seq.Add(1)) }
	}
	run := &FailoverRun{}
	sc := redis.NewClient(&redis.Options{Addr: s.sentinels[0].Addr()})
	defer sc.Close()
	switches := sc.Subscribe(ctx, "+switch-master")
	defer switches.Close()
	if _, err := switches.Receive(ctx); err != nil {
		return run, fmt.Errorf("redistest: subscribe to a sentinel: %w", err)
	}
	var failovers atomic.Int64
	go func() {
		for range switches.Channel() {
			failovers.Add(1)
		}
	}()
	var mu sync.Mutex
	var killed atomic.Bool
	acked := make(chan struct{}, cfg.Workers)
	var retries, refused atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Workers+2)
	for range cfg.Workers {
		wg.Go(func() {
			for {
				id := cfg.NewID()
				for {
					_, err := cfg.Strategy.Reserve(ctx, inventory.Request{ID: id, Lines: []inventory.Line{{SKU: cfg.SKU, Qty: 1}}})
					if err == nil {
						before := !killed.Load()
						mu.Lock()
						run.Acked = append(run.Acked, id)
						if before {
							run.AckedBeforeKill = append(run.AckedBeforeKill, id)
						}
						mu.Unlock()
						select {
						case acked <- struct{}{}:
						default:
						}
						break
					}
					if errors.Is(err, inventory.ErrInsufficientStock) {
						refused.Add(1)
						return
					}
					if ctx.Err() != nil {
						errs <- ctx.Err()
						return
					}
					retries.Add(1)
					if cfg.OnError != nil {
						cfg.OnError(ctx, err)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	buyersDone := make(chan struct{})
	var killer sync.WaitGroup
	killer.Go(func() {
		for {
			mu.Lock()
			n := len(run.Acked)
			mu.Unlock()
			if n >= cfg.KillAfter {
				break
			}
			select {
			case <-acked:
			case <-buyersDone:
				errs <- errors.New("redistest: the stock ran out before the primary was killed")
				return
			case <-ctx.Done():
				return
			}
		}
		took, err := s.FailOver(ctx, &FailOverOptions{StallReplica: cfg.StallReplica, RestartEmpty: cfg.RestartEmpty,
			BeforeKill: func() { killed.Store(true) }})
		if err != nil {
			errs <- err
			return
		}
		run.FailoverTook = took
	})
	wg.Wait()
	close(buyersDone)
	killer.Wait()
	close(errs)
	run.Retries, run.Refused, run.Failovers = retries.Load(), refused.Load(), failovers.Load()
	if err := <-errs; err != nil {
		return run, err
	}
	return run, nil
}

// FailOverOptions configures Sentinel.FailOver. A nil *FailOverOptions
// takes every default.
type FailOverOptions struct {
	// StallReplica, when positive, holds the replication stream that long
	// before the kill and cuts it with the kill, losing what it held (see
	// FailoverConfig.StallReplica). A test that holds the stream itself
	// (Link.Hold) before calling FailOver gets the same loss with 0 here:
	// the stream is cut whenever it is held. Default: 0.
	StallReplica time.Duration
	// RestartEmpty brings the old primary back as an empty master (see
	// FailoverConfig.RestartEmpty). Default: false.
	RestartEmpty bool
	// BeforeKill, when set, is called right before the SIGKILL, after the
	// stall. Default: nil.
	BeforeKill func()
}

// FailOver SIGKILLs the primary, waits until every Sentinel names the
// promoted replica as the master, and brings the old primary back (as a
// replica of the new master unless opts.RestartEmpty). It returns the time
// from the kill until the Sentinels agreed. The new master is s.Primary's
// former replica; s.Primary and s.Replica keep naming the processes they
// named.
func (s *Sentinel) FailOver(ctx context.Context, opts *FailOverOptions) (time.Duration, error) {
	var o FailOverOptions
	if opts != nil {
		o = *opts
	}
	if o.StallReplica > 0 {
		s.Link.Hold()
		time.Sleep(o.StallReplica)
	}
	held := s.Link.Held()
	if o.BeforeKill != nil {
		o.BeforeKill()
	}
	start := time.Now()
	s.Primary.Stop()
	if held {
		s.Link.CutAll()
		s.Link.Resume()
	}
	master, err := s.WaitMaster(ctx, "")
	if err != nil {
		return 0, err
	}
	took := time.Since(start)
	if o.RestartEmpty {
		s.Primary.Restart()
	} else {
		s.Primary.RestartReplicaOf(master)
	}
	return took, nil
}
