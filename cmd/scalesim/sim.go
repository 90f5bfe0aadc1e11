package main

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Config is one flash sale to simulate: buyers arriving at Rate for
// Duration, each asking one unit of one hot SKU whose Stock is split over
// Buckets buckets on Shards Redis masters, sold by Procs application
// processes, written behind to PGNodes PostgreSQL nodes.
//
// Times are in microseconds. The defaults are this repository's measured
// inputs (see docs/SCALE.md).
type Config struct {
	Rate     float64       // buyers per second, a Poisson stream
	Duration time.Duration // how long buyers keep arriving
	Stock    int64         // units of the SKU
	Seed     uint64

	Procs    int // application processes; each coalesces its calls per shard
	Shards   int // Redis masters
	Buckets  int // buckets of the SKU, bucket b on shard b mod Shards
	MaxBatch int // most requests one script call carries

	RTT        float64 // network round trip between a process and a shard, µs
	ScriptBase float64 // a shard's cost of one script call, whatever it carries, µs
	ScriptPer  float64 // a shard's cost per request in a call, µs

	// EmptyCache lets a process remember the buckets that answered "short"
	// and skip them, and refuse locally once every bucket has: no call for
	// a buyer who arrives after the sell-out. Only sound while units cannot
	// come back (no release or expiry during the sale), or with a short
	// lifetime on what is remembered.
	EmptyCache bool

	PGNodes     int     // PostgreSQL nodes the writers write behind to, shard s on node s mod PGNodes
	WriterBatch int     // most events one writer flush carries
	FlushBase   float64 // a PostgreSQL node's cost of one flush (its commit), µs
	FlushPer    float64 // its cost per event in a flush, µs

	unchecked bool // the shard takes a unit without checking: the tests' deliberately wrong store
}

// defaults returns c with every zero field set to the measured input.
func (c Config) defaults() Config {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defInt(&c.Procs, 16)
	defInt(&c.Shards, 1)
	defInt(&c.Buckets, c.Shards)
	defInt(&c.MaxBatch, 64)
	def(&c.RTT, 100)
	def(&c.ScriptBase, 19)
	def(&c.ScriptPer, 2.4)
	defInt(&c.PGNodes, 1)
	defInt(&c.WriterBatch, 512)
	def(&c.FlushBase, 760)
	def(&c.FlushPer, 3.7)
	if c.Duration == 0 {
		c.Duration = time.Second
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Rate <= 0 || math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate):
		return errors.New("scalesim: Rate must be a positive number")
	case c.Stock < 0:
		return errors.New("scalesim: Stock must not be negative")
	case c.Procs < 0 || c.Shards < 0 || c.Buckets < 0 || c.MaxBatch < 0 || c.PGNodes < 0 || c.WriterBatch < 0:
		return errors.New("scalesim: counts must not be negative")
	case c.RTT < 0 || c.ScriptBase < 0 || c.ScriptPer < 0 || c.FlushBase < 0 || c.FlushPer < 0:
		return errors.New("scalesim: costs must not be negative")
	case c.Rate*c.Duration.Seconds() > 50e6:
		return errors.New("scalesim: more than 50M buyers: shorten Duration")
	}
	return nil
}

// Result is what a simulated sale did.
type Result struct {
	Config Config

	Buyers   int64 // requests that arrived
	Granted  int64 // units sold (one a buyer)
	Refused  int64 // buyers told "sold out"
	Calls    int64 // script calls sent to shards
	Tries    int64 // bucket attempts (a fallover to another bucket is one more)
	LocalNo  int64 // buyers refused by a process without a call (EmptyCache)
	Oversold int64 // units granted beyond the stock: must be 0
	Left     int64 // units still in buckets at the end

	Decided   float64       // buyers decided per second while they arrived (the backlog of a saturated sale is not)
	P50, P99  time.Duration // from arrival to answer, every buyer
	SoldP99   time.Duration // the same, buyers who were sold a unit
	ShardBusy []float64     // fraction of the sale each shard was busy
	MeanBatch float64       // requests per script call
	LastSold  time.Duration

	MaxLag    int64         // largest number of events not yet written behind
	Drain     time.Duration // after the last buyer, until every event was written
	MeanFlush float64       // events per writer flush; at WriterBatch, the writers cannot keep up
}

// event kinds, in the order they break ties.
const (
	evArrive = iota
	evAtShard
	evReply
	evFlushed
)

type event struct {
	at   float64
	kind int
	seq  int64
	p, s int      // process, shard (or writer)
	reqs []*buyer // the batch (evAtShard, evReply)
	n    int      // events in a flush (evFlushed)
}

type events []*event

func (e events) Len() int { return len(e) }
func (e events) Less(i, j int) bool {
	if e[i].at != e[j].at {
		return e[i].at < e[j].at
	}
	return e[i].seq < e[j].seq
}
func (e events) Swap(i, j int) { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)   { *e = append(*e, x.(*event)) }
func (e *events) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

type buyer struct {
	arrived float64
	bucket  int // bucket tried now
	tried   int // buckets tried
	granted bool
}

// link is one process's connection to one shard: at most one call in
// flight (the leader/follower scheme), the rest queued for the next.
type link struct {
	queue    []*buyer
	inFlight bool
}

type sim struct {
	c   Config
	rng *rand.Rand
	q   events
	seq int64
	now float64

	links    [][]link // [process][shard]
	empty    [][]bool // [process][bucket], with EmptyCache
	buckets  []int64
	shardAt  []float64 // when each shard is next free
	busy     []float64
	pgAt     []float64
	stream   []int64 // events waiting per shard
	flushing []bool  // a writer flush in flight per shard
	lags     int64
	flushes  int64
	written  int64
	lastW    float64
	lat      []float64
	soldLat  []float64
	inTime   int64 // buyers decided before the sale's end
	end      float64
	r        Result
}

func (s *sim) push(e *event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.q, e)
}

// Simulate runs the sale c and returns what it did.
func Simulate(c Config) (*Result, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	c = c.defaults()
	s := &sim{c: c, rng: rand.New(rand.NewPCG(c.Seed, 0x5ca1e))}
	s.r.Config = c
	s.end = c.Duration.Seconds() * 1e6
	s.links = make([][]link, c.Procs)
	s.empty = make([][]bool, c.Procs)
	for p := range s.links {
		s.links[p] = make([]link, c.Shards)
		s.empty[p] = make([]bool, c.Buckets)
	}
	s.buckets = make([]int64, c.Buckets)
	for b := range s.buckets { // spread evenly, as SetStock does
		s.buckets[b] = c.Stock / int64(c.Buckets)
		if int64(b) < c.Stock%int64(c.Buckets) {
			s.buckets[b]++
		}
	}
	s.shardAt, s.busy = make([]float64, c.Shards), make([]float64, c.Shards)
	s.pgAt = make([]float64, c.PGNodes)
	s.stream, s.flushing = make([]int64, c.Shards), make([]bool, c.Shards)

	end := c.Duration.Seconds() * 1e6
	arrivals := rand.New(rand.NewPCG(c.Seed, 0xa771e))
	next := func(t float64) float64 { return t + arrivals.ExpFloat64()/c.Rate*1e6 }
	// Arrivals are made one ahead, to keep the heap small.
	if t := next(0); t < end {
		s.push(&event{at: t, kind: evArrive})
	}
	var lastArrival float64
	for s.q.Len() > 0 {
		e := heap.Pop(&s.q).(*event)
		s.now = e.at
		switch e.kind {
		case evArrive:
			s.r.Buyers++
			lastArrival = e.at
			if t := next(e.at); t < end {
				s.push(&event{at: t, kind: evArrive})
			}
			p := s.rng.IntN(c.Procs)
			b := &buyer{arrived: e.at, bucket: s.home(p)}
			s.try(p, b)
		case evAtShard:
			s.serve(e)
		case evReply:
			s.reply(e)
		case evFlushed:
			s.written += int64(e.n)
			s.lastW = e.at
			s.flushing[e.s] = false
			s.flush(e.s)
		}
	}
	s.finish(end, lastArrival)
	return &s.r, nil
}

// home is the bucket process p tries first: its own, so that processes
// spread over the buckets.
func (s *sim) home(p int) int { return p % s.c.Buckets }

// try sends b to its bucket, or refuses it when every bucket is known empty.
func (s *sim) try(p int, b *buyer) {
	if s.c.EmptyCache {
		for b.tried < s.c.Buckets && s.empty[p][b.bucket] {
			b.tried++
			b.bucket = (b.bucket + 1) % s.c.Buckets
		}
		if b.tried == s.c.Buckets {
			s.r.LocalNo++
			s.decide(b)
			return
		}
	}
	s.r.Tries++
	sh := b.bucket % s.c.Shards
	l := &s.links[p][sh]
	l.queue = append(l.queue, b)
	if !l.inFlight {
		s.send(p, sh)
	}
}

// send puts the queued requests of p's link to shard sh on the wire as one
// script call.
func (s *sim) send(p, sh int) {
	l := &s.links[p][sh]
	n := min(len(l.queue), s.c.MaxBatch)
	if n == 0 {
		return
	}
	reqs := slices.Clone(l.queue[:n])
	l.queue = l.queue[n:]
	l.inFlight = true
	s.r.Calls++
	s.push(&event{at: s.now + s.c.RTT/2, kind: evAtShard, p: p, s: sh, reqs: reqs})
}

// serve runs a call on its shard, after the calls before it.
func (s *sim) serve(e *event) {
	start := max(s.now, s.shardAt[e.s])
	cost := s.c.ScriptBase + s.c.ScriptPer*float64(len(e.reqs))
	s.shardAt[e.s] = start + cost
	s.busy[e.s] += cost
	var granted int64
	for _, b := range e.reqs {
		if s.buckets[b.bucket] > 0 || s.c.unchecked {
			s.buckets[b.bucket]--
			b.granted = true
			granted++
		}
	}
	s.stream[e.s] += granted // the event appended in the same script
	s.lags = max(s.lags, sum(s.stream))
	s.flush(e.s)
	s.push(&event{at: start + cost + s.c.RTT/2, kind: evReply, p: e.p, s: e.s, reqs: e.reqs})
}

// reply hands each request of a call its answer: granted, or on to the
// next bucket, or refused once every bucket said short.
func (s *sim) reply(e *event) {
	s.links[e.p][e.s].inFlight = false
	for _, b := range e.reqs {
		if b.granted {
			s.r.Granted++
			s.r.LastSold = time.Duration(s.now * 1e3)
			s.decide(b)
			continue
		}
		if s.c.EmptyCache {
			s.empty[e.p][b.bucket] = true
		}
		b.tried++
		if b.tried == s.c.Buckets {
			s.decide(b)
			continue
		}
		b.bucket = (b.bucket + 1) % s.c.Buckets
		s.try(e.p, b)
	}
	s.send(e.p, e.s)
}

func (s *sim) decide(b *buyer) {
	if !b.granted {
		s.r.Refused++
	} else {
		s.soldLat = append(s.soldLat, s.now-b.arrived)
	}
	if s.now <= s.end {
		s.inTime++
	}
	s.lat = append(s.lat, s.now-b.arrived)
}

// flush starts shard sh's writer on its waiting events, when it is idle.
func (s *sim) flush(sh int) {
	if s.flushing[sh] || s.stream[sh] == 0 {
		return
	}
	n := min(s.stream[sh], int64(s.c.WriterBatch))
	s.stream[sh] -= n
	s.flushing[sh] = true
	s.flushes++
	node := sh % s.c.PGNodes
	start := max(s.now+s.c.RTT/2, s.pgAt[node])
	cost := s.c.FlushBase + s.c.FlushPer*float64(n)
	s.pgAt[node] = start + cost
	s.push(&event{at: start + cost + s.c.RTT/2, kind: evFlushed, s: sh, n: int(n)})
}

func (s *sim) finish(end, lastArrival float64) {
	r := &s.r
	r.Left = sum(s.buckets)
	if r.Granted > r.Config.Stock {
		r.Oversold = r.Granted - r.Config.Stock
	}
	r.Decided = float64(s.inTime) / (end / 1e6)
	r.P50, r.P99 = quantile(s.lat, 0.5), quantile(s.lat, 0.99)
	r.SoldP99 = quantile(s.soldLat, 0.99)
	for i, b := range s.busy {
		r.ShardBusy = append(r.ShardBusy, b/max(end, s.shardAt[i]))
	}
	if r.Calls > 0 {
		r.MeanBatch = float64(r.Tries) / float64(r.Calls)
	}
	if s.flushes > 0 {
		r.MeanFlush = float64(s.written) / float64(s.flushes)
	}
	r.MaxLag = s.lags
	if s.lastW > lastArrival {
		r.Drain = time.Duration((s.lastW - lastArrival) * 1e3)
	}
}

func quantile(v []float64, q float64) time.Duration {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return time.Duration(v[min(int(float64(len(v))*q), len(v)-1)] * 1e3)
}

func sum(v []int64) int64 {
	var n int64
	for _, x := range v {
		n += x
	}
	return n
}

// capacityRow is the result as one line of the capacity table.
func (r *Result) capacityRow() string {
	return fmt.Sprintf("%9.0f %6d %7d %7d %9.0f %9s %9s %5.2f %6.1f %8d %8s %6.0f",
		r.Config.Rate, r.Config.Shards, r.Config.Buckets, r.Config.PGNodes, r.Decided,
		fmtDur(r.P50), fmtDur(r.P99), maxOf(r.ShardBusy), r.MeanBatch, r.MaxLag, fmtDur(r.Drain), r.MeanFlush)
}

const capacityHeader = "     rate shards buckets pgnodes decided/s       p50       p99 shard  batch   maxlag    drain  flush"

// sellOutRow is the result as one line of the sell-out table.
func (r *Result) sellOutRow() string {
	tries := float64(r.Tries) / float64(max(r.Buyers-r.LocalNo, 1))
	return fmt.Sprintf("%9.0f %6d %7d %7d %8d %9s %9s %6.2f %9d %9d %8s",
		r.Config.Rate, r.Config.Shards, r.Config.Buckets, r.Config.PGNodes, r.Granted,
		fmtDur(r.LastSold), fmtDur(r.SoldP99), tries, r.LocalNo, r.Calls, fmtDur(r.Drain))
}

const sellOutHeader = "     rate shards buckets pgnodes     sold  sold-out  sold-p99  tries  local-no     calls    drain"

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}
