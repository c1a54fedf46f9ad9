package e2e

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/paypage/paypage/internal/load"
	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/store/redis/redistest"
)

// loadConfig is a short run of a scenario against the env, with its keys
// and metrics.
func (e *env) loadConfig(scenario string, concurrency int) load.Config {
	cfg := load.Config{Target: e.url, Scenario: scenario, Concurrency: concurrency, Duration: 800 * time.Millisecond,
		Warmup: 200 * time.Millisecond, MerchantKey: e.key, ProcessorKey: e.procKey, Pool: 6, Sample: 200 * time.Millisecond}
	if e.metrics != "" {
		cfg.MetricsURL = e.metrics + "/metrics"
	}
	return cfg
}

// TestLoadTool runs each scenario of the load tool against a real service
// on Redis with its limits off: every operation succeeds, each flow makes
// the requests a shopper's browser makes, the service's CPU and memory are
// read from its metrics, and what the run did is what the service recorded.
func TestLoadTool(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server (skipped with -short)")
	}
	e := newEnv(t, envOpts{store: redisURL(t), metrics: true, detokenize: -1})
	l := e.app.Limiter
	l.Card.Max, l.Client.Max, l.Merchant.Max, l.Global.Max = 0, 0, 0, 0
	requestsPerOp := map[string]uint64{"sessions": 1, "page": 1, "pay": 4, "challenge": 7, "detokenize": 1, "refund": 1}
	for _, scenario := range []string{"sessions", "page", "pay", "challenge", "detokenize", "refund", "sale"} {
		t.Run(scenario, func(t *testing.T) {
			before := countAudit(t, e, "detokenize")
			rep, err := load.Run(context.Background(), e.loadConfig(scenario, 4))
			if err != nil {
				t.Fatal(err)
			}
			tot := rep.Total
			if tot.Ops == 0 || tot.Errors != 0 {
				t.Fatalf("ops %d, errors %v", tot.Ops, tot.ErrorsBy)
			}
			if n, ok := requestsPerOp[scenario]; ok && tot.Requests != n*tot.Ops {
				t.Errorf("%d requests for %d operations, want %d each", tot.Requests, tot.Ops, n)
			}
			if s := rep.Server; s == nil || s.ResidentEndMB <= 0 || s.CPUCores <= 0 {
				t.Errorf("server use: %+v", s)
			}
			if scenario == "sale" {
				for kind := range load.DefaultMix {
					if rep.Kinds[kind].Ops == 0 {
						t.Errorf("the sale ran no %s: %v", kind, rep.Kinds)
					}
				}
			}
			// Every detokenize counted left its audit record.
			det := rep.Total.Ops
			if scenario == "sale" {
				det = rep.Kinds["detokenize"].Ops
			}
			if scenario == "detokenize" || scenario == "sale" {
				if got := countAudit(t, e, "detokenize") - before; got < int(det) {
					t.Errorf("%d detokenize audit records for %d calls", got, det)
				}
			}
		})
	}
}

func countAudit(t *testing.T, e *env, action string) int {
	n := 0
	for _, ev := range e.auditTrail() {
		if ev.Action == action && ev.Outcome == audit.Success {
			n++
		}
	}
	return n
}

// TestLoadToolNamesTheLimits: a load run that meets the limits counts the
// 429s by step and names the setting that turns each off.
func TestLoadToolNamesTheLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server (skipped with -short)")
	}
	cases := []struct{ scenario, key, setting string }{
		{"pay", "submit 429", "--limit-client-per-hour 0"},
		{"detokenize", "detokenize 429 rate_limited", "--detokenize-per-second 0"},
	}
	for _, c := range cases {
		t.Run(c.scenario, func(t *testing.T) {
			e := newEnv(t, envOpts{store: redisURL(t), detokenize: 5})
			cfg := e.loadConfig(c.scenario, 2)
			if c.scenario == "detokenize" { // tokens made with the page's limits off
				e.app.Limiter.Client.Max = 0
				cfg.Pool = 2
			}
			rep, err := load.Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for k := range rep.Total.ErrorsBy {
				found = found || strings.HasPrefix(k, c.key)
			}
			advice := strings.Join(rep.Advice, "\n")
			if !found || !strings.Contains(advice, c.setting) || !strings.Contains(advice, load.ServeForLoad) {
				t.Fatalf("errors %v, advice:\n%s", rep.Total.ErrorsBy, advice)
			}
		})
	}
}

// TestProfilesOnTheMetricsListener: --pprof serves Go's profiles beside
// /metrics and never on the public listener; without it, nowhere.
func TestProfilesOnTheMetricsListener(t *testing.T) {
	get := func(u string) (int, string) { return httpGet(t, u) }
	on := newEnv(t, envOpts{metrics: true, pprof: true})
	if st, body := get(on.metrics + "/debug/pprof/"); st != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("profiles on the metrics listener: %d", st)
	}
	if st, body := get(on.metrics + "/debug/pprof/heap?debug=1"); st != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Fatalf("heap profile: %d", st)
	}
	if st, _ := get(on.url + "/debug/pprof/"); st != http.StatusNotFound {
		t.Errorf("profiles on the public listener: %d", st)
	}
	off := newEnv(t, envOpts{metrics: true})
	if st, _ := get(off.metrics + "/debug/pprof/"); st != http.StatusNotFound {
		t.Errorf("profiles without --pprof: %d", st)
	}
}

// TestDetokenizeCommands: with the processor's credentials cached, a
// detokenize costs Redis one command of each kind: the rate's spend
// (EVALSHA), the token's record (GET) and its audit entry (XADD), the spend
// and the read sent together; the processor's record is read once for all.
func TestDetokenizeCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server (skipped with -short)")
	}
	srv := redistest.Start(t)
	e := newEnv(t, envOpts{store: srv.URL(), detokenize: 1_000_000, poll: time.Hour})
	l := e.app.Limiter
	l.Card.Max, l.Client.Max, l.Merchant.Max, l.Global.Max = 0, 0, 0, 0
	id := e.session(nil)["id"].(string)
	e.browser().pay(id, "4242 4242 4242 4242", "981")
	_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
	token := s["payment"].(map[string]any)["card"].(map[string]any)["token"].(string)
	if st, _, _ := e.api("POST", "/v1/detokenize", e.procKey, map[string]string{"token": token}); st != http.StatusOK {
		t.Fatalf("detokenize: %d", st)
	}
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer c.Close()
	if err := c.ConfigResetStat(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	const calls = 200
	for range calls {
		if st, _, _ := e.api("POST", "/v1/detokenize", e.procKey, map[string]string{"token": token}); st != http.StatusOK {
			t.Fatalf("detokenize: %d", st)
		}
	}
	// Redis counts the commands a script runs too: the spend's script reads
	// and writes its bucket (a GET and a SET inside the EVALSHA).
	want := map[string]int{"evalsha": calls, "get": 2 * calls, "set": calls, "xadd": calls, "config|resetstat": 1}
	if stats := commandStats(t, c); !maps.Equal(stats, want) {
		t.Errorf("%d calls: commands %v, want %v", calls, stats, want)
	}
}
