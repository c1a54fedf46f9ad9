package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paypage/paypage/internal/app"
	"github.com/paypage/paypage/pkg/audit"
)

// paypage runs a subcommand against a data directory and decodes its JSON output.
func paypage(t *testing.T, env map[string]string, args ...string) (map[string]any, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errb)
	var v map[string]any
	_ = json.Unmarshal(out.Bytes(), &v)
	return v, out.String() + errb.String(), err
}

func TestOperatorCommands(t *testing.T) {
	env := map[string]string{"PAYPAGE_DATA": filepath.Join(t.TempDir(), "data")}
	// An operator command never makes a master key (only serve does, for a
	// new store): without one it fails, saying how to give it one.
	if _, out, err := paypage(t, env, "merchant", "add", "--name", "Air Astana"); err == nil || !strings.Contains(err.Error(), "never makes one") || !strings.Contains(err.Error(), "PAYPAGE_MASTER_KEY") {
		t.Fatalf("merchant add without a master key: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(env["PAYPAGE_DATA"], "master.key")); !os.IsNotExist(err) {
		t.Fatalf("an operator command wrote a master key: %v", err)
	}
	env["PAYPAGE_MASTER_KEY"] = strings.Repeat("6a", 32)
	m, out, err := paypage(t, env, "merchant", "add", "--name", "Air Astana", "--webhook-url", "https://shop.example/hooks")
	if err != nil || !strings.HasPrefix(m["id"].(string), "mer_") || !strings.HasPrefix(m["secret_key"].(string), "sk_") || !strings.HasPrefix(m["webhook_secret"].(string), "whsec_") {
		t.Fatalf("merchant add: %v %s", err, out)
	}
	// Only hashes are stored: the secret key is nowhere in the data directory.
	raw, _ := os.ReadFile(filepath.Join(env["PAYPAGE_DATA"], "paypage.db"))
	if bytes.Contains(raw, []byte(m["secret_key"].(string))) || bytes.Contains(raw, []byte(m["webhook_secret"].(string))) {
		t.Fatal("a secret is stored in plain text")
	}
	w, out, err := paypage(t, env, "merchant", "set-webhook", "--id", m["id"].(string), "--webhook-url", "https://shop.example/v2/hooks", "--roll-secret")
	if err != nil || w["webhook_url"] != "https://shop.example/v2/hooks" || !strings.HasPrefix(w["webhook_secret"].(string), "whsec_") || w["webhook_secret"] == m["webhook_secret"] {
		t.Fatalf("set-webhook: %v %s", err, out)
	}
	if _, out, err := paypage(t, env, "merchant", "set-webhook", "--id", "mer_nope", "--webhook-url", "https://x.example"); err == nil {
		t.Fatalf("set-webhook on an unknown merchant: %s", out)
	}
	p, out, err := paypage(t, env, "processor", "add", "--name", "Acquirer")
	if err != nil || !strings.HasPrefix(p["secret_key"].(string), "psk_") {
		t.Fatalf("processor add: %v %s", err, out)
	}
	if _, out, err := paypage(t, env, "merchant", "add"); err == nil {
		t.Fatalf("merchant add without a name worked: %s", out)
	}
	if _, out, err := paypage(t, env, "merchant", "add", "--name", "X", "--webhook-url", "ftp://x"); err == nil {
		t.Fatalf("ftp webhook accepted: %s", out)
	}
	st, _, err := paypage(t, env, "keys", "status")
	if err != nil || st["active_version"].(float64) != 1 {
		t.Fatalf("keys status: %v %v", st, err)
	}
	r, _, err := paypage(t, env, "keys", "rotate")
	if err != nil || r["active_version"].(float64) != 2 {
		t.Fatalf("keys rotate: %v %v", r, err)
	}
	re, _, err := paypage(t, env, "keys", "reencrypt")
	if err != nil || re["moved"].(float64) != 1 { // the merchant's webhook secret
		t.Fatalf("keys reencrypt: %v %v", re, err)
	}
	var out2, errb bytes.Buffer
	if err := run(context.Background(), []string{"audit", "list"}, func(k string) string { return env[k] }, &out2, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out2.String(), `"keys.rotate"`) || !strings.Contains(out2.String(), `"operator"`) {
		t.Fatalf("audit list lacks the rotation: %s", out2.String())
	}
	if _, _, err := paypage(t, env, "keys", "nonsense"); err == nil {
		t.Fatal("unknown command accepted")
	}
}

func TestKeyErrors(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"PAYPAGE_DATA": filepath.Join(dir, "data"), "PAYPAGE_MASTER_KEY": strings.Repeat("5c", 32)}
	if _, _, err := paypage(t, env, "keys", "status"); err != nil {
		t.Fatal(err)
	}
	delete(env, "PAYPAGE_MASTER_KEY")
	other := filepath.Join(dir, "other.key")
	_ = os.WriteFile(other, []byte(strings.Repeat("ab", 32)), 0o600)
	env["PAYPAGE_MASTER_KEY_FILE"] = other
	if _, _, err := paypage(t, env, "keys", "status"); err == nil || !strings.Contains(err.Error(), "does not open the keyring") {
		t.Fatalf("wrong key: %v", err)
	}
	_ = os.WriteFile(other, []byte("not hex"), 0o600)
	if _, _, err := paypage(t, env, "keys", "status"); err == nil || !strings.Contains(err.Error(), "64 hex") {
		t.Fatalf("corrupt key: %v", err)
	}
	env["PAYPAGE_MASTER_KEY_FILE"] = filepath.Join(dir, "missing.key")
	if _, _, err := paypage(t, env, "keys", "status"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing key: %v", err)
	}
}

func TestMasterKeyFromEnvAndRewrap(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"PAYPAGE_DATA": filepath.Join(dir, "data"), "PAYPAGE_MASTER_KEY": strings.Repeat("1f", 32)}
	if _, out, err := paypage(t, env, "merchant", "add", "--name", "Shop"); err != nil || strings.Contains(out, "DEVELOPMENT MASTER KEY") {
		t.Fatalf("env key: %v %s", err, out)
	}
	next := filepath.Join(dir, "next.key")
	_ = os.WriteFile(next, []byte(strings.Repeat("2e", 32)), 0o600)
	if r, out, err := paypage(t, env, "keys", "rewrap", "--new-master-key-file", next); err != nil || r["kek"] == nil {
		t.Fatalf("rewrap: %v %s", err, out)
	}
	if _, _, err := paypage(t, env, "keys", "status"); err == nil {
		t.Fatal("the old master key still opens the keyring")
	}
	delete(env, "PAYPAGE_MASTER_KEY")
	env["PAYPAGE_MASTER_KEY_FILE"] = next
	if st, _, err := paypage(t, env, "keys", "status"); err != nil || st["active_version"].(float64) != 1 {
		t.Fatalf("new key: %v %v", st, err)
	}
	env["PAYPAGE_MASTER_KEY"] = "short"
	if _, _, err := paypage(t, env, "keys", "status"); err == nil || !strings.Contains(err.Error(), "PAYPAGE_MASTER_KEY") {
		t.Fatalf("bad env key: %v", err)
	}
}

func TestConfigFromFlagsAndEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PAYPAGE_ADDR": "0.0.0.0:9000", "PAYPAGE_STORE": "redis://r:6379/0", "PAYPAGE_METRICS_ADDR": "127.0.0.1:9090"}
	c, err := parseConfig([]string{"--addr", "127.0.0.1:7000"}, func(k string) string { return env[k] })
	if err != nil || c.Addr != "127.0.0.1:7000" || c.Store != "redis://r:6379/0" || c.PublicURL != "http://127.0.0.1:7000" || c.Data != "./data" || c.MetricsAddr != "127.0.0.1:9090" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := parseConfig([]string{"--webhook-schedule", "5s,x"}, func(string) string { return "" }); err == nil {
		t.Fatal("bad schedule accepted")
	}
}

// The hardening settings: metrics off the public address by default, proxies
// trusted only when named, https public URLs when the process serves TLS.
func TestHardeningSettings(t *testing.T) {
	t.Parallel()
	none := func(string) string { return "" }
	c, err := parseConfig(nil, none)
	if err != nil || c.MetricsAddr != "127.0.0.1:9090" || len(c.TrustedProxies) != 0 || c.TLSEnabled() || c.PublicURL != "http://127.0.0.1:8080" {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	if c, err := parseConfig([]string{"--metrics-addr", "off"}, none); err != nil || c.MetricsAddr != "" {
		t.Fatalf("metrics off: %q %v", c.MetricsAddr, err)
	}
	if c.Pprof {
		t.Fatal("profiles served by default")
	}
	if c, err := parseConfig([]string{"--pprof"}, none); err != nil || !c.Pprof {
		t.Fatalf("--pprof: %v %v", c.Pprof, err)
	}
	if c, err := parseConfig(nil, func(k string) string { return map[string]string{"PAYPAGE_PPROF": "true"}[k] }); err != nil || !c.Pprof {
		t.Fatalf("PAYPAGE_PPROF: %v %v", c.Pprof, err)
	}
	env := map[string]string{"PAYPAGE_TRUSTED_PROXIES": "10.0.0.0/8,192.0.2.1"}
	if c, err := parseConfig(nil, func(k string) string { return env[k] }); err != nil || len(c.TrustedProxies) != 2 || c.TrustedProxies[1].String() != "192.0.2.1/32" {
		t.Fatalf("trusted proxies: %v %v", c.TrustedProxies, err)
	}
	env["PAYPAGE_TRUSTED_PROXIES"] = "10.0.0.0/8,everyone"
	if _, err := parseConfig(nil, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "PAYPAGE_TRUSTED_PROXIES") {
		t.Fatalf("bad proxies: %v", err)
	}
	if c, err := parseConfig([]string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--addr", "0.0.0.0:443"}, none); err != nil || c.PublicURL != "https://0.0.0.0:443" {
		t.Fatalf("TLS: %q %v", c.PublicURL, err)
	}
	if c, err := parseConfig([]string{"--acme-domain", "pay.example"}, none); err != nil || c.PublicURL != "https://pay.example" {
		t.Fatalf("ACME: %q %v", c.PublicURL, err)
	}
	if c.MaxConnections != 1024 || c.MaxConnectionsPerAddress != 128 {
		t.Fatalf("connection bounds by default: %d, %d per address", c.MaxConnections, c.MaxConnectionsPerAddress)
	}
	env = map[string]string{"PAYPAGE_MAX_CONNECTIONS": "0", "PAYPAGE_MAX_CONNECTIONS_PER_ADDRESS": "16"}
	if c, err := parseConfig(nil, func(k string) string { return env[k] }); err != nil || c.MaxConnections >= 0 || c.MaxConnectionsPerAddress != 16 {
		t.Fatalf("connection bounds from the environment: %d, %d per address, %v", c.MaxConnections, c.MaxConnectionsPerAddress, err)
	}
	if _, err := parseConfig([]string{"--max-connections", "many"}, none); err == nil {
		t.Fatal("--max-connections many accepted")
	}
	if c.WebhookTimeout != 10*time.Second {
		t.Fatalf("webhook timeout by default: %s", c.WebhookTimeout)
	}
	if c, err := parseConfig(nil, func(k string) string { return map[string]string{"PAYPAGE_WEBHOOK_TIMEOUT": "1s"}[k] }); err != nil || c.WebhookTimeout != time.Second {
		t.Fatalf("PAYPAGE_WEBHOOK_TIMEOUT: %s %v", c.WebhookTimeout, err)
	}
	if _, err := parseConfig([]string{"--webhook-timeout", "0s"}, none); err == nil {
		t.Fatal("--webhook-timeout 0s accepted")
	}
}

// Profiles are served on a loopback metrics address only: --pprof with the
// metrics off or on any other address is refused, naming both settings.
func TestPprofOnLoopbackOnly(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		env  map[string]string
		ok   bool
	}{
		{[]string{"--pprof"}, nil, true}, // the default 127.0.0.1:9090
		{[]string{"--pprof", "--metrics-addr", "127.0.0.2:9090"}, nil, true},
		{[]string{"--pprof", "--metrics-addr", "[::1]:9090"}, nil, true},
		{[]string{"--pprof", "--metrics-addr", "localhost:9090"}, nil, true},
		{[]string{"--metrics-addr", "0.0.0.0:9090"}, nil, true}, // metrics alone may go anywhere
		{[]string{"--pprof", "--metrics-addr", "0.0.0.0:9090"}, nil, false},
		{[]string{"--pprof", "--metrics-addr", ":9090"}, nil, false},
		{[]string{"--pprof", "--metrics-addr", "[::]:9090"}, nil, false},
		{[]string{"--pprof", "--metrics-addr", "10.0.0.5:9090"}, nil, false},
		{[]string{"--pprof", "--metrics-addr", "metrics.internal:9090"}, nil, false},
		{[]string{"--pprof", "--metrics-addr", "off"}, nil, false},
		{nil, map[string]string{"PAYPAGE_PPROF": "true", "PAYPAGE_METRICS_ADDR": "192.0.2.1:9090"}, false},
	} {
		_, err := parseConfig(c.args, func(k string) string { return c.env[k] })
		if c.ok {
			if err != nil {
				t.Errorf("%v %v: %v", c.args, c.env, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%v %v: profiles served off loopback", c.args, c.env)
			continue
		}
		for _, name := range []string{"--pprof", "PAYPAGE_PPROF", "--metrics-addr", "PAYPAGE_METRICS_ADDR", "loopback"} {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("%v %v: %q does not name %s", c.args, c.env, err, name)
			}
		}
	}
}

// Boolean settings are real booleans: the bare flag means true, and the
// environment takes true, false, 1 or 0, with an error naming the variable
// otherwise.
func TestBooleanSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  string // PAYPAGE_WEBHOOK_ALLOW_PRIVATE
		want bool
		err  string
	}{
		{name: "Default", want: false},
		{name: "BareFlag", args: []string{"--webhook-allow-private"}, want: true},
		{name: "FlagFalse", args: []string{"--webhook-allow-private=false"}, env: "true", want: false},
		{name: "FlagOne", args: []string{"-webhook-allow-private=1"}, want: true},
		{name: "EnvTrue", env: "true", want: true},
		{name: "EnvOne", env: "1", want: true},
		{name: "EnvZero", env: "0", want: false},
		{name: "EnvUpper", env: "TRUE", want: true},
		{name: "ErrEnvYes", env: "yes", err: `PAYPAGE_WEBHOOK_ALLOW_PRIVATE: "yes" is not a boolean: use true, false, 1 or 0`},
		{name: "ErrFlagYes", args: []string{"--webhook-allow-private=yes"}, err: `"yes" is not a boolean: use true, false, 1 or 0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(tc.args, func(k string) string {
				if k == "PAYPAGE_WEBHOOK_ALLOW_PRIVATE" {
					return tc.env
				}
				return ""
			})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil || c.WebhookAllowPrivate != tc.want {
				t.Fatalf("got %v %v, want %v", c.WebhookAllowPrivate, err, tc.want)
			}
		})
	}
	// The bare flag does not swallow the next argument.
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"merchant", "add", "--webhook-allow-private", "--help"}, func(string) string { return "" }, &out, &errb)
	if err != nil || !strings.Contains(out.String(), "Usage: paypage merchant add") {
		t.Fatalf("%v %s%s", err, out.String(), errb.String())
	}
}

// Help prints to stdout, succeeds, and touches no data directory; a command
// line that names no command is a usage error.
func TestHelp(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	for _, tc := range []struct {
		name       string
		args       []string
		usage      bool     // a usage error (exit 2)
		has, hasnt []string // in what it printed
	}{
		{name: "Help", args: []string{"help"}, has: []string{"paypage merchant add", "paypage processor add", "paypage serve", "PAYPAGE_STORE"}},
		{name: "DashH", args: []string{"-h"}, has: []string{"paypage merchant set-webhook", "paypage keys rotate"}},
		{name: "DashDashHelp", args: []string{"--help"}, has: []string{"paypage audit list"}},
		{name: "Group", args: []string{"merchant", "--help"}, has: []string{"paypage merchant add", "paypage merchant set-webhook"}, hasnt: []string{"processor add", "PAYPAGE_DATA"}},
		{name: "GroupDashH", args: []string{"processor", "-h"}, has: []string{"paypage processor add"}, hasnt: []string{"merchant add"}},
		{name: "Command", args: []string{"merchant", "add", "--help"},
			has:   []string{"Usage: paypage merchant add", "--name name", "--webhook-url URL", "--data DIR", "PAYPAGE_DATA", "--webhook-allow-private ", "PAYPAGE_MASTER_KEY_FILE"},
			hasnt: []string{"--metrics-addr", "--roll-secret", "--public-url"}},
		{name: "HelpCommand", args: []string{"help", "merchant", "set-webhook"}, has: []string{"--roll-secret", "--id ID"}},
		{name: "HelpGroup", args: []string{"help", "keys"}, has: []string{"paypage keys rewrap"}},
		{name: "Serve", args: []string{"serve", "-h"}, has: []string{"--metrics-addr ADDR", "--webhook-schedule LIST", "--trusted-proxies CIDRS", "--pprof ", "PAYPAGE_PPROF"}},
		{name: "Load", args: []string{"load", "--help"}, has: []string{"Usage: paypage load", "--scenario", "detokenize", "--concurrency", "--merchant", "--processor", "--metrics-addr ADDR"}},
		{name: "ErrNothing", args: nil, usage: true, has: []string{"paypage merchant add"}},
		{name: "ErrUnknown", args: []string{"nonsense"}, usage: true},
		{name: "ErrGroupAlone", args: []string{"merchant"}, usage: true, has: []string{"paypage merchant add"}},
		{name: "ErrUnknownInGroup", args: []string{"keys", "nonsense"}, usage: true, has: []string{"paypage keys status"}},
		{name: "ErrUnknownFlag", args: []string{"merchant", "add", "--nope"}, usage: true, has: []string{`paypage merchant add --help`}},
		{name: "ErrMissingID", args: []string{"merchant", "set-webhook", "--webhook-url", "https://x.example"}, usage: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			err := run(context.Background(), tc.args, func(k string) string { return map[string]string{"PAYPAGE_DATA": data}[k] }, &out, &errb)
			var u usageError
			if tc.usage != errors.As(err, &u) || (!tc.usage && err != nil) {
				t.Fatalf("error %v, want a usage error: %v", err, tc.usage)
			}
			printed := out.String() + errb.String()
			if !tc.usage && errb.Len() > 0 {
				t.Fatalf("help on stderr: %s", errb.String())
			}
			for _, s := range tc.has {
				if !strings.Contains(printed, s) {
					t.Errorf("no %q in:\n%s", s, printed)
				}
			}
			for _, s := range tc.hasnt {
				if strings.Contains(printed, s) {
					t.Errorf("%q in:\n%s", s, printed)
				}
			}
		})
	}
	t.Cleanup(func() {
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("help touched the data directory: %v", err)
		}
	})
}

// merchant add and set-webhook warn when deliveries to the address would be
// refused under the settings they run with, and still do what they were told.
func TestWebhookWarning(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PAYPAGE_DATA": filepath.Join(t.TempDir(), "data"), "PAYPAGE_MASTER_KEY": strings.Repeat("4e", 32)}
	m, out, err := paypage(t, env, "merchant", "add", "--name", "Shop", "--webhook-url", "https://127.0.0.1/hooks")
	if err != nil || !strings.Contains(out, "paypage: warning: egress refused: 127.0.0.1 is not a public address") || !strings.Contains(out, "--webhook-allow-private") {
		t.Fatalf("no warning for a loopback receiver: %v %s", err, out)
	}
	id := m["id"].(string)
	for _, tc := range []struct {
		name, url, allow string
		warn             bool
	}{
		{"Loopback", "https://localhost/hooks", "", true},
		{"Private", "https://10.1.2.3/hooks", "false", true},
		{"PlainHTTP", "http://93.184.215.14/hooks", "", true},
		{"Allowed", "http://127.0.0.1:9000/hooks", "true", false},
		{"Public", "https://93.184.215.14/hooks", "", false},
		{"None", "", "", false},
	} {
		env["PAYPAGE_WEBHOOK_ALLOW_PRIVATE"] = tc.allow
		w, out, err := paypage(t, env, "merchant", "set-webhook", "--id", id, "--webhook-url", tc.url)
		if err != nil || w["webhook_url"] != tc.url || strings.Contains(out, "warning") != tc.warn {
			t.Errorf("%s: %v warn=%v: %s", tc.name, err, tc.warn, out)
		}
	}
}

// merchant set-frame-origins stores checked origins, refuses bad ones before
// anything is written, clears with an empty list, and is audited.
func TestSetFrameOrigins(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PAYPAGE_DATA": filepath.Join(t.TempDir(), "data"), "PAYPAGE_MASTER_KEY": strings.Repeat("4e", 32)}
	m, out, err := paypage(t, env, "merchant", "add", "--name", "Air Astana")
	if err != nil {
		t.Fatalf("merchant add: %v %s", err, out)
	}
	id := m["id"].(string)
	set := func(origins string) (map[string]any, string, error) {
		return paypage(t, env, "merchant", "set-frame-origins", "--id", id, "--origins", origins)
	}
	r, out, err := set("https://Shop.example/, https://*.airastana.example")
	if err != nil || fmt.Sprint(r["frame_origins"]) != "[https://shop.example https://*.airastana.example]" {
		t.Fatalf("set: %v %s", err, out)
	}
	for _, bad := range []string{"http://shop.example", "https://shop.example/pay", "*", "https://shop.example; script-src *"} {
		if _, out, err := set(bad); err == nil {
			t.Errorf("%q accepted: %s", bad, out)
		}
	}
	if r, out, err := set(""); err != nil || r["frame_origins"] != nil {
		t.Fatalf("clear: %v %s", err, out)
	}
	var trail []map[string]any
	_, out, _ = paypage(t, env, "audit", "list")
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&trail); err != nil { // the JSON, then any warnings
		t.Fatalf("audit list: %v %s", err, out)
	}
	n := 0
	for _, e := range trail {
		if e["action"] == "merchant.set_frame_origins" && e["outcome"] == "success" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d audit records of set-frame-origins:\n%s", n, out)
	}
}

// A service-only command (seal, unseal) fails without a service, and opens
// no store.
func TestServiceOnlyCommand(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	_, out, err := paypage(t, map[string]string{"PAYPAGE_DATA": data}, "seal")
	if err == nil || !strings.Contains(err.Error(), "needs a running service") {
		t.Fatalf("%v %s", err, out)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("a service-only command opened the store: %v", err)
	}
}

// The load command reads its keys from the files add commands print, and
// its sale's weights as scenario=weight.
func TestLoadArguments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, body, want string
	}{
		{"JSON", `{"id": "mer_x", "secret_key": "sk_test_mer_x_abc", "webhook_secret": "whsec_y"}`, "sk_test_mer_x_abc"},
		{"Bare", "psk_test_prc_x_abc\n", "psk_test_prc_x_abc"},
		{"ErrJSONWithoutKey", `{"id": "mer_x"}`, ""},
		{"ErrEmpty", "", ""},
	} {
		got, err := readKey(write(tc.name, tc.body))
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("%s: %q %v", tc.name, got, err)
		}
	}
	m, err := parseMix("page=40, pay=25,refund=0")
	if err != nil || m["page"] != 40 || m["pay"] != 25 || len(m) != 3 {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{"page", "page=x", "page=-1"} {
		if _, err := parseMix(bad); err == nil {
			t.Errorf("mix %q accepted", bad)
		}
	}
}

// Help comes first: "--help" works whatever the environment holds (the
// settings the operator asks help about are often the ones set wrong); a
// flag given for a setting makes up for its bad environment value; and
// without either a bad value is still a usage error.
func TestHelpDespiteBadEnvironment(t *testing.T) {
	t.Parallel()
	for _, env := range []string{"PAYPAGE_LIMIT_CARD_PER_DAY=ten", "PAYPAGE_WEBHOOK_ALLOW_PRIVATE=yes"} {
		k, v, _ := strings.Cut(env, "=")
		getenv := func(name string) string {
			if name == k {
				return v
			}
			return ""
		}
		var out, errb bytes.Buffer
		err := run(context.Background(), []string{"merchant", "add", "--help"}, getenv, &out, &errb)
		if err != nil || !strings.Contains(out.String(), "Usage: paypage merchant add") {
			t.Errorf("%s: merchant add --help: %v\n%s", env, err, out.String()+errb.String())
		}
		err = run(context.Background(), []string{"merchant", "list"}, getenv, &out, &errb)
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), k) {
			t.Errorf("%s: merchant list: %v", env, err)
		}
	}
	flagWins := map[string]string{"PAYPAGE_LIMIT_CARD_PER_DAY": "ten"}
	c, err := parseConfig([]string{"--limit-card-per-day", "3"}, func(k string) string { return flagWins[k] })
	if err != nil || c.LimitCardPerDay != 3 {
		t.Fatalf("a flag over a bad environment value: %+v %v", c.LimitCardPerDay, err)
	}
}

// cancelAfter runs an operation and then cancels its context, as the
// operator socket does when the caller goes away (Ctrl-C) after the change
// is committed but before execute has written its audit record.
type cancelAfter struct {
	operation
	cancel context.CancelFunc
}

func (c cancelAfter) do(ctx context.Context, k *call) (any, error) {
	res, err := c.operation.do(ctx, k)
	c.cancel()
	return res, err
}

// A change whose caller leaves just after it is committed is audited all
// the same, with who made it.
func TestAuditedEvenIfCallerLeaves(t *testing.T) {
	t.Parallel()
	cfg, err := parseConfig([]string{"--data", filepath.Join(t.TempDir(), "data")}, func(k string) string {
		return map[string]string{"PAYPAGE_MASTER_KEY": strings.Repeat("2a", 32)}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.OpenVault(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	who := audit.Operator{UID: 1000, User: "alice", PID: 42, Via: "socket"}
	_, warnings, err := execute(ctx, a, who, entryNamed("merchant add"), cancelAfter{&merchantAddCmd{Name: "Shop"}, cancel})
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := a.Accounts.ListMerchants(context.Background())
	evs, _ := a.Audit.List(context.Background(), "", 100)
	if len(ms) != 1 || len(evs) != 1 || evs[0].Action != "merchant.add" || evs[0].Actor != "operator:alice" || evs[0].Object != ms[0].ID {
		t.Fatalf("merchants %+v were added by alice through the socket; audit trail %+v (warnings to a caller that has gone: %q)", ms, evs, warnings)
	}
}

// serve listens before it opens anything: --addr with port 0 picks a free
// port, and a public URL derived from the address names it; one given
// apart is left alone.
func TestListenNamesThePickedPort(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ public, want string }{
		{"http://127.0.0.1:0", "http://127.0.0.1:"},
		{"https://127.0.0.1:0", "https://127.0.0.1:"},
		{"https://pay.example.com", "https://pay.example.com"},
	} {
		cfg := Config{Addr: "127.0.0.1:0", PublicURL: c.public}
		l, err := listen(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		closeAll(l)
		port := strings.TrimPrefix(cfg.Addr, "127.0.0.1:")
		if port == "0" || l.Public.Addr().String() != cfg.Addr {
			t.Fatalf("addr %q, listener %v", cfg.Addr, l.Public.Addr())
		}
		want := c.want
		if strings.HasSuffix(want, ":") {
			want += port
		}
		if cfg.PublicURL != want {
			t.Fatalf("public URL %q, want %q", cfg.PublicURL, want)
		}
	}
}
