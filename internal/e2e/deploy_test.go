package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// TestDeployRedisTLSAndACL runs a real redis-server on the shipped
// deploy/redis.conf with the secrets deploy/make-secrets.sh makes (only the
// paths and the port changed), and the real binary on it over rediss:// as
// the ACL user, trusting Redis's CA through --store-ca alone: a card is
// paid, detokenized and the trail exported. Redis itself refuses plain TCP,
// the default user, and paypage's user any administrative command.
func TestDeployRedisTLSAndACL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs redis-server, openssl and the real binary")
	}
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets")
	if out, err := exec.Command("bash", "../../deploy/make-secrets.sh", secrets).CombinedOutput(); err != nil {
		t.Fatalf("make-secrets.sh: %v\n%s", err, out)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(secrets, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	addr := freeAddr(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	data := filepath.Join(dir, "redis")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	conf, err := filepath.Abs("../../deploy/redis.conf")
	if err != nil {
		t.Fatal(err)
	}
	redis := exec.Command("redis-server", conf, "--bind", "127.0.0.1", "--tls-port", port,
		"--tls-cert-file", filepath.Join(secrets, "redis.crt"), "--tls-key-file", filepath.Join(secrets, "redis.key"),
		"--tls-ca-cert-file", filepath.Join(secrets, "ca.crt"), "--aclfile", filepath.Join(secrets, "users.acl"),
		"--appendonly", "no", "--save", "", "--logfile", filepath.Join(data, "redis.log"))
	redis.Dir = data
	startProcess(t, redis)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(read("ca.crt")))
	client := func(user, pass string, useTLS bool) *goredis.Client {
		o := &goredis.Options{Addr: addr, Username: user, Password: pass, MaxRetries: -1, DialTimeout: time.Second}
		if useTLS {
			o.TLSConfig = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		}
		c := goredis.NewClient(o)
		t.Cleanup(func() { c.Close() })
		return c
	}
	ctx := context.Background()
	pw := read("redis-password")
	app := client("paypage", pw, true)
	for deadline := time.Now().Add(10 * time.Second); app.Ping(ctx).Err() != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(data, "redis.log"))
			t.Fatalf("redis never answered over TLS: %v\n%s", app.Ping(ctx).Err(), log)
		}
	}
	if err := client("", "", false).Ping(ctx).Err(); err == nil {
		t.Error("Redis answers plain TCP")
	}
	if err := client("", "", true).Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("the default user: %v", err)
	}
	if err := client("paypage", "wrong", true).Ping(ctx).Err(); err == nil {
		t.Error("a wrong password is let in")
	}
	for _, cmd := range [][]any{{"flushall"}, {"config", "get", "requirepass"}, {"keys", "*"}, {"set", "other:key", "x"}, {"acl", "list"}} {
		if err := app.Do(ctx, cmd...).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("paypage's user may %v: %v", cmd, err)
		}
	}

	w := newWorld(t, "bolt")
	w.env["PAYPAGE_STORE"] = fmt.Sprintf("rediss://paypage:%s@127.0.0.1:%s/0", pw, port)
	w.env["PAYPAGE_MASTER_KEY"] = read("master.key")
	// Redis's private CA is trusted for Redis alone (--store-ca): without
	// it the system's roots do not know it, and a file with no certificate
	// or a plain redis:// URL beside it is refused.
	w.fails("certificate", "merchant", "list")
	w.env["PAYPAGE_STORE_CA"] = filepath.Join(secrets, "redis-password")
	w.fails("no PEM certificate", "merchant", "list")
	w.env["PAYPAGE_STORE_CA"] = filepath.Join(secrets, "ca.crt") // as the manifests set it
	plain := w.env["PAYPAGE_STORE"]
	w.env["PAYPAGE_STORE"] = strings.Replace(plain, "rediss://", "redis://", 1)
	w.fails("needs TLS", "merchant", "list")
	w.env["PAYPAGE_STORE"] = plain
	// The page's own certificate (docker compose serves it) is for
	// 127.0.0.1, and refused for another name.
	page := []string{"PAYPAGE_TLS_CERT=" + filepath.Join(secrets, "page.crt"), "PAYPAGE_TLS_KEY=" + filepath.Join(secrets, "page.key")}
	if r := w.cli(page, "serve", "--public-url", "https://pay.example.com"); r.code == 0 || !strings.Contains(r.stderr, "not for the public URL's host") {
		t.Fatalf("the page's certificate served for another name: %d\n%s", r.code, r.stderr)
	}
	svc := w.serve()
	mid, mkey := w.merchant("Air Astana")
	_, pkey := w.processor("Acquirer", "--merchants", mid)
	e := svc.as(mid, mkey, pkey)
	token := e.paidToken("4242 4242 4242 4242")
	if st, d, _ := e.api("POST", "/v1/detokenize", pkey, map[string]any{"token": token}); st != 200 || d["pan"] != "4242424242424242" {
		t.Fatalf("detokenize over rediss as the ACL user: %d %v", st, d)
	}
	if r := w.ok(nil, "audit", "export", "--mark"); !strings.Contains(r.stderr, "exported") {
		t.Fatalf("audit export: %s", r.stderr)
	}
	if n, err := app.DBSize(ctx).Result(); err != nil || n == 0 {
		t.Fatalf("nothing stored in the TLS Redis: %d %v", n, err)
	}
}
