package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/paypage/paypage/internal/app"
)

// Config is every setting, from flags or environment variables.
type Config = app.Config

// setting describes one flag and its environment variable.
type setting struct {
	flag, env, def, help string
}

var settings = []setting{
	{"addr", "PAYPAGE_ADDR", "127.0.0.1:8080", "address to listen on"},
	{"metrics-addr", "PAYPAGE_METRICS_ADDR", "", "serve /metrics on this address instead of on --addr (keep it off the public network)"},
	{"data", "PAYPAGE_DATA", "./data", "data directory (embedded store, development key)"},
	{"store", "PAYPAGE_STORE", "bolt", "bolt, or a Redis URL (redis://, rediss://, redis+cluster://, ?master_name= for Sentinel)"},
	{"public-url", "PAYPAGE_PUBLIC_URL", "", "base URL shoppers reach (default http:// + addr)"},
	{"master-key-file", "PAYPAGE_MASTER_KEY_FILE", "", "file holding the key-encrypting key as 64 hex characters (default: a development key in the data directory)"},
	{"trust-proxy", "PAYPAGE_TRUST_PROXY", "false", "take the client address from X-Forwarded-For (behind a proxy)"},
	{"log-level", "PAYPAGE_LOG_LEVEL", "info", "debug, info, warn or error"},
	{"webhook-allow-private", "PAYPAGE_WEBHOOK_ALLOW_PRIVATE", "false", "allow webhook delivery to loopback and private addresses (development, tests)"},
	{"webhook-schedule", "PAYPAGE_WEBHOOK_SCHEDULE", "5s,30s,2m,10m,30m,1h,2h,4h,8h,12h,24h,24h,24h", "webhook retry delays, comma separated"},
}

// parseConfig reads flags, falling back to the environment (through getenv,
// which tests replace), then to the defaults.
func parseConfig(name string, args []string, getenv func(string) string, extra func(*flag.FlagSet)) (Config, *flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	vals := map[string]*string{}
	for _, s := range settings {
		def := s.def
		if v := getenv(s.env); v != "" {
			def = v
		}
		vals[s.flag] = fs.String(s.flag, def, s.help+" ["+s.env+"]")
	}
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, fs, err
	}
	c := Config{
		Addr: *vals["addr"], MetricsAddr: *vals["metrics-addr"], Data: *vals["data"], Store: *vals["store"], PublicURL: *vals["public-url"],
		MasterKeyFile: *vals["master-key-file"], LogLevel: *vals["log-level"],
	}
	var err error
	if c.TrustProxy, err = strconv.ParseBool(*vals["trust-proxy"]); err != nil {
		return c, fs, fmt.Errorf("--trust-proxy: %w", err)
	}
	if c.WebhookAllowPrivate, err = strconv.ParseBool(*vals["webhook-allow-private"]); err != nil {
		return c, fs, fmt.Errorf("--webhook-allow-private: %w", err)
	}
	for _, p := range strings.Split(*vals["webhook-schedule"], ",") {
		d, err := time.ParseDuration(strings.TrimSpace(p))
		if err != nil || d <= 0 {
			return c, fs, fmt.Errorf("--webhook-schedule: %q is not a positive duration", p)
		}
		c.WebhookSchedule = append(c.WebhookSchedule, d)
	}
	c.MasterKey = getenv("PAYPAGE_MASTER_KEY")
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Addr
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	return c, fs, nil
}
