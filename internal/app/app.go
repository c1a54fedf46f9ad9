// Package app wires paypage: it opens the store and the vault, builds the
// services with their sandbox connectors and the web server, and runs them.
// The paypage command and the end-to-end tests both start here.
package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/paypage/paypage/pkg/account"
	"github.com/paypage/paypage/pkg/audit"
	"github.com/paypage/paypage/pkg/due"
	"github.com/paypage/paypage/pkg/idempotency"
	"github.com/paypage/paypage/pkg/kaspi"
	"github.com/paypage/paypage/pkg/limit"
	"github.com/paypage/paypage/pkg/payment"
	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/bolt"
	"github.com/paypage/paypage/pkg/store/redis"
	"github.com/paypage/paypage/pkg/threeds"
	"github.com/paypage/paypage/pkg/vault"
	"github.com/paypage/paypage/pkg/web"
	"github.com/paypage/paypage/pkg/webhook"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is every setting of a paypage process.
type Config struct {
	Addr        string
	MetricsAddr string // where /metrics is served, alone; empty: nowhere
	// ProcessorAddr is where the processor API (/v1/detokenize) is served,
	// alone and then nowhere else; empty: on Addr beside the rest.
	ProcessorAddr string
	// Pprof serves Go's profiles at /debug/pprof/ beside /metrics (never
	// on the public listener); it needs MetricsAddr on a loopback address.
	Pprof         bool
	Data          string
	Store         string // "bolt" or a Redis URL
	StoreCA       string // a PEM file: the CA a rediss:// store is checked against, for Redis alone ("": the system's roots)
	PublicURL     string
	MasterKeyFile string
	MasterKey     string // the key itself in hex, from PAYPAGE_MASTER_KEY (never a flag: flags show in ps)
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	LogLevel       string
	// RefusalsPerMinute bounds the refused API calls of one source a minute
	// (zero: 30; negative: no bound).
	RefusalsPerMinute int64
	// AuditMaxRecords caps the audit trail by its exported records (zero:
	// a million; negative: no cap).
	AuditMaxRecords int
	// MaxConnections bounds the connections the process holds on its
	// public and processor listeners together, MaxConnectionsPerAddress
	// those of one peer (an IPv6 /64; trusted proxies count toward the
	// first only): zero for the defaults (1,024 and 128), negative for no
	// bound (pkg/connlimit).
	MaxConnections, MaxConnectionsPerAddress int
	// TLSCert and TLSKey are PEM files the process serves TLS with (read
	// again on SIGHUP); ACMEDomain instead gets a certificate from Let's
	// Encrypt for that name. Neither: plain HTTP, behind a TLS proxy.
	TLSCert, TLSKey, ACMEDomain string

	WebhookAllowPrivate bool
	WebhookSchedule     []time.Duration
	// Limits. Zero means the default (10 a card a day, 20 a client address
	// an hour, 200 detokenize calls a second per processor); a negative
	// number turns one off (the settings' 0).
	LimitCardPerDay    int64
	LimitClientPerHour int64
	// LimitNetworkPerHour bounds the submissions of one IPv6 /48 an hour
	// (100), which holds 65,536 client /64s.
	LimitNetworkPerHour int64
	// Card submissions a minute to one merchant's pages, and to all (600,
	// 6,000): a distributed card-testing run spreads over addresses and
	// cards, not over merchants.
	LimitMerchantPerMinute int64
	LimitGlobalPerMinute   int64
	DetokenizePerSecond    int64
	WebhookTimeout         time.Duration // one delivery try; zero: 10 seconds
	// Timing of attempts in flight; zero: payment.DefaultTiming (tests shorten it).
	Timing payment.Timing
	// Retention: a card that paid nothing is deleted CardRetentionUnused
	// after it was sealed (1 hour), one that paid CardRetention after its
	// payment's last change (400 days); sessions, payments and events
	// RecordRetention after their last change (400 days). Zero: the default.
	// NoReconciler leaves the reconciler off on this replica: it serves,
	// and other replicas drive what is due (tests, or a replica kept for
	// pages only).
	NoReconciler        bool
	CardRetentionUnused time.Duration
	CardRetention       time.Duration
	RecordRetention     time.Duration
	// WrapProcessor, when set, puts a line between the payments and the
	// sandbox processor (tests use it to lose answers on the way).
	WrapProcessor func(processor.Processor) processor.Processor
	// UnsealShares, when set, is how many custodians' key shares unseal the
	// service: it starts sealed, without a master key file.
	UnsealShares int
	// KeySealBudget is how many values one data key seals before the
	// service rotates it (0: vault.DefaultSealBudget).
	KeySealBudget uint64
}

// App is the opened store, keys and services.
type App struct {
	cfg      Config
	log      *slog.Logger
	store    store.Store
	Vault    *vault.Vault
	Accounts *account.Service
	Audit    *audit.Log
	Refusals *audit.Refusals
	Payments *payment.Service
	Limiter  *limit.Submissions
	ACS      *threeds.Sandbox
	Kaspi    *kaspi.Sandbox
	Sandbox  *processor.Sandbox
	Webhooks *webhook.Worker
	Runner   *due.Runner
	Idem     *idempotency.Keys
	Registry *prometheus.Registry
	Web      *web.Server

	certs *certFiles // the certificate served, when it comes from files
	clock atomic.Pointer[func() time.Time]
}

// Store returns the opened store.
func (a *App) Store() store.Store { return a.store }

// Open opens the store and the vault, in that order, and builds the services
// and the web server on them; Close undoes it.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	a, err := open(ctx, cfg, log, true)
	if err != nil {
		return nil, err
	}
	if err := a.build(); err != nil {
		a.Close()
		return nil, err
	}
	a.Registry.MustRegister(a.vaultCollectors()...)
	a.Refusals = audit.NewRefusals(a.Audit, refusalWindow, refusalSources, log)
	a.Web, err = web.New(web.Config{PublicURL: cfg.PublicURL, TrustedProxies: cfg.TrustedProxies, DetokenizePerSecond: cfg.DetokenizePerSecond,
		RefusalsPerMinute: setting(cfg.RefusalsPerMinute, 30), ProcessorElsewhere: cfg.ProcessorAddr != ""}, web.Deps{
		Store: a.store, Payments: a.Payments, Accounts: a.Accounts, Vault: a.Vault, Audit: a.Audit, Refusals: a.Refusals,
		ACS: a.ACS, KaspiApp: a.Kaspi, Events: a.Webhooks, Idem: a.Idem, Registry: a.Registry, Logger: log, CSRFTags: a.Vault.CSRFTags,
	})
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// Refused calls are summed up in the audit trail per source a minute, for
// at most this many sources a minute (the rest in one record).
const (
	refusalWindow  = time.Minute
	refusalSources = 1000
)

// OpenVault opens only the store and the vault: what the operator's
// subcommands need. It never makes a master key: without one it fails,
// saying how to give it one.
func OpenVault(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	a, err := open(ctx, cfg, log, false)
	if err != nil {
		return nil, err
	}
	if a.Webhooks, err = a.newWorker(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// open opens the store and the vault; service says whether this is the
// service, the only process that may make a development master key.
func open(ctx context.Context, cfg Config, log *slog.Logger, service bool) (*App, error) {
	if err := cfg.checkTLS(); err != nil {
		return nil, err
	}
	if err := cfg.CheckPprof(); err != nil {
		return nil, err
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://" + cfg.Addr
		if cfg.TLSEnabled() {
			cfg.PublicURL = "https://" + cfg.Addr
		}
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if cfg.TLSEnabled() && !strings.HasPrefix(cfg.PublicURL, "https://") {
		return nil, fmt.Errorf("TLS is served here, so the public URL must be https://, not %q", cfg.PublicURL)
	}
	a := &App{cfg: cfg, log: log}
	now := time.Now
	a.clock.Store(&now)
	var err error
	if cfg.Store == "bolt" || cfg.Store == "" {
		if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		a.store, err = bolt.Open(filepath.Join(cfg.Data, "paypage.db"))
	} else if strings.HasPrefix(cfg.Store, "redis") {
		redis.SetLogger(log)
		a.store, err = openRedis(ctx, cfg)
	} else {
		err = fmt.Errorf("--store: %q is neither bolt nor a redis:// URL", cfg.Store)
	}
	if err != nil {
		return nil, err
	}
	if err := a.openVault(ctx, service); err != nil {
		a.store.Close()
		return nil, err
	}
	a.Vault.Now = a.now
	a.Accounts = account.New(a.store, a.Vault)
	a.Accounts.Now = a.now
	a.Audit = audit.New(a.store)
	a.Audit.Now = a.now
	a.Audit.Keep = int(setting(int64(cfg.AuditMaxRecords), 1_000_000))
	return a, nil
}

// ErrNoMasterKey is why a process with neither a master key nor the right
// to a development one refuses to start, and how to make one.
var ErrNoMasterKey = errors.New("no master key: make one with \"openssl rand -hex 32 > master.key; chmod 600 master.key\" " +
	"and set --master-key-file (PAYPAGE_MASTER_KEY_FILE) to it, or PAYPAGE_MASTER_KEY to its 64 hex characters; " +
	"a development key is made only by paypage serve, for a new embedded store served on a loopback address over plain http, with no trusted proxy")

// errOperatorNoKey is an operator command's error when it has no master
// key: it never makes one, since the store it opens may be sealed by
// another (the service's, given in the service's environment).
var errOperatorNoKey = errors.New("no master key: an operator command never makes one; give it the service's, " +
	"with --master-key-file (PAYPAGE_MASTER_KEY_FILE) or PAYPAGE_MASTER_KEY, or run it while the service runs, so that it goes " +
	"through the operator socket; a new deployment makes its key with \"openssl rand -hex 32 > master.key; chmod 600 master.key\" " +
	"(in development, paypage serve makes one on its first start)")

// devKeyAllowed reports whether a development master key may be made (or
// used) beside the data: only for the embedded store, served over plain
// http on loopback addresses alone, with no proxy trusted, so nothing that
// others reach or that several replicas share runs on a key that sits
// beside the data.
func (a *App) devKeyAllowed() bool {
	c := a.cfg
	if storeKind(c.Store) != "bolt" || c.TLSEnabled() || len(c.TrustedProxies) > 0 || !strings.HasPrefix(c.PublicURL, "http://") {
		return false
	}
	for _, addr := range []string{c.Addr, c.ProcessorAddr} {
		if addr != "" && !loopback(addr) {
			return false
		}
	}
	return true
}

// CheckPprof refuses profiles served anywhere but on a loopback metrics
// address: a profile shows the process's memory and its command line, for
// this machine's operator alone.
func (c Config) CheckPprof() error {
	switch {
	case !c.Pprof:
		return nil
	case c.MetricsAddr == "":
		return errors.New("--pprof (PAYPAGE_PPROF) serves the profiles on the metrics listener: give --metrics-addr (PAYPAGE_METRICS_ADDR) a loopback address, 127.0.0.1:9090")
	case !loopback(c.MetricsAddr):
		return fmt.Errorf("--pprof (PAYPAGE_PPROF) needs --metrics-addr (PAYPAGE_METRICS_ADDR) on a loopback address (127.0.0.0/8, [::1], localhost), not %q: turn --pprof off or listen on 127.0.0.1", c.MetricsAddr)
	}
	return nil
}

// loopback reports whether a listen address is on a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// openVault opens the vault with the master key, or, with --unseal-shares,
// leaves it sealed until the custodians' shares unseal it. service says
// whether this is the service, the only process that may make a
// development master key.
func (a *App) openVault(ctx context.Context, service bool) error {
	opts := vault.Options{SealBudget: a.cfg.KeySealBudget, Logger: a.log, UnsealThreshold: a.cfg.UnsealShares,
		CardReview: a.cfg.retention().cardUnused, TombstoneTTL: a.cfg.retention().records, OnBudgetRotation: a.auditBudgetRotation}
	if path := a.masterKeyPath(); path != "" {
		// After keys rewrap elsewhere, a replica whose key file now holds
		// the new key picks it up without a restart.
		opts.ReloadKEK = func() (vault.KEK, error) { return vault.LoadKEKFile(path) }
	}
	if a.cfg.UnsealShares > 0 {
		if a.cfg.MasterKey != "" || a.cfg.MasterKeyFile != "" {
			return errors.New("--unseal-shares replaces the master key: set it, or --master-key-file / PAYPAGE_MASTER_KEY, not both")
		}
		a.Vault = vault.NewSealed(a.store, opts)
		return nil
	}
	kek, err := a.loadKEK(ctx, service)
	if err != nil {
		return err
	}
	a.Vault, err = vault.OpenWith(ctx, a.store, kek, opts)
	return err
}

// masterKeyPath is the file the master key is read from ("" when it comes
// from the environment or from custodians' shares).
func (a *App) masterKeyPath() string {
	switch {
	case a.cfg.MasterKey != "" || a.cfg.UnsealShares > 0:
		return ""
	case a.cfg.MasterKeyFile != "":
		return a.cfg.MasterKeyFile
	case a.devKeyAllowed():
		return filepath.Join(a.cfg.Data, "master.key")
	}
	return ""
}

// loadKEK reads the master key, or in development the one beside the data.
// Only the service (service) makes that one, only for a store that holds
// no keyring yet, and says so loudly.
func (a *App) loadKEK(ctx context.Context, service bool) (*vault.LocalKEK, error) {
	if a.cfg.MasterKey != "" {
		k, err := vault.ParseKEK(a.cfg.MasterKey)
		if err != nil {
			return nil, fmt.Errorf("PAYPAGE_MASTER_KEY: %w", err)
		}
		return k, nil
	}
	if a.cfg.MasterKeyFile != "" {
		return vault.LoadKEKFile(a.cfg.MasterKeyFile)
	}
	if !a.devKeyAllowed() {
		if !service {
			return nil, errOperatorNoKey
		}
		return nil, ErrNoMasterKey
	}
	path := filepath.Join(a.cfg.Data, "master.key")
	k, err := vault.LoadKEKFile(path)
	if err == nil {
		a.log.Warn("using the DEVELOPMENT MASTER KEY from the data directory; set --master-key-file in production", "path", path)
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if !service {
		return nil, errOperatorNoKey
	}
	sealed, err := vault.HasKeyring(ctx, a.store)
	if err != nil {
		return nil, err
	}
	if sealed {
		return nil, fmt.Errorf("the store's keys are sealed by a master key that is not given here, and no development key is made beside them: %w", ErrNoMasterKey)
	}
	if err := os.MkdirAll(a.cfg.Data, 0o700); err != nil {
		return nil, err
	}
	k, err = vault.GenerateKEKFile(path)
	if err == nil {
		a.log.Warn("DEVELOPMENT MASTER KEY generated beside the data: never do this in production; set --master-key-file", "path", path)
	}
	return k, err
}

// Close releases the store.
func (a *App) Close() error { return a.store.Close() }

// Config returns the settings the app runs with.
func (a *App) Config() Config { return a.cfg }

// retentions are the retention periods in force.
type retentions struct{ cardUnused, cardUsed, records time.Duration }

// retention reads the retention periods, defaults filled in.
func (c Config) retention() retentions {
	r := retentions{cardUnused: time.Hour, cardUsed: payment.DefaultRetention, records: payment.DefaultRetention}
	if c.CardRetentionUnused > 0 {
		r.cardUnused = c.CardRetentionUnused
	}
	if c.CardRetention > 0 {
		r.cardUsed = c.CardRetention
	}
	if c.RecordRetention > 0 {
		r.records = c.RecordRetention
	}
	return r
}
