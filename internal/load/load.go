// Package load drives a running paypage service on this machine with
// closed-loop load and reports what it measured: throughput, latency
// percentiles, errors by HTTP status and error code, and the service's own
// CPU and resident memory from its /metrics. It starts nothing itself: the
// operator runs the service (and, for comparison, the floor server), and
// "paypage load" points at it.
//
// Each of Concurrency workers keeps one operation in flight over its own
// keep-alive connection; an operation is one request (a session, a page
// view, a detokenize, a refund) or a whole flow (a card payment through the
// page, with or without a 3-D Secure challenge). Operations that end during
// the warm-up are not counted.
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config is one load run.
type Config struct {
	// Target is the service's base URL, on a loopback address
	// ("http://127.0.0.1:8080"); for the floor scenario, the floor server's.
	Target string
	// ProcessorTarget is where the service answers the processor API when
	// it runs with --processor-addr; "": on Target.
	ProcessorTarget string
	// MetricsURL is the service's metrics ("http://127.0.0.1:9090/metrics"),
	// for its CPU and resident memory; "": not read.
	MetricsURL string
	// Scenario names what to run: see Scenarios.
	Scenario    string
	Concurrency int
	Duration    time.Duration
	Warmup      time.Duration
	// MerchantKey is a merchant's secret key (sessions, payments, refunds);
	// ProcessorKey a processor's that serves that merchant (detokenize).
	MerchantKey, ProcessorKey string
	// Tokens to detokenize; none: the set-up makes Pool of them through
	// card payments.
	Tokens []string
	// Pool is how many sessions, payments or tokens the set-up makes for
	// the scenarios that read or refund them (0: 256).
	Pool int
	// Mix weighs the scenarios of the "sale" mix (nil: DefaultMix).
	Mix map[string]int
	// Idempotency sends an Idempotency-Key with each session and refund,
	// as a careful shop does.
	Idempotency bool
	// Sample is how often the service's metrics are read (0: 5 seconds).
	Sample time.Duration
	// FloorRate is the floor server's throughput measured in the same run
	// (operations a second), to state this run's as a share of it; 0: none.
	FloorRate float64
	// Progress, when set, receives a line per phase.
	Progress io.Writer
}

// Scenarios are the scenarios a run may name, with what each operation is.
var Scenarios = []struct{ Name, Op string }{
	{"sessions", "POST /v1/sessions (the shop opens a payment session)"},
	{"page", "GET /pay/{id} (a shopper opens the card page of an open session)"},
	{"pay", "a whole frictionless card payment: session, card page, form post with its CSRF token, result page"},
	{"challenge", "a whole card payment through a 3-D Secure challenge: as pay, then the sandbox bank's page, the SMS code, the return"},
	{"detokenize", "POST /v1/detokenize of a stored token (a processor)"},
	{"refund", "POST /v1/payments/{id}/refunds of one minor unit"},
	{"sale", "an airline sale: a weighted mix of the scenarios above (--mix)"},
	{"floor", "the floor server's POST /v1/transit/decrypt/cards (../shared/perf/floor), for a figure in the same run"},
}

// DefaultMix is the airline sale: mostly shoppers looking and paying.
var DefaultMix = map[string]int{"page": 40, "pay": 25, "challenge": 5, "sessions": 10, "detokenize": 15, "refund": 5}

// Report is what a run measured.
type Report struct {
	Scenario    string    `json:"scenario"`
	Target      string    `json:"target"`
	Concurrency int       `json:"concurrency"`
	Started     time.Time `json:"started"`
	WarmupSec   float64   `json:"warmup_s"`
	Seconds     float64   `json:"seconds"` // measured time
	// Total sums up every operation; Kinds has each scenario of a mix.
	Total Stats            `json:"total"`
	Kinds map[string]Stats `json:"kinds,omitempty"`
	// FloorRate and FloorShare state the throughput as a share of the floor
	// measured in the same run.
	FloorRate  float64 `json:"floor_rate,omitempty"`
	FloorShare float64 `json:"floor_share,omitempty"`
	// Server is the service's CPU and memory over the measured time (nil
	// without a metrics URL).
	Server *ServerUse `json:"server,omitempty"`
	// LoaderCPUSec is this process's CPU time, warm-up and set-up included.
	LoaderCPUSec float64 `json:"loader_cpu_s"`
	// Advice says which settings to turn off when the run met limits.
	Advice []string `json:"advice,omitempty"`
}

// Stats are one kind of operation's figures.
type Stats struct {
	Ops       uint64  `json:"ops"`
	Errors    uint64  `json:"errors"`
	PerSecond float64 `json:"per_second"`
	Requests  uint64  `json:"requests"` // HTTP requests, successful operations only
	ReqPerSec float64 `json:"requests_per_second"`
	MeanMs    float64 `json:"mean_ms"`
	P50Ms     float64 `json:"p50_ms"`
	P90Ms     float64 `json:"p90_ms"`
	P99Ms     float64 `json:"p99_ms"`
	P999Ms    float64 `json:"p99_9_ms"`
	MaxMs     float64 `json:"max_ms"`
	// ErrorsBy counts failed operations by step, HTTP status and error
	// code: "detokenize 429 rate_limited".
	ErrorsBy map[string]uint64 `json:"errors_by,omitempty"`
}

// failure is a failed operation: the step that failed, the HTTP status and
// the API's error code (or what the page showed).
type failure struct {
	step   string
	status int
	code   string
}

func (f *failure) Error() string {
	s := fmt.Sprintf("%s %d", f.step, f.status)
	if f.status == 0 {
		s = f.step + " transport"
	}
	if f.code != "" {
		s += " " + f.code
	}
	return s
}

// tally is one worker's figures for one kind of operation.
type tally struct {
	h        hist
	errors   map[string]uint64
	nerr     uint64
	requests uint64
}

// worker is one closed-loop client.
type worker struct {
	r        *run
	id       int
	hc       *http.Client
	rng      *rand.Rand
	requests uint64 // HTTP requests made by the operation in progress
	tallies  map[string]*tally
	credits  []int // the sale mix's round robin
}

// run is a load run in progress.
type run struct {
	cfg   Config
	scen  scenario
	phase atomic.Int32 // 0 warm-up, 1 measuring, 2 over
	seq   atomic.Uint64
	tr    *http.Transport // set-up and metrics
}

const (
	warming   = 0
	measuring = 1
	over      = 2
)

// Run drives the target as cfg says and reports what it measured. It
// refuses a target off this machine.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, tr: newTransport(cfg.Concurrency)}
	defer r.tr.CloseIdleConnections()
	var err error
	if r.scen, err = r.scenario(cfg.Scenario); err != nil {
		return nil, err
	}
	r.progress("set-up: %s", cfg.Scenario)
	setup := r.newWorker(-1)
	if err := r.scen.setup(ctx, setup); err != nil {
		return nil, fmt.Errorf("set-up: %w%s", err, adviceFor(err))
	}
	workers := make([]*worker, cfg.Concurrency)
	for i := range workers {
		workers[i] = r.newWorker(i)
	}
	rep := &Report{Scenario: cfg.Scenario, Target: cfg.Target, Concurrency: cfg.Concurrency, Started: time.Now().UTC(),
		WarmupSec: cfg.Warmup.Seconds(), FloorRate: cfg.FloorRate}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.loop(ctx) }()
	}
	r.progress("warm-up: %s at %d concurrent clients", cfg.Warmup, cfg.Concurrency)
	if !sleep(ctx, cfg.Warmup) {
		cancel()
		wg.Wait()
		return nil, ctx.Err()
	}
	// The CPU window is the measured one as closely as scrapes allow: the
	// first scrape ends just before the measured time starts, the last
	// starts as soon as it ends, before the workers stop.
	sampler := r.sampler(ctx)
	r.phase.Store(measuring)
	start := time.Now()
	r.progress("measuring: %s", cfg.Duration)
	sleep(ctx, cfg.Duration)
	r.phase.Store(over)
	elapsed := time.Since(start)
	samples, serr := sampler.stop()
	cancel()
	wg.Wait()
	rep.Seconds = elapsed.Seconds()
	r.sum(rep, workers, elapsed)
	if serr != nil {
		r.progress("server metrics: %v", serr)
	}
	rep.Server = serverUse(samples, rep.Total.Ops+rep.Total.Errors)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		rep.LoaderCPUSec = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	rep.Advice = advise(rep)
	return rep, nil
}

func (c *Config) check() error {
	u, err := url.Parse(c.Target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("target %q: give the service's base URL, http://127.0.0.1:8080", c.Target)
	}
	if !loopback(u.Hostname()) {
		return fmt.Errorf("target %q is not on this machine: the load tool drives a service on a loopback address only", c.Target)
	}
	if c.ProcessorTarget == "" {
		c.ProcessorTarget = c.Target
	}
	if p, err := url.Parse(c.ProcessorTarget); err != nil || p.Host == "" || !loopback(p.Hostname()) {
		return fmt.Errorf("processor target %q: give the service's processor address on a loopback address", c.ProcessorTarget)
	}
	if c.MetricsURL != "" {
		m, err := url.Parse(c.MetricsURL)
		if err != nil || m.Host == "" || !loopback(m.Hostname()) {
			return fmt.Errorf("metrics %q: give the service's metrics URL on a loopback address, http://127.0.0.1:9090/metrics", c.MetricsURL)
		}
	}
	if c.Concurrency < 1 {
		return errors.New("concurrency must be at least 1")
	}
	if c.Duration <= 0 || c.Warmup < 0 {
		return errors.New("the duration must be positive and the warm-up not negative")
	}
	if c.Pool == 0 {
		c.Pool = 256
	}
	if c.Sample <= 0 {
		c.Sample = 5 * time.Second
	}
	if c.Mix == nil {
		c.Mix = DefaultMix
	}
	return nil
}

// loopback reports whether a host name is a loopback address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func newTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns + 8,
		MaxIdleConnsPerHost: conns + 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

func (r *run) newWorker(id int) *worker {
	tr := r.tr
	if id >= 0 {
		tr = newTransport(2) // its own keep-alive connection
	}
	return &worker{
		r: r, id: id, rng: rand.New(rand.NewPCG(uint64(id+1), uint64(time.Now().UnixNano()))),
		hc: &http.Client{Transport: tr, Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		tallies: map[string]*tally{},
	}
}

func (r *run) progress(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "load: "+format+"\n", args...)
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// loop runs operations one after another until ctx ends, counting those
// that end while the run measures.
func (w *worker) loop(ctx context.Context) {
	defer w.hc.CloseIdleConnections()
	for ctx.Err() == nil {
		w.requests = 0
		start := time.Now()
		kind, err := w.r.scen.op(ctx, w)
		el := time.Since(start)
		if w.r.phase.Load() != measuring {
			continue
		}
		if ctx.Err() != nil && err != nil {
			return // cut short by the end of the run: not a failure
		}
		t := w.tallies[kind]
		if t == nil {
			t = &tally{errors: map[string]uint64{}}
			w.tallies[kind] = t
		}
		if err != nil {
			t.nerr++
			t.errors[errorKey(err)]++
			if f := (*failure)(nil); errors.As(err, &f) && f.status == 0 {
				sleep(ctx, 10*time.Millisecond) // no service there: don't spin
			}
			continue
		}
		t.h.add(el)
		t.requests += w.requests
	}
}

func errorKey(err error) string {
	var f *failure
	if errors.As(err, &f) {
		return f.Error()
	}
	return "other: " + err.Error()
}

// sum merges the workers' tallies into the report.
func (r *run) sum(rep *Report, workers []*worker, elapsed time.Duration) {
	merged := map[string]*tally{}
	total := &tally{errors: map[string]uint64{}}
	for _, w := range workers {
		for kind, t := range w.tallies {
			m := merged[kind]
			if m == nil {
				m = &tally{errors: map[string]uint64{}}
				merged[kind] = m
			}
			for _, into := range []*tally{m, total} {
				into.h.merge(&t.h)
				into.nerr += t.nerr
				into.requests += t.requests
				for k, n := range t.errors {
					into.errors[k] += n
				}
			}
		}
	}
	rep.Total = stats(total, elapsed)
	if len(merged) > 1 || r.cfg.Scenario == "sale" {
		rep.Kinds = map[string]Stats{}
		for kind, t := range merged {
			rep.Kinds[kind] = stats(t, elapsed)
		}
	}
	if rep.FloorRate > 0 {
		rep.FloorShare = rep.Total.PerSecond / rep.FloorRate
	}
}

func stats(t *tally, elapsed time.Duration) Stats {
	ms := func(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }
	s := Stats{
		Ops: t.h.n, Errors: t.nerr, Requests: t.requests,
		PerSecond: round(float64(t.h.n)/elapsed.Seconds(), 1), ReqPerSec: round(float64(t.requests)/elapsed.Seconds(), 1),
		MeanMs: ms(t.h.mean()), P50Ms: ms(t.h.quantile(0.50)), P90Ms: ms(t.h.quantile(0.90)),
		P99Ms: ms(t.h.quantile(0.99)), P999Ms: ms(t.h.quantile(0.999)), MaxMs: ms(t.h.max),
	}
	if len(t.errors) > 0 {
		s.ErrorsBy = t.errors
	}
	return s
}

func round(v float64, places int) float64 {
	p := 1.0
	for range places {
		p *= 10
	}
	if v < 0 {
		return -float64(int64(-v*p+0.5)) / p
	}
	return float64(int64(v*p+0.5)) / p
}

// sampler reads the service's process metrics while a run measures.
type sampler struct {
	r       *run
	c       *http.Client
	all     []processSample
	first   error
	done    chan struct{}
	stopped chan struct{}
}

// sampler takes the first sample at once, then one every Sample in the
// background until stop.
func (r *run) sampler(ctx context.Context) *sampler {
	s := &sampler{r: r, c: &http.Client{Transport: r.tr, Timeout: 5 * time.Second}, done: make(chan struct{}), stopped: make(chan struct{})}
	if r.cfg.MetricsURL == "" {
		close(s.stopped)
		return s
	}
	s.take(ctx)
	go func() {
		defer close(s.stopped)
		t := time.NewTicker(r.cfg.Sample)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.take(ctx)
			case <-s.done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return s
}

func (s *sampler) take(ctx context.Context) {
	p, err := scrape(context.WithoutCancel(ctx), s.c, s.r.cfg.MetricsURL)
	if err != nil {
		s.first = cmp(s.first, err)
		return
	}
	s.all = append(s.all, p)
}

// stop ends the sampling with a last sample, and returns the samples and
// the first error.
func (s *sampler) stop() ([]processSample, error) {
	if s.r.cfg.MetricsURL == "" {
		return nil, nil
	}
	close(s.done)
	<-s.stopped
	s.take(context.Background())
	return s.all, s.first
}

func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// joinURL puts a path on the target's base URL, or the processor API's.
func (r *run) joinURL(path string) string {
	base := r.cfg.Target
	if path == "/v1/detokenize" {
		base = r.cfg.ProcessorTarget
	}
	return strings.TrimRight(base, "/") + path
}
