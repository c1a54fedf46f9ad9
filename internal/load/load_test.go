package load

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHistQuantiles(t *testing.T) {
	t.Parallel()
	var h hist
	for i := 1; i <= 100_000; i++ { // 1 µs .. 100 ms, evenly
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.9, 90 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {0.999, 99900 * time.Microsecond}, {1, 100 * time.Millisecond}} {
		got := h.quantile(c.q)
		if diff := float64(got-c.want) / float64(c.want); diff > 0.016 || diff < -0.016 {
			t.Errorf("quantile %v = %v, want %v within 1.6%%", c.q, got, c.want)
		}
	}
	if m := h.mean(); m < 49*time.Millisecond || m > 51*time.Millisecond {
		t.Errorf("mean %v", m)
	}
	var other hist
	other.add(time.Second)
	h.merge(&other)
	if h.n != 100_001 || h.quantile(1) != time.Second {
		t.Errorf("after merge: n %d, max %v", h.n, h.quantile(1))
	}
}

func TestBucketsCoverEveryValue(t *testing.T) {
	t.Parallel()
	for _, us := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<40 + 12345, 1<<63 - 1} {
		b := bucketOf(us)
		if lo, hi := lowerOf(b), lowerOf(b+1); us < lo || us >= hi {
			t.Errorf("%d µs in bucket %d = [%d, %d)", us, b, lo, hi)
		}
	}
}

func TestParseProcess(t *testing.T) {
	t.Parallel()
	text := "# HELP process_cpu_seconds_total x\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n" +
		"process_resident_memory_bytes 4.194304e+07\ngo_goroutines 12\ngo_memstats_sys_bytes 2.097152e+07\n"
	s, err := parseProcess(strings.NewReader(text))
	if err != nil || s.CPU != 12.5 || s.Resident != 40*mb || s.GoSys != 20*mb {
		t.Fatalf("%+v %v", s, err)
	}
	if _, err := parseProcess(strings.NewReader("go_goroutines 1\n")); err == nil {
		t.Fatal("metrics without the process figures accepted")
	}
}

func TestServerUse(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	var samples []processSample
	for i := range 11 { // ten minutes, a sample a minute, memory growing 2 MB a minute
		samples = append(samples, processSample{At: t0.Add(time.Duration(i) * time.Minute), CPU: float64(i) * 60 * 1.5, Resident: float64(40+2*i) * mb})
	}
	u := serverUse(samples, 1000)
	if u.CPUCores != 1.5 || u.ResidentStartMB != 40 || u.ResidentEndMB != 60 || u.ResidentMaxMB != 60 {
		t.Errorf("%+v", u)
	}
	if d := u.ResidentSlopeMBPerMin - 2; d > 1e-9 || d < -1e-9 {
		t.Errorf("slope %v, want 2 MB a minute", u.ResidentSlopeMBPerMin)
	}
	if u.CPUPerOpMicros != 900*1e6/1000 {
		t.Errorf("CPU an op %v", u.CPUPerOpMicros)
	}
}

func TestTargetOnThisMachineOnly(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		target string
		ok     bool
	}{
		{"http://127.0.0.1:8080", true}, {"http://localhost:8080", true}, {"http://[::1]:8080", true}, {"https://127.0.0.2", true},
		{"http://10.0.0.1:8080", false}, {"http://example.com", false}, {"127.0.0.1:8080", false}, {"ftp://127.0.0.1", false},
	} {
		cfg := Config{Target: c.target, Scenario: "floor", Concurrency: 1, Duration: time.Second}
		if err := cfg.check(); (err == nil) != c.ok {
			t.Errorf("%s: %v", c.target, err)
		}
	}
	cfg := Config{Target: "http://127.0.0.1:1", MetricsURL: "http://192.0.2.1:9090/metrics", Concurrency: 1, Duration: time.Second}
	if cfg.check() == nil {
		t.Error("metrics off this machine accepted")
	}
}

func TestAdvice(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		key  string
		want string // in the advice; "" for none
	}{
		{"submit 429 state form", "--limit-client-per-hour 0"},
		{"detokenize 429 rate_limited", "--detokenize-per-second 0"},
		{"session 429 rate_limited", "--limit-refusals-per-minute 0"},
		{"session 401 unauthorized", "paypage merchant add"},
		{"detokenize 404 not_found", "processor grant"},
		{"result 200 state failed", ""},
		{"page transport", ""},
	} {
		rep := &Report{Total: Stats{ErrorsBy: map[string]uint64{c.key: 3}}}
		got := strings.Join(advise(rep), "\n")
		if c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("%s: advice %q, want %q", c.key, got, c.want)
		}
		if strings.Contains(c.key, " 429 ") && !strings.Contains(got, ServeForLoad) {
			t.Errorf("%s: no word on how to run the service for a load test", c.key)
		}
	}
}

func TestForm(t *testing.T) {
	t.Parallel()
	page := `<p>x</p><form method="post" action="/pay/ses_1?a=1&amp;b=2" class="card">
<input type="hidden" name="csrf" value="t&amp;k">
<input id="number" name="number"></form>`
	action, f, ok := form([]byte(page), "")
	if !ok || action != "/pay/ses_1?a=1&b=2" || f.Get("csrf") != "t&k" {
		t.Fatalf("%q %v %v", action, f, ok)
	}
	if _, _, ok := form([]byte("<p>no form</p>"), ""); ok {
		t.Fatal("form found where there is none")
	}
	two := `<form action="/kaspi"><input type="hidden" name="csrf" value="k"></form>` + page
	if action, _, ok := form([]byte(two), `name="number"`); !ok || action != "/pay/ses_1?a=1&b=2" {
		t.Fatalf("the form with the number field: %q %v", action, ok)
	}
	if _, _, ok := form([]byte(two), `name="creq"`); ok {
		t.Fatal("a form found by a mark none has")
	}
}

// transit is a server shaped like the floor's transit API that refuses
// every third decrypt with a JSON error.
func transit(t *testing.T, handled *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vault-Token") != "root" {
			http.Error(w, "{}", http.StatusForbidden)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/encrypt/cards") {
			_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"ciphertext": "vault:v1:abc"}})
			return
		}
		if handled.Add(1)%3 == 0 {
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"error": {"code": "rate_limited", "message": "slow down"}}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"plaintext": "NDI0Mg=="}})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRunCountsOpsAndErrors(t *testing.T) {
	t.Parallel()
	var handled atomic.Int64
	srv := transit(t, &handled)
	rep, err := Run(context.Background(), Config{Target: srv.URL, Scenario: "floor", Concurrency: 3, Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond, FloorRate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	tot := rep.Total
	if tot.Ops == 0 || tot.Errors == 0 {
		t.Fatalf("ops %d, errors %d", tot.Ops, tot.Errors)
	}
	// Warm-up operations are not counted.
	if n := uint64(handled.Load()); tot.Ops+tot.Errors >= n {
		t.Errorf("%d operations counted of %d handled, warm-up included", tot.Ops+tot.Errors, n)
	}
	if tot.ErrorsBy["decrypt 429 rate_limited"] != tot.Errors {
		t.Errorf("errors by key: %v", tot.ErrorsBy)
	}
	if tot.Requests != tot.Ops || tot.P50Ms <= 0 || tot.P50Ms > tot.P99Ms || tot.P99Ms > tot.MaxMs {
		t.Errorf("figures: %+v", tot)
	}
	if rep.FloorShare != tot.PerSecond/1000 {
		t.Errorf("share %v of %v", rep.FloorShare, tot.PerSecond)
	}
	if !strings.Contains(strings.Join(rep.Advice, " "), "--limit-refusals-per-minute 0") {
		t.Errorf("advice: %q", rep.Advice)
	}
	var text, js strings.Builder
	rep.WriteText(&text)
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal([]byte(js.String()), &back); err != nil || back.Total.Ops != tot.Ops {
		t.Fatalf("JSON round trip: %v", err)
	}
	for _, want := range []string{"floor: 3 concurrent clients", "decrypt 429 rate_limited", "share of the floor"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

func TestScenarioNeedsKeys(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		scenario, merchant, processor, want string
	}{
		{"pay", "", "", "merchant"},
		{"detokenize", "sk", "", "processor"},
		{"sale", "sk", "", "processor"},
		{"nope", "sk", "psk", "no scenario"},
	} {
		_, err := Run(context.Background(), Config{Target: "http://127.0.0.1:1", Scenario: c.scenario, MerchantKey: c.merchant, ProcessorKey: c.processor,
			Concurrency: 1, Duration: time.Second})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.scenario, err, c.want)
		}
	}
}

// named is a part of a mix that only says its name.
type named string

func (n named) setup(context.Context, *worker) error { return nil }
func (n named) op(context.Context, *worker) (string, error) {
	return string(n), nil
}

// The sale mix keeps each part's share over any run of its total, and a
// short run meets every part, whatever the worker's starting credits.
func TestMixRoundRobin(t *testing.T) {
	t.Parallel()
	m := &mix{}
	weights := map[string]int{"page": 40, "pay": 25, "detokenize": 15, "sessions": 10, "challenge": 5, "refund": 5}
	for _, name := range []string{"page", "pay", "detokenize", "sessions", "challenge", "refund"} {
		m.parts = append(m.parts, named(name))
		m.weights = append(m.weights, weights[name])
		m.total += weights[name]
	}
	for seed := range 50 {
		w := &worker{rng: rand.New(rand.NewPCG(uint64(seed), 7))}
		counts := map[string]int{}
		for i := range 1000 {
			kind, _ := m.op(context.Background(), w)
			counts[kind]++
			if i == 39 && len(counts) != len(weights) {
				t.Fatalf("seed %d: 40 operations ran only %v", seed, counts)
			}
		}
		for name, wgt := range weights {
			if d := counts[name] - 10*wgt; d < -1 || d > 1 {
				t.Fatalf("seed %d: %v over 1,000 operations, want 10 times the weights %v, give or take one", seed, counts, weights)
			}
		}
	}
}

// The service's CPU an operation divides the CPU of the measured window by
// every operation that ended in it, failed ones too: here each request
// costs the service 1 ms of CPU and a third of them fail, so it is 1,000
// µs an operation (give or take the operations in flight at either end),
// not 1,500 as it would be over the successful ones alone.
func TestCPUPerOpCountsFailedOperations(t *testing.T) {
	t.Parallel()
	var handled atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/metrics":
			fmt.Fprintf(w, "process_cpu_seconds_total %g\nprocess_resident_memory_bytes 4e7\n", float64(handled.Load())/1000)
		case strings.HasSuffix(r.URL.Path, "/encrypt/cards"):
			_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"ciphertext": "vault:v1:abc"}})
		default:
			time.Sleep(2 * time.Millisecond) // few operations, so the few in flight at either end weigh little
			if handled.Add(1)%3 == 0 {
				http.Error(w, `{"error": {"code": "rate_limited"}}`, http.StatusTooManyRequests)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"plaintext": "NDI0Mg=="}})
		}
	}))
	t.Cleanup(srv.Close)
	rep, err := Run(context.Background(), Config{Target: srv.URL, MetricsURL: srv.URL + "/metrics", Scenario: "floor",
		Concurrency: 3, Duration: 400 * time.Millisecond, Warmup: 50 * time.Millisecond, Sample: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Server == nil || rep.Total.Errors == 0 {
		t.Fatalf("server %+v, total %+v", rep.Server, rep.Total)
	}
	if us := rep.Server.CPUPerOpMicros; us < 850 || us > 1200 {
		t.Errorf("%.0f µs of CPU an operation over %d operations and %d failures, want 1,000", us, rep.Total.Ops, rep.Total.Errors)
	}
	t.Logf("%.0f µs of CPU an operation, %d operations, %d failures", rep.Server.CPUPerOpMicros, rep.Total.Ops, rep.Total.Errors)
	if n := len(rep.Server.Samples); n < 3 {
		t.Errorf("%d samples over 400 ms at one each 100 ms", n)
	}
}
