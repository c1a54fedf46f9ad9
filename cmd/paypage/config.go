package main

import (
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/paypage/paypage/internal/app"
	"github.com/paypage/paypage/pkg/clientaddr"
)

// Config is every setting, from flags or environment variables.
type Config = app.Config

// setting is one flag and its environment variable. set parses a value into
// the config; it is called with the default, then the environment's value,
// then the flag's, so the last one given wins.
type setting struct {
	flag, env, def, help string
	arg                  string // the value's name in help ("ADDR"); "" for a boolean
	set                  func(c *Config, v string) error
}

// isBool reports whether the setting is a real boolean: --flag alone means true.
func (s *setting) isBool() bool { return s.arg == "" }

// settings are the ones every subcommand accepts. Each subcommand's help
// shows the ones it reads (commands.go).
var settings = []*setting{
	{flag: "addr", env: "PAYPAGE_ADDR", def: "127.0.0.1:8080", arg: "ADDR", help: "address to listen on (127.0.0.1:0 picks a free port)",
		set: func(c *Config, v string) error { c.Addr = v; return nil }},
	{flag: "metrics-addr", env: "PAYPAGE_METRICS_ADDR", def: "127.0.0.1:9090", arg: "ADDR", help: "serve /metrics on this address, alone (never on --addr); off: no metrics",
		set: func(c *Config, v string) error {
			if c.MetricsAddr = v; v == "off" {
				c.MetricsAddr = ""
			}
			return nil
		}},
	{flag: "processor-addr", env: "PAYPAGE_PROCESSOR_ADDR", arg: "ADDR", help: "serve the processor API (/v1/detokenize) on this address, alone, and not on --addr, so a firewall or network policy can open it to the processor's network only (default: on --addr)",
		set: func(c *Config, v string) error { c.ProcessorAddr = v; return nil }},
	{flag: "pprof", env: "PAYPAGE_PPROF", def: "false", help: "serve Go's profiles (/debug/pprof/) on --metrics-addr beside /metrics, for go tool pprof; only with --metrics-addr on a loopback address, never on --addr",
		set: func(c *Config, v string) (err error) { c.Pprof, err = parseBool(v); return err }},
	{flag: "data", env: "PAYPAGE_DATA", def: "./data", arg: "DIR", help: "data directory: the embedded store, the operator socket, the development key",
		set: func(c *Config, v string) error { c.Data = v; return nil }},
	{flag: "store", env: "PAYPAGE_STORE", def: "bolt", arg: "URL", help: "bolt, or a Redis URL (redis://, rediss://, redis+cluster://, ?master_name= for Sentinel)",
		set: func(c *Config, v string) error { c.Store = v; return nil }},
	{flag: "store-ca", env: "PAYPAGE_STORE_CA", arg: "FILE", help: "PEM file of the CA a rediss:// store's certificate is checked against, for Redis alone (default: the system's roots)",
		set: func(c *Config, v string) error { c.StoreCA = v; return nil }},
	{flag: "public-url", env: "PAYPAGE_PUBLIC_URL", arg: "URL", help: "base URL shoppers reach (default http:// + addr; https:// + addr with --tls-cert, https:// + the name with --acme-domain)",
		set: func(c *Config, v string) error { c.PublicURL = v; return nil }},
	{flag: "master-key-file", env: "PAYPAGE_MASTER_KEY_FILE", arg: "FILE", help: "file holding the key-encrypting key as 64 hex characters (PAYPAGE_MASTER_KEY, the key itself, wins over it)",
		set: func(c *Config, v string) error { c.MasterKeyFile = v; return nil }},
	{flag: "trusted-proxies", env: "PAYPAGE_TRUSTED_PROXIES", arg: "CIDRS", help: "the proxies whose X-Forwarded-For is believed: CIDR ranges or addresses, comma separated (default none: the header is ignored)",
		set: func(c *Config, v string) (err error) { c.TrustedProxies, err = clientaddr.ParsePrefixes(v); return err }},
	{flag: "tls-cert", env: "PAYPAGE_TLS_CERT", arg: "FILE", help: "serve TLS with this certificate (PEM, the chain after the leaf), read again on SIGHUP; with --tls-key",
		set: func(c *Config, v string) error { c.TLSCert = v; return nil }},
	{flag: "tls-key", env: "PAYPAGE_TLS_KEY", arg: "FILE", help: "the TLS certificate's private key (PEM), read again on SIGHUP",
		set: func(c *Config, v string) error { c.TLSKey = v; return nil }},
	{flag: "acme-domain", env: "PAYPAGE_ACME_DOMAIN", arg: "NAME", help: "serve TLS with a certificate from Let's Encrypt for this name (TLS-ALPN-01 on --addr, which must be reachable on port 443; cached in the data directory)",
		set: func(c *Config, v string) error { c.ACMEDomain = v; return nil }},
	{flag: "max-connections", env: "PAYPAGE_MAX_CONNECTIONS", def: "1024", arg: "N", help: "connections held at once on --addr and --processor-addr together (about 20 KiB each idle, more with a long header half sent); at the cap the longest idle keep-alive is closed, else new ones wait (0: no bound)",
		set: func(c *Config, v string) error { n, err := parseLimit(v); c.MaxConnections = int(n); return err }},
	{flag: "max-connections-per-address", env: "PAYPAGE_MAX_CONNECTIONS_PER_ADDRESS", def: "128", arg: "N", help: "connections one peer address (or IPv6 /64) may hold at once; past it a new one is closed at once. --trusted-proxies are not bound by it (0: no bound)",
		set: func(c *Config, v string) error {
			n, err := parseLimit(v)
			c.MaxConnectionsPerAddress = int(n)
			return err
		}},
	{flag: "limit-refusals-per-minute", env: "PAYPAGE_LIMIT_REFUSALS_PER_MINUTE", def: "30", arg: "N", help: "refused API calls (no key, a wrong key, a refused detokenize) one address (or IPv6 /64) may make in a minute; past it 429 before any lookup (0: no limit)",
		set: func(c *Config, v string) (err error) { c.RefusalsPerMinute, err = parseLimit(v); return err }},
	{flag: "audit-max-records", env: "PAYPAGE_AUDIT_MAX_RECORDS", def: "1000000", arg: "N", help: "cap the audit trail at this many records by removing the oldest that \"audit export\" has written out; records not exported are never removed (0: no cap)",
		set: func(c *Config, v string) error { n, err := parseLimit(v); c.AuditMaxRecords = int(n); return err }},
	{flag: "unseal-shares", env: "PAYPAGE_UNSEAL_SHARES", arg: "K", help: "start sealed, without a master key file: the key is rebuilt from K custodians' shares (paypage keys split, then paypage unseal)",
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 2 || n > 255 {
				return fmt.Errorf("%q is not a number of shares from 2 to 255", v)
			}
			c.UnsealShares = n
			return nil
		}},
	{flag: "key-seal-budget", env: "PAYPAGE_KEY_SEAL_BUDGET", def: "1073741824", arg: "N", help: "values one data key may seal (AES-GCM random nonces); the service rotates the key at seven eighths of it",
		set: func(c *Config, v string) error {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n < 1024 {
				return fmt.Errorf("%q is not a number of seals of at least 1024", v)
			}
			c.KeySealBudget = n
			return nil
		}},
	{flag: "log-level", env: "PAYPAGE_LOG_LEVEL", def: "info", arg: "LEVEL", help: "debug, info, warn or error",
		set: func(c *Config, v string) error {
			switch v {
			case "debug", "info", "warn", "error":
				c.LogLevel = v
				return nil
			}
			return fmt.Errorf("%q is not a level: use debug, info, warn or error", v)
		}},
	{flag: "limit-card-per-day", env: "PAYPAGE_LIMIT_CARD_PER_DAY", def: "10", arg: "N", help: "card submissions a day per card, across shops; the sandbox cards are not counted (0: no limit)",
		set: func(c *Config, v string) (err error) { c.LimitCardPerDay, err = parseLimit(v); return err }},
	{flag: "limit-client-per-hour", env: "PAYPAGE_LIMIT_CLIENT_PER_HOUR", def: "20", arg: "N", help: "card submissions an hour per client address (0: no limit)",
		set: func(c *Config, v string) (err error) { c.LimitClientPerHour, err = parseLimit(v); return err }},
	{flag: "limit-network-per-hour", env: "PAYPAGE_LIMIT_NETWORK_PER_HOUR", def: "100", arg: "N", help: "card and Kaspi submissions an hour from one IPv6 /48 (65,536 /64s, each a client of its own), beside --limit-client-per-hour; IPv4 clients are counted by address alone (0: no limit)",
		set: func(c *Config, v string) (err error) { c.LimitNetworkPerHour, err = parseLimit(v); return err }},
	{flag: "limit-merchant-per-minute", env: "PAYPAGE_LIMIT_MERCHANT_PER_MINUTE", def: "600", arg: "N", help: "card submissions a minute to one merchant's pages, from every address and card: what a distributed card-testing run cannot spread under (0: no limit)",
		set: func(c *Config, v string) (err error) { c.LimitMerchantPerMinute, err = parseLimit(v); return err }},
	{flag: "limit-global-per-minute", env: "PAYPAGE_LIMIT_GLOBAL_PER_MINUTE", def: "6000", arg: "N", help: "card submissions a minute to every merchant's pages together (0: no limit)",
		set: func(c *Config, v string) (err error) { c.LimitGlobalPerMinute, err = parseLimit(v); return err }},
	{flag: "detokenize-per-second", env: "PAYPAGE_DETOKENIZE_PER_SECOND", def: "200", arg: "N", help: "detokenize calls a second per processor, shared by every replica; a processor's own --rate wins (0: no limit)",
		set: func(c *Config, v string) (err error) { c.DetokenizePerSecond, err = parseLimit(v); return err }},
	{flag: "webhook-allow-private", env: "PAYPAGE_WEBHOOK_ALLOW_PRIVATE", def: "false", help: "allow webhook delivery to loopback and private addresses (development, tests)",
		set: func(c *Config, v string) (err error) { c.WebhookAllowPrivate, err = parseBool(v); return err }},
	{flag: "webhook-timeout", env: "PAYPAGE_WEBHOOK_TIMEOUT", def: "10s", arg: "DURATION", help: "how long one webhook delivery try may take; the try holds its event this long and 5 s more, then another replica may take it",
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil || d <= 0 || d > time.Minute {
				return fmt.Errorf("%q is not a duration from 1ms to 1m", v)
			}
			c.WebhookTimeout = d
			return nil
		}},
	{flag: "webhook-schedule", env: "PAYPAGE_WEBHOOK_SCHEDULE", def: "5s,30s,2m,10m,30m,1h,2h,4h,8h,12h,24h,24h,24h", arg: "LIST", help: "webhook retry delays, comma separated",
		set: func(c *Config, v string) error {
			c.WebhookSchedule = nil
			for _, p := range strings.Split(v, ",") {
				d, err := time.ParseDuration(strings.TrimSpace(p))
				if err != nil || d <= 0 {
					return fmt.Errorf("%q is not a positive duration", p)
				}
				c.WebhookSchedule = append(c.WebhookSchedule, d)
			}
			return nil
		}},
	{flag: "card-retention-unused", env: "PAYPAGE_CARD_RETENTION_UNUSED", def: "1h", arg: "DURATION", help: "delete a sealed card that paid nothing (declined, abandoned) this long after it was entered",
		set: func(c *Config, v string) (err error) { c.CardRetentionUnused, err = parsePeriod(v); return err }},
	{flag: "card-retention", env: "PAYPAGE_CARD_RETENTION", def: "400d", arg: "DURATION", help: "delete a card that paid this long after its payment's last change (refunds included): long enough for chargebacks",
		set: func(c *Config, v string) (err error) { c.CardRetention, err = parsePeriod(v); return err }},
	{flag: "record-retention", env: "PAYPAGE_RECORD_RETENTION", def: "400d", arg: "DURATION", help: "delete ended sessions, their payments and attempts, and webhook events this long after their last change",
		set: func(c *Config, v string) (err error) { c.RecordRetention, err = parsePeriod(v); return err }},
}

// parsePeriod reads a retention period: a Go duration ("90m", "36h") or a
// number of days ("400d").
func parsePeriod(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.Atoi(days)
		if err == nil && n > 0 && n <= 100*365 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("%q is not a positive period: write it as a Go duration (36h) or in days (400d)", v)
}

// settingNamed returns the setting of a flag name.
func settingNamed(name string) *setting {
	for _, s := range settings {
		if s.flag == name {
			return s
		}
	}
	panic("no setting " + name)
}

// parseBool reads a boolean setting: true, false, 1 or 0, nothing else.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean: use true, false, 1 or 0", v)
}

// parseLimit reads a limit: a whole number, 0 for none. The app takes a
// negative number for none (its zero value is the default).
func parseLimit(v string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a limit: use a whole number, 0 for none", v)
	}
	if n == 0 {
		return -1, nil
	}
	return n, nil
}

// settingFlag is a setting as a flag.Value.
type settingFlag struct {
	s   *setting
	c   *Config
	raw string
}

func (f *settingFlag) String() string { return f.raw }

func (f *settingFlag) Set(v string) error {
	if err := f.s.set(f.c, v); err != nil {
		return err
	}
	f.raw = v
	return nil
}

// IsBoolFlag lets a boolean setting stand alone on the command line.
func (f *settingFlag) IsBoolFlag() bool { return f.s != nil && f.s.isBool() }

// addSettings fills c with the defaults and the environment (through getenv,
// which tests replace), and adds every setting to fs, so flags parsed later
// win. A bad environment value is an error that names the variable; every
// setting is added all the same, so that --help works whatever the
// environment holds, and a flag given for that setting makes up for it
// (envErrors.unless).
func addSettings(fs *flag.FlagSet, c *Config, getenv func(string) string) envErrors {
	var bad envErrors
	for _, s := range settings {
		if s.def != "" {
			if err := s.set(c, s.def); err != nil {
				panic("default of --" + s.flag + ": " + err.Error())
			}
		}
		raw := s.def
		if v := getenv(s.env); v != "" {
			if err := s.set(c, v); err != nil {
				bad = append(bad, envError{flag: s.flag, err: fmt.Errorf("%s: %w", s.env, err)})
			} else {
				raw = v
			}
		}
		fs.Var(&settingFlag{s: s, c: c, raw: raw}, s.flag, s.help+" ["+s.env+"]")
	}
	return bad
}

// envError is a setting's bad environment value.
type envError struct {
	flag string
	err  error
}

// envErrors are the bad environment values found.
type envErrors []envError

// unless returns the first error of a setting that fs was not given as a
// flag, once fs has been parsed; nil when there is none.
func (es envErrors) unless(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, e := range es {
		if !given[e.flag] {
			return e.err
		}
	}
	return nil
}

// finishConfig derives what the settings leave implicit, once flags are parsed.
func finishConfig(c *Config, getenv func(string) string) {
	c.MasterKey = getenv("PAYPAGE_MASTER_KEY")
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Addr
		if c.TLSCert != "" {
			c.PublicURL = "https://" + c.Addr
		} else if c.ACMEDomain != "" {
			c.PublicURL = "https://" + c.ACMEDomain
		}
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
}

// parseConfig reads the settings alone from args and the environment.
func parseConfig(args []string, getenv func(string) string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("paypage", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bad := addSettings(fs, &c, getenv)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := bad.unless(fs); err != nil {
		return c, err
	}
	finishConfig(&c, getenv)
	return c, c.CheckPprof()
}

// printSettings writes a table of settings for help.
func printSettings(w io.Writer, list []*setting) {
	for _, s := range list {
		name := "--" + s.flag
		if !s.isBool() {
			name += " " + s.arg
		}
		def := s.def
		if def == "" {
			def = "none"
		}
		fmt.Fprintf(w, "  %-28s %-31s default %s\n      %s\n", name, s.env, def, s.help)
	}
}
