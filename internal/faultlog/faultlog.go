// Package faultlog is the one way fault tests report what they tried and
// what they found: a line of fixed format in the test's output, which the
// reliability command (internal/cmd/reliability) reads from go test -json
// to build docs/RELIABILITY.md. A fault test calls Log once per strategy
// and fault it exercised, after its checks, with the numbers it measured.
package faultlog

import (
	"fmt"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Faults, the rows of the table. A test names one of these.
const (
	ConnCut           = "connection-cut"              // the connection to the store dies mid-call
	ReplyBeforeCommit = "reply-dropped-before-commit" // a statement's reply is lost before COMMIT
	ReplyAfterCommit  = "reply-dropped-after-commit"  // the reply to COMMIT (or a script) is lost
	BackendKilled     = "backend-killed"              // the server session serving the call is killed
	ContextCancelled  = "context-cancelled"           // the caller's context ends at random points
	ProcessKilled     = "process-sigkilled"           // one of several processes is SIGKILLed
	RedisRestartNoAOF = "redis-restart-no-aof"        // Redis restarts empty
	RedisRestartAOF   = "redis-restart-aof"           // Redis restarts from its append-only file
	RedisFailover     = "redis-failover"              // Sentinel promotes the replica after the primary is SIGKILLed
	RedisFailoverWait = "redis-failover-wait"         // the same, with WAIT for one replica before answering
	WriterCrash       = "writer-crash"                // a write-behind writer dies holding entries
	BadInput          = "bad-input"                   // invalid requests and administration calls
)

// Faults lists the faults in the order of the table's rows.
var Faults = []string{ConnCut, ReplyBeforeCommit, ReplyAfterCommit, BackendKilled, ContextCancelled,
	ProcessKilled, RedisRestartNoAOF, RedisRestartAOF, RedisFailover, RedisFailoverWait, WriterCrash, BadInput}

// Cell is what one test found for one strategy under one fault.
type Cell struct {
	Strategy string // as strategy.Names spells it
	Fault    string // one of the constants above
	Tried    int64  // operations attempted under the fault
	Oversold int64  // units granted beyond the stock
	Lost     int64  // units neither available, held nor sold; or acknowledged reservations lost
	Double   int64  // operations applied more than once
	Test     string // the test's name; Log fills it in
}

// StrategyName names the strategy v by the package of its type, as
// strategy.Names spells them: a *sqlcond.Reserver is "sqlcond", a
// *sqlcond.MySQLReserver "sqlcond-mysql".
func StrategyName(v any) string {
	t := reflect.TypeOf(v)
	if t == nil {
		return "nil"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	name := path.Base(t.PkgPath())
	if strings.HasPrefix(t.Name(), "MySQL") {
		name += "-mysql"
	}
	return name
}

// prefix starts every line Log writes.
const prefix = "FAULTCELL"

// Log writes c as one line of the test's output.
func Log(t testing.TB, c Cell) {
	t.Helper()
	c.Test = t.Name()
	t.Logf("%s strategy=%s fault=%s tried=%d oversold=%d lost=%d double=%d test=%s",
		prefix, c.Strategy, c.Fault, c.Tried, c.Oversold, c.Lost, c.Double, c.Test)
}

var lineRE = regexp.MustCompile(prefix + ` strategy=(\S+) fault=(\S+) tried=(\d+) oversold=(\d+) lost=(\d+) double=(\d+) test=(\S+)`)

// Parse finds a line Log wrote in s, a piece of test output.
func Parse(s string) (Cell, bool) {
	m := lineRE.FindStringSubmatch(s)
	if m == nil {
		return Cell{}, false
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(m[i], 10, 64); return v }
	return Cell{Strategy: m[1], Fault: m[2], Tried: n(3), Oversold: n(4), Lost: n(5), Double: n(6), Test: m[7]}, true
}

// String returns the cell's numbers as the table shows them.
func (c Cell) String() string {
	return fmt.Sprintf("%d tried, %d oversold, %d lost, %d double", c.Tried, c.Oversold, c.Lost, c.Double)
}
