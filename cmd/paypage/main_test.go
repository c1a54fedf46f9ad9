package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	m, out, err := paypage(t, env, "merchant", "add", "--name", "Air Astana", "--webhook-url", "https://shop.example/hooks")
	if err != nil || !strings.HasPrefix(m["id"].(string), "mer_") || !strings.HasPrefix(m["secret_key"].(string), "sk_") || !strings.HasPrefix(m["webhook_secret"].(string), "whsec_") {
		t.Fatalf("merchant add: %v %s", err, out)
	}
	if !strings.Contains(out, "DEVELOPMENT MASTER KEY") {
		t.Fatal("no warning about the development key")
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
	if err != nil || re["moved"].(float64) != 0 {
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
	env := map[string]string{"PAYPAGE_DATA": filepath.Join(dir, "data")}
	if _, _, err := paypage(t, env, "keys", "status"); err != nil {
		t.Fatal(err)
	}
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
	env := map[string]string{"PAYPAGE_ADDR": "0.0.0.0:9000", "PAYPAGE_STORE": "redis://r:6379/0", "PAYPAGE_METRICS_ADDR": "127.0.0.1:9090"}
	c, _, err := parseConfig("t", []string{"--addr", "127.0.0.1:7000"}, func(k string) string { return env[k] }, nil)
	if err != nil || c.Addr != "127.0.0.1:7000" || c.Store != "redis://r:6379/0" || c.PublicURL != "http://127.0.0.1:7000" || c.Data != "./data" || c.MetricsAddr != "127.0.0.1:9090" {
		t.Fatalf("%+v %v", c, err)
	}
	if _, _, err := parseConfig("t", []string{"--webhook-schedule", "5s,x"}, func(string) string { return "" }, nil); err == nil {
		t.Fatal("bad schedule accepted")
	}
}
