// Package connlimit bounds the connections a process holds, so that its
// memory does not follow what clients open: each connection costs a
// goroutine and buffers (about 20 KiB idle, more with half a header read),
// and an HTTP server otherwise takes every connection it is offered.
//
// A Limiter caps the connections of every listener it wraps together (Max)
// and those of one peer (PerAddr: an IPv4 address or an IPv6 /64, the unit
// of pkg/clientaddr; trusted proxies, whose connections carry many clients,
// count toward Max only). A connection over its peer's cap is closed at
// once. At Max, the connection idle the longest (an HTTP keep-alive
// waiting for its next request, as http.Server.ConnState reports) is
// closed to make room; with none idle, Accept holds the new connection
// until one closes or goes idle, and further ones wait in the kernel's
// backlog, as with golang.org/x/net/netutil.LimitListener.
package connlimit

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypage/paypage/pkg/clientaddr"
)

// Limiter counts the connections of the listeners it wraps.
type Limiter struct {
	max, perAddr int
	exempt       func(netip.Addr) bool

	mu      sync.Mutex
	freed   *sync.Cond // a place freed, or a connection idle
	open    int        // connections admitted and not closed
	perPeer map[string]int
	idle    map[*conn]uint64 // idle connections and when each became idle (a sequence number)
	seq     uint64

	refused, evicted prometheus.Counter
	current          prometheus.GaugeFunc
}

// New returns a limiter of max connections in all (0: no bound) and
// perAddr from one peer (0: no bound). exempt (nil: none) names the peers
// that count toward max only: trusted proxies.
func New(max, perAddr int, exempt func(netip.Addr) bool) *Limiter {
	l := &Limiter{max: max, perAddr: perAddr, exempt: exempt, perPeer: map[string]int{}, idle: map[*conn]uint64{}}
	l.freed = sync.NewCond(&l.mu)
	l.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paypage_connections_refused_total", Help: "Connections closed at once: their peer held its cap of connections.",
	})
	l.evicted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paypage_connections_evicted_total", Help: "Idle keep-alive connections closed to make room under the cap on connections.",
	})
	l.current = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "paypage_connections_open", Help: "Connections open on the listeners, of --max-connections.",
	}, func() float64 { return float64(l.Open()) })
	return l
}

// Register adds the limiter's metrics to reg.
func (l *Limiter) Register(reg prometheus.Registerer) {
	reg.MustRegister(l.refused, l.evicted, l.current)
}

// Open is how many connections are open.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Idle is how many of them are idle: keep-alive connections waiting for
// their next request.
func (l *Limiter) Idle() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.idle)
}

// Listen wraps ln: its connections count toward the limiter.
func (l *Limiter) Listen(ln net.Listener) net.Listener { return &listener{Listener: ln, l: l} }

// ConnState is an http.Server's ConnState hook: it tells the limiter which
// connections are idle, so that the oldest can be closed at the cap. Set
// it on every server that serves a wrapped listener.
func (l *Limiter) ConnState(c net.Conn, s http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*conn)
	if !ok || lc.l != l {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s == http.StateIdle && !lc.closed {
		l.seq++
		l.idle[lc] = l.seq
		l.freed.Broadcast() // an Accept waiting at the cap may close it
	} else {
		delete(l.idle, lc)
	}
}

// admit counts a new connection on ln as open, toward its peer's cap too:
// false (to be closed) when its peer is at its cap, or when ln closes
// while it waits. At the cap on all connections it closes the connection
// idle the longest to make room, or with none idle waits for one to close
// or go idle.
func (l *Limiter) admit(ln *listener, c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if c.peer != "" && l.perAddr > 0 && l.perPeer[c.peer] >= l.perAddr {
			l.refused.Inc()
			return false
		}
		if ln.closed {
			return false
		}
		if l.max <= 0 || l.open < l.max {
			break
		}
		if oldest := l.oldestIdle(); oldest != nil {
			delete(l.idle, oldest)
			l.evicted.Inc()
			l.mu.Unlock()
			oldest.Close() // frees its place (release)
			l.mu.Lock()
			continue
		}
		l.freed.Wait()
	}
	if c.peer != "" {
		l.perPeer[c.peer]++
	}
	l.open++
	return true
}

// oldestIdle is the connection idle the longest, or nil; the caller holds mu.
func (l *Limiter) oldestIdle() *conn {
	var (
		oldest *conn
		since  uint64
	)
	for c, s := range l.idle {
		if oldest == nil || s < since {
			oldest, since = c, s
		}
	}
	return oldest
}

// release gives back a closed connection's place.
func (l *Limiter) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	delete(l.idle, c)
	if c.peer != "" {
		if l.perPeer[c.peer]--; l.perPeer[c.peer] <= 0 {
			delete(l.perPeer, c.peer)
		}
	}
	l.open--
	l.freed.Broadcast()
}

// peerOf is the unit a connection counts under toward the per-address cap:
// "" for an exempt peer (or one whose address cannot be read).
func (l *Limiter) peerOf(addr net.Addr) string {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return ""
	}
	a := ap.Addr().Unmap().WithZone("")
	if l.exempt != nil && l.exempt(a) {
		return ""
	}
	return clientaddr.Bucket(a)
}

type listener struct {
	net.Listener
	l      *Limiter
	closed bool // guarded by l.mu
}

// Accept waits for a connection, then for its place: a connection whose
// peer is at its cap is closed and the next one waited for.
func (ln *listener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		lc := &conn{Conn: c, l: ln.l, peer: ln.l.peerOf(c.RemoteAddr())}
		if ln.l.admit(ln, lc) {
			return lc, nil
		}
		c.Close()
		if ln.isClosed() {
			return nil, net.ErrClosed
		}
	}
}

func (ln *listener) isClosed() bool {
	ln.l.mu.Lock()
	defer ln.l.mu.Unlock()
	return ln.closed
}

// Close closes the listener and wakes an Accept waiting for a place.
func (ln *listener) Close() error {
	ln.l.mu.Lock()
	ln.closed = true
	ln.l.freed.Broadcast()
	ln.l.mu.Unlock()
	return ln.Listener.Close()
}

// conn gives its place back when it closes.
type conn struct {
	net.Conn
	l      *Limiter
	peer   string
	closed bool // guarded by l.mu
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.l.release(c)
	return err
}
