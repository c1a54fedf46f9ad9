package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/paypage/paypage/internal/load"
)

// loadCmd drives a running service on this machine with load
// (internal/load) and reports what it measured.
type loadCmd struct {
	scenario, target, metrics   string
	processorTarget             string
	merchant, processor, tokens string
	mix, jsonOut                string
	concurrency, pool           int
	duration, warmup, sample    time.Duration
	idempotency                 bool
	floorRate                   float64
}

func (c *loadCmd) flags(fs *flag.FlagSet) {
	var names []string
	for _, s := range load.Scenarios {
		names = append(names, s.Name)
	}
	fs.StringVar(&c.scenario, "scenario", "sale", "what to run: "+strings.Join(names, ", "))
	fs.IntVar(&c.concurrency, "concurrency", 64, "concurrent clients, each with one operation in flight over its own connection")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "measured time")
	fs.DurationVar(&c.warmup, "warmup", 5*time.Second, "warm-up before it, not measured")
	fs.StringVar(&c.target, "target", "", "the service's base URL on a loopback address (default http:// and --addr; the floor server's for --scenario floor)")
	fs.StringVar(&c.processorTarget, "processor-target", "", "where the service answers detokenize (default http:// and --processor-addr when set, else the target)")
	fs.StringVar(&c.metrics, "metrics", "", "the service's metrics URL for its CPU and memory (default http:// and --metrics-addr and /metrics; off: none)")
	fs.StringVar(&c.merchant, "merchant", "", `a file holding what "paypage merchant add" printed (or the secret key alone)`)
	fs.StringVar(&c.processor, "processor", "", `a file holding what "paypage processor add --merchants MER --rate 0" printed (or the key alone), for detokenize`)
	fs.StringVar(&c.tokens, "tokens", "", "a file of tokens to detokenize, one a line (default: made through --pool card payments first)")
	fs.IntVar(&c.pool, "pool", 256, "sessions, tokens or payments the set-up makes for page, detokenize and refund")
	fs.StringVar(&c.mix, "mix", "", "the sale's weights, as page=40,pay=25,challenge=5,sessions=10,detokenize=15,refund=5 (the default)")
	fs.BoolVar(&c.idempotency, "idempotency", false, "send an Idempotency-Key with each session and refund, as a careful shop does")
	fs.Float64Var(&c.floorRate, "floor-rate", 0, "the floor server's operations a second in the same run, to state the figure as a share of it")
	fs.DurationVar(&c.sample, "sample", 5*time.Second, "how often to read the service's metrics")
	fs.StringVar(&c.jsonOut, "json", "", "also write the report as JSON to this file (-: JSON on stdout instead of the table)")
}

// run measures, then writes the report.
func (c *loadCmd) run(ctx context.Context, m *Main) error {
	cfg := load.Config{
		Target: c.target, MetricsURL: c.metrics, Scenario: c.scenario, Concurrency: c.concurrency,
		Duration: c.duration, Warmup: c.warmup, Pool: c.pool, Idempotency: c.idempotency,
		Sample: c.sample, FloorRate: c.floorRate, Progress: m.Stderr,
	}
	if cfg.Target == "" {
		cfg.Target = "http://" + m.Config.Addr
	}
	if cfg.ProcessorTarget = c.processorTarget; cfg.ProcessorTarget == "" && m.Config.ProcessorAddr != "" {
		cfg.ProcessorTarget = "http://" + m.Config.ProcessorAddr
	}
	switch {
	case cfg.MetricsURL == "off":
		cfg.MetricsURL = ""
	case cfg.MetricsURL == "" && m.Config.MetricsAddr != "" && c.scenario != "floor":
		cfg.MetricsURL = "http://" + m.Config.MetricsAddr + "/metrics"
	}
	var err error
	if cfg.MerchantKey, err = readKey(c.merchant); err != nil {
		return err
	}
	if cfg.ProcessorKey, err = readKey(c.processor); err != nil {
		return err
	}
	if c.tokens != "" {
		raw, err := os.ReadFile(c.tokens)
		if err != nil {
			return err
		}
		for _, t := range bytes.Fields(raw) {
			cfg.Tokens = append(cfg.Tokens, string(t))
		}
		if len(cfg.Tokens) == 0 {
			return fmt.Errorf("--tokens %s holds no tokens", c.tokens)
		}
	}
	if c.mix != "" {
		if cfg.Mix, err = parseMix(c.mix); err != nil {
			return usagef("--mix: %v", err)
		}
	}
	rep, err := load.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if c.jsonOut == "-" {
		return rep.WriteJSON(m.Stdout)
	}
	rep.WriteText(m.Stdout)
	if c.jsonOut != "" {
		f, err := os.Create(c.jsonOut)
		if err != nil {
			return err
		}
		if err := rep.WriteJSON(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	return nil
}

// readKey reads a secret key from a file: the JSON an add command printed,
// or the key alone. Keys go in files, not flags, which show in ps.
func readKey(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var out struct {
		SecretKey string `json:"secret_key"`
	}
	if json.Unmarshal(raw, &out) == nil && out.SecretKey != "" {
		return out.SecretKey, nil
	}
	if k := strings.TrimSpace(string(raw)); k != "" && !strings.ContainsAny(k, " \n{") {
		return k, nil
	}
	return "", fmt.Errorf("%s holds neither a secret key nor the JSON of an add command", path)
}

// parseMix reads "page=40,pay=25".
func parseMix(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, part := range strings.Split(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(w)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not scenario=weight", part)
		}
		out[name] = n
	}
	return out, nil
}
