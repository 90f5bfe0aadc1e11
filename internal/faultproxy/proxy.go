package faultproxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Mode is what a Rule does to the connection it fires on.
type Mode int

const (
	// DropReply forwards the bytes that matched, throws away the server's
	// next reply and cuts the connection: the server acted, the client never
	// learns it.
	DropReply Mode = iota
	// DropRequest throws away the bytes that matched (and the rest of the
	// chunk they came in) and cuts the connection: the server never sees the
	// request, though the client sent it.
	DropRequest
)

// replyTimeout bounds the wait for a server's reply under DropReply; the
// connection is cut when it passes.
const replyTimeout = 5 * time.Second

// Rule is a fault armed on a Proxy. It fires on a connection whose client
// sends bytes containing Pattern (across read boundaries too).
type Rule struct {
	// Pattern is the byte sequence that triggers the rule. Required.
	Pattern []byte
	// Mode is what happens when it fires. Default: DropReply.
	Mode Mode
	// Times is how often the rule fires before it disarms itself. 0 means
	// every time, until Disarm.
	Times int
}

// Proxy forwards TCP connections from a local address to a target and
// injects faults on command. It is safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener

	mu          sync.Mutex
	links       map[*link]struct{}
	rule        *Rule
	left        int // firings left for rule; 0 with rule.Times == 0 means unlimited
	fired       int
	refuseUntil time.Time
	closed      bool
	held        chan struct{} // non-nil while Hold holds the server's bytes

	wg sync.WaitGroup
}

// New starts a proxy listening on 127.0.0.1 (a free port) that forwards
// every connection to target ("host:port").
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, links: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address clients dial ("127.0.0.1:port").
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Arm arms r, replacing any rule armed before. A rule with an empty pattern
// disarms.
func (p *Proxy) Arm(r Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(r.Pattern) == 0 {
		p.rule = nil
		return
	}
	r.Pattern = bytes.Clone(r.Pattern)
	p.rule, p.left = &r, r.Times
}

// Disarm removes the armed rule, if any.
func (p *Proxy) Disarm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rule = nil
}

// Fired returns how many times rules have fired since the proxy started.
func (p *Proxy) Fired() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fired
}

// CutAll cuts every live connection now, both ways, and returns how many it
// cut. New connections are accepted as before.
func (p *Proxy) CutAll() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.cut()
	}
	return len(links)
}

// RefuseFor makes the proxy close every new connection at once for d.
func (p *Proxy) RefuseFor(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuseUntil = time.Now().Add(d)
}

// Hold stops forwarding what servers send until Resume: the bytes wait in
// the proxy's socket buffers, and a cut while held loses them. It models a
// link that lags.
func (p *Proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
}

// Held reports whether the proxy is holding (Hold was called and Resume
// not yet).
func (p *Proxy) Held() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held != nil
}

// Resume forwards again what Hold held.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
}

// Live returns the number of live connections.
func (p *Proxy) Live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Close stops listening, cuts every connection and waits until every
// goroutine of the proxy has returned.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.CutAll()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p.mu.Lock()
		refuse := p.closed || time.Now().Before(p.refuseUntil)
		p.mu.Unlock()
		if refuse {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = client.Close()
		return
	}
	l := &link{client: client, server: server, dropReply: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.cut()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { p.up(l) })
	wg.Go(func() { p.down(l) })
	wg.Wait()
	l.cut()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// take reports whether the armed rule fires on window, and with which mode.
func (p *Proxy) take(window []byte) (Mode, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rule == nil || !bytes.Contains(window, p.rule.Pattern) {
		return 0, false
	}
	mode := p.rule.Mode
	p.fired++
	if p.rule.Times > 0 {
		p.left--
		if p.left <= 0 {
			p.rule = nil
		}
	}
	return mode, true
}

func (p *Proxy) patternLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rule == nil {
		return 0
	}
	return len(p.rule.Pattern)
}

// up copies client to server, watching for the armed rule.
func (p *Proxy) up(l *link) {
	defer l.cut()
	buf := make([]byte, 32<<10)
	var tail []byte // the end of what came before, for patterns split across reads
	for {
		n, err := l.client.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			window := append(tail, chunk...)
			if mode, ok := p.take(window); ok {
				if mode == DropRequest {
					return
				}
				l.armDrop()
			}
			if _, werr := l.server.Write(chunk); werr != nil {
				return
			}
			keep := max(p.patternLen()-1, 0)
			tail = append(tail[:0], window[max(len(window)-keep, 0):]...)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				// The client is done sending; let the reply through.
				if tc, ok := l.server.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				return
			}
			return
		}
	}
}

// down copies server to client, dropping the reply when a rule said so.
func (p *Proxy) down(l *link) {
	defer l.cut()
	buf := make([]byte, 32<<10)
	for {
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		if held != nil {
			<-held
		}
		n, err := l.server.Read(buf)
		if n > 0 {
			if l.dropping() {
				return // the reply is lost with the connection
			}
			if _, werr := l.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// link is one proxied connection.
type link struct {
	client, server net.Conn

	once      sync.Once
	dropOnce  sync.Once
	dropReply chan struct{} // closed once a DropReply rule fired
}

func (l *link) armDrop() {
	l.dropOnce.Do(func() {
		close(l.dropReply)
		time.AfterFunc(replyTimeout, l.cut)
	})
}

func (l *link) dropping() bool {
	select {
	case <-l.dropReply:
		return true
	default:
		return false
	}
}

func (l *link) cut() {
	l.once.Do(func() {
		_ = l.client.Close()
		_ = l.server.Close()
	})
}

// PostgresSimpleQuery returns the bytes of a PostgreSQL simple-protocol Query
// message carrying sql, as a client sends it. pgx sends COMMIT so ("commit"),
// which makes PostgresSimpleQuery("commit") the pattern that catches the
// commit of a pgx transaction.
func PostgresSimpleQuery(sql string) []byte {
	msg := make([]byte, 0, 6+len(sql))
	msg = append(msg, 'Q')
	msg = binary.BigEndian.AppendUint32(msg, uint32(4+len(sql)+1))
	msg = append(msg, sql...)
	return append(msg, 0)
}
