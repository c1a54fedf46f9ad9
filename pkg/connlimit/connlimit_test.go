package connlimit_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypage/paypage/pkg/connlimit"
)

// counter reads one of the limiter's counters by name.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// serve serves h on a loopback listener bounded by l, over TLS when tls is
// set, and returns the address.
func serve(t *testing.T, l *connlimit.Limiter, h http.Handler, useTLS bool) *httptest.Server {
	t.Helper()
	hs := httptest.NewUnstartedServer(h)
	hs.Listener = l.Listen(hs.Listener)
	hs.Config.ConnState = l.ConnState
	if useTLS {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(hs.Close)
	return hs
}

// client is one keep-alive connection that sends GETs by hand.
type client struct {
	c  net.Conn
	rd *bufio.Reader
}

func dial(t *testing.T, hs *httptest.Server) *client {
	t.Helper()
	var (
		c   net.Conn
		err error
	)
	if hs.TLS != nil {
		c, err = tls.Dial("tcp", hs.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true}) // the test server's own certificate
	} else {
		c, err = net.Dial("tcp", hs.Listener.Addr().String())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c: c, rd: bufio.NewReader(c)}
}

// get sends one GET and returns its status, or the error that ended the
// connection.
func (c *client) get() (int, error) {
	if _, err := c.c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.rd, nil)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func ok(w http.ResponseWriter, _ *http.Request) {}

// One peer holds at most PerAddr connections: the next is closed at once,
// counted, and a place it frees is taken again.
func TestPerAddressCap(t *testing.T) {
	t.Parallel()
	l := connlimit.New(0, 2, nil)
	reg := prometheus.NewRegistry()
	l.Register(reg)
	hs := serve(t, l, http.HandlerFunc(ok), false)
	a, b := dial(t, hs), dial(t, hs)
	for _, c := range []*client{a, b} {
		if st, err := c.get(); st != 200 {
			t.Fatalf("a connection within the cap: %d %v", st, err)
		}
	}
	if st, err := dial(t, hs).get(); err == nil {
		t.Fatalf("a third connection from one address answered %d", st)
	}
	if n := counter(t, reg, "paypage_connections_refused_total"); n != 1 {
		t.Errorf("refused: %v", n)
	}
	a.c.Close()
	for l.Open() != 1 { // until the server has read the close
		runtime.Gosched()
	}
	if st, err := dial(t, hs).get(); st != 200 {
		t.Fatalf("a connection after one closed: %d %v", st, err)
	}
}

// Exempt peers (trusted proxies) are bound by Max only.
func TestExemptPeers(t *testing.T) {
	t.Parallel()
	l := connlimit.New(0, 1, func(a netip.Addr) bool { return a.IsLoopback() })
	hs := serve(t, l, http.HandlerFunc(ok), false)
	for i := 0; i < 5; i++ {
		if st, err := dial(t, hs).get(); st != 200 {
			t.Fatalf("connection %d from an exempt peer: %d %v", i, st, err)
		}
	}
}

// At Max, a new connection closes the one idle the longest (over TLS too,
// where the server sees a *tls.Conn).
func TestIdleEvictedAtCap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"HTTP", false}, {"TLS", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := connlimit.New(2, 0, nil)
			reg := prometheus.NewRegistry()
			l.Register(reg)
			hs := serve(t, l, http.HandlerFunc(ok), tc.tls)
			oldest, other := dial(t, hs), dial(t, hs)
			for i, c := range []*client{oldest, other} {
				if st, err := c.get(); st != 200 {
					t.Fatalf("%d %v", st, err)
				}
				for l.Idle() != i+1 { // until the server has it idle: oldest first
					runtime.Gosched()
				}
			}
			if st, err := dial(t, hs).get(); st != 200 {
				t.Fatalf("a connection at the cap with two idle: %d %v", st, err)
			}
			if _, err := oldest.get(); err == nil {
				t.Error("the connection idle the longest is still served")
			}
			if st, err := other.get(); st != 200 {
				t.Errorf("the other idle connection: %d %v", st, err)
			}
			if n := counter(t, reg, "paypage_connections_evicted_total"); n != 1 {
				t.Errorf("evicted: %v", n)
			}
			if n := counter(t, reg, "paypage_connections_open"); n > 2 {
				t.Errorf("open: %v of 2", n)
			}
		})
	}
}

// At Max with none idle, a new connection waits until one closes, and the
// cap is never passed.
func TestWaitsWhenNoneIdle(t *testing.T) {
	t.Parallel()
	l := connlimit.New(1, 0, nil)
	release := make(chan struct{})
	var calls, over atomic.Int32
	hs := serve(t, l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.Open() > 1 {
			over.Add(1)
		}
		if calls.Add(1) == 1 {
			<-release
		}
		w.Header().Set("Connection", "close")
	}), false)
	busy := dial(t, hs)
	done := make(chan int)
	go func() { st, _ := busy.get(); done <- st }()
	for calls.Load() == 0 { // until the first request is in its handler: its connection is active
		runtime.Gosched()
	}
	waiting := make(chan int)
	go func() { st, _ := dial(t, hs).get(); waiting <- st }()
	close(release)
	if st := <-done; st != 200 {
		t.Fatalf("the first request: %d", st)
	}
	if st := <-waiting; st != 200 {
		t.Fatalf("the waiting connection, once a place was free: %d", st)
	}
	if over.Load() != 0 || calls.Load() != 2 {
		t.Errorf("%d requests saw more than one connection open; %d calls", over.Load(), calls.Load())
	}
}

// Closing a listener wakes an Accept that holds a connection and waits for
// a place.
func TestCloseWakesAccept(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := connlimit.New(1, 0, nil)
	ln := l.Listen(inner)
	c, err := net.Dial("tcp", inner.Addr().String()) // in the backlog until accepted
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	held, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	c2, err := net.Dial("tcp", inner.Addr().String()) // accepted, then waits for a place
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	accepted := make(chan error)
	go func() { _, err := ln.Accept(); accepted <- err }()
	ln.Close()
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}
