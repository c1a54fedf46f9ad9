package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/store"
	"github.com/paypage/paypage/pkg/store/redis"
)

// TestKeyCeremonyOnRedis runs the key ceremony with the real binary beside
// two real replicas on one Redis: the master key is split into custodians'
// shares; after keys rotate, the replica that did not rotate seals new cards
// under the new version within 10 seconds; keys status counts every sealed
// kind per version; keys retire refuses while anything uses the old version,
// and destroys it after keys reencrypt; everything still pays.
func TestKeyCeremonyOnRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server and a build of the binary")
	}
	bin := buildBinary(t)
	redisAddr := redisURL(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "master.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("5b", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := append(os.Environ(), "PAYPAGE_STORE="+redisAddr, "PAYPAGE_MASTER_KEY_FILE="+keyFile, "PAYPAGE_DATA="+filepath.Join(dir, "data"), "PAYPAGE_METRICS_ADDR=off")
	cli := func(args ...string) (map[string]any, string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = base
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		v := map[string]any{}
		_ = json.Unmarshal(out.Bytes(), &v)
		return v, out.String() + errb.String(), err
	}
	must := func(args ...string) map[string]any {
		t.Helper()
		v, out, err := cli(args...)
		if err != nil {
			t.Fatalf("paypage %v: %v\n%s", args, err, out)
		}
		return v
	}
	m := must("merchant", "add", "--name", "Air Astana")
	var replicas []*env
	for range 2 {
		r := startServe(t, bin, base)
		r.key, r.merchant = m["secret_key"].(string), m["id"].(string)
		replicas = append(replicas, r.env)
	}
	db, err := redis.Open(context.Background(), redisAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cards := []string{"4242 4242 4242 4242", "2223 0031 2200 3222", "3530 1113 3330 0000"}
	paid := 0
	pay := func(e *env) (token string, keyVersion int) {
		t.Helper()
		id := e.session(nil)["id"].(string)
		b := e.browser()
		paid++ // a different card each time, so the per-card limit stays far
		if p := b.follow(b.pay(id, cards[paid%len(cards)], "981")); !strings.Contains(p.body, "Payment successful") {
			t.Fatalf("payment:\n%s", p.body)
		}
		_, ses, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
		token = ses["payment"].(map[string]any)["card"].(map[string]any)["token"].(string)
		rec, err := db.Get(context.Background(), store.K("card", token))
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			KeyVersion int `json:"key_version"`
		}
		_ = json.Unmarshal(rec.Value, &r)
		return token, r.KeyVersion
	}

	// Split: five shares, each with its check value, shown once.
	split, out, err := cli("keys", "split", "--shares", "5", "--threshold", "3")
	if err != nil || len(split["shares"].([]any)) != 5 || !strings.Contains(out, "printed once") {
		t.Fatalf("keys split: %v\n%s", err, out)
	}
	for _, s := range split["shares"].([]any) {
		sh := s.(map[string]any)
		if !strings.HasSuffix(sh["share"].(string), "-"+sh["check"].(string)) {
			t.Fatalf("share without its check value: %v", sh)
		}
	}

	if _, kv := pay(replicas[0]); kv != 1 {
		t.Fatalf("first card under version %d", kv)
	}
	// Rotate (a third process): replica 1 seals under version 2 within 10 s.
	rotated := time.Now()
	if r := must("keys", "rotate"); r["active_version"].(float64) != 2 {
		t.Fatalf("rotate: %v", r)
	}
	for {
		_, kv := pay(replicas[1])
		if kv == 2 {
			t.Logf("replica sealed under the new key %s after the rotation", time.Since(rotated).Round(100*time.Millisecond))
			break
		}
		if time.Since(rotated) > 10*time.Second {
			t.Fatal("10 s after keys rotate, a replica still seals new cards under version 1")
		}
		time.Sleep(time.Second)
	}

	st := must("keys", "status")
	v1 := st["versions"].([]any)[0].(map[string]any)
	recs := v1["records"].(map[string]any)
	if recs["cards"].(float64) < 1 || recs["webhook_secrets"].(float64) != 1 || recs["cvv_holds"].(float64) != 0 {
		t.Fatalf("status of version 1: %v", v1)
	}
	// Right after a rotation, replicas may still seal under version 1:
	// retire waits 10 s from when the replica that runs it saw the
	// rotation, then counts what uses version 1.
	if _, out, err := cli("keys", "retire", "--version", "1"); err == nil || !strings.Contains(out, "still used by") ||
		!strings.Contains(out, "cards") || !strings.Contains(out, "1 webhook_secrets") {
		t.Fatalf("retire of a version in use: %v\n%s", err, out)
	}
	if since := time.Since(rotated); since < 10*time.Second {
		t.Fatalf("retire counted use %s after the rotation, before the settle time", since)
	}
	if re := must("keys", "reencrypt"); re["moved"].(float64) < 2 {
		t.Fatalf("reencrypt: %v", re)
	}
	st = must("keys", "status")
	if v1 := st["versions"].([]any)[0].(map[string]any); v1["in_use"].(float64) != 0 {
		t.Fatalf("version 1 still in use after reencrypt: %v", v1)
	}
	retiring := time.Now()
	if r, out, err := cli("keys", "retire", "--version", "1"); err != nil || r["retired_version"].(float64) != 1 {
		t.Fatalf("retire: %v\n%s", err, out)
	}
	if took := time.Since(retiring); took < 10*time.Second {
		t.Fatalf("retire destroyed version 1 after %s, without the second settle", took)
	}
	st = must("keys", "status")
	if len(st["versions"].([]any)) != 1 || len(st["retired"].([]any)) != 1 {
		t.Fatalf("status after retirement: %v", st)
	}
	if _, out, err := cli("audit", "list"); err != nil || !strings.Contains(out, `"keys.retire"`) || !strings.Contains(out, `"keys.split"`) {
		t.Fatalf("audit trail lacks the ceremony: %v\n%s", err, out)
	}
	// Both replicas go on: old cards moved, new ones sealed under version 2.
	for _, e := range replicas {
		if _, kv := pay(e); kv != 2 {
			t.Fatalf("after retirement a card sealed under %d", kv)
		}
	}

	// Dual control: two more replicas start with --unseal-shares 3 and no
	// master key, each with its own data directory (its operator socket).
	// Each is sealed until three custodians give it their shares.
	shares := split["shares"].([]any)
	share := func(i int) string { return shares[i].(map[string]any)["share"].(string) }
	var sealed []*env
	var dataDirs []string
	for i := range 2 {
		d := filepath.Join(dir, fmt.Sprintf("replica%d", i))
		dataDirs = append(dataDirs, d)
		r := startServe(t, bin, os.Environ(), "PAYPAGE_STORE="+redisAddr, "PAYPAGE_DATA="+d, "PAYPAGE_UNSEAL_SHARES=3")
		r.key, r.merchant = m["secret_key"].(string), m["id"].(string)
		sealed = append(sealed, r.env)
	}
	unseal := func(i int, stdin string, args ...string) (map[string]any, string, error) {
		cmd := exec.Command(bin, append([]string{"unseal"}, args...)...)
		cmd.Env = append(os.Environ(), "PAYPAGE_STORE="+redisAddr, "PAYPAGE_DATA="+dataDirs[i])
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		v := map[string]any{}
		_ = json.Unmarshal(out.Bytes(), &v)
		return v, out.String() + errb.String(), err
	}
	isSealed := func(e *env) bool {
		status, body, _ := e.api("GET", "/readyz", "", nil)
		return status == 503 && body["status"] == "sealed"
	}
	for _, e := range sealed {
		if !isSealed(e) {
			t.Fatal("a replica started with --unseal-shares is not sealed")
		}
		if p := e.browser().get("/pay/ses_aaaaaaaaaaaaaaaaaaaaaaaaaa"); p.status != 503 {
			t.Fatalf("pay page of a sealed replica: %d", p.status)
		}
	}
	if p, out, err := unseal(0, "", "--share", share(0)); err != nil || p["shares_given"].(float64) != 1 {
		t.Fatalf("first share: %v\n%s", err, out)
	}
	if _, out, err := unseal(0, "", "--share", share(0)); err == nil || !strings.Contains(out, "given already") {
		t.Fatalf("repeated share: %v\n%s", err, out)
	}
	if _, out, err := unseal(0, "", "--share", "ppk1-nonsense"); err == nil || !strings.Contains(out, "not a key share") {
		t.Fatalf("malformed share: %v\n%s", err, out)
	}
	for _, i := range []int{2, 4} {
		if _, out, err := unseal(0, "", "--share", share(i)); err != nil {
			t.Fatalf("share %d: %v\n%s", i, err, out)
		}
	}
	if isSealed(sealed[0]) || !isSealed(sealed[1]) {
		t.Fatal("three shares to replica 0 must unseal it, and it alone")
	}
	for _, i := range []int{1, 3, 4} { // other custodians, on standard input
		if _, out, err := unseal(1, share(i)+"\n"); err != nil {
			t.Fatalf("share %d on stdin: %v\n%s", i, err, out)
		}
	}
	for _, e := range sealed {
		if isSealed(e) {
			t.Fatal("still sealed after three shares")
		}
		if _, kv := pay(e); kv != 2 {
			t.Fatalf("unsealed replica sealed a card under %d", kv)
		}
	}
	cmd := exec.Command(bin, "seal")
	cmd.Env = append(os.Environ(), "PAYPAGE_STORE="+redisAddr, "PAYPAGE_DATA="+dataDirs[0])
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("seal: %v\n%s", err, out)
	}
	if !isSealed(sealed[0]) || isSealed(sealed[1]) {
		t.Fatal("paypage seal must seal the replica it reached, and it alone")
	}
	if _, out, err := cli("audit", "list", "--limit", "1000"); err != nil || !strings.Contains(out, `"keys.unseal"`) || !strings.Contains(out, `"keys.seal"`) {
		t.Fatalf("audit trail lacks unseal and seal: %v\n%s", err, out)
	}

	// The master key's own rotation. keys rewrap (run in replica 0, which
	// takes the new key at once); the others go on with the keys they hold,
	// and keys rotate refuses, naming them, until each holds the new key.
	newKey := filepath.Join(dir, "new.key")
	if err := os.WriteFile(newKey, []byte(strings.Repeat("6c", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	must("keys", "rewrap", "--new-master-key-file", newKey)
	for _, e := range []*env{replicas[1], sealed[1]} {
		if _, kv := pay(e); kv != 2 {
			t.Fatalf("after rewrap a replica on the old master key sealed under %d", kv)
		}
	}
	if _, out, err := cli("keys", "rotate"); err == nil || !strings.Contains(out, "serving replicas hold another") {
		t.Fatalf("rotate while replicas hold the old master key: %v\n%s", err, out)
	}
	// The replicas' key file gets the new key: replica 1 picks it up. The
	// one unsealed by shares cannot: it is sealed (or restarted and
	// unsealed with the new key's shares).
	tmp := keyFile + ".new"
	if err := os.WriteFile(tmp, []byte(strings.Repeat("6c", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, keyFile); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(bin, "seal")
	cmd.Env = append(os.Environ(), "PAYPAGE_STORE="+redisAddr, "PAYPAGE_DATA="+dataDirs[1])
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("seal: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		r, out, err := cli("keys", "rotate")
		if err == nil && r["active_version"].(float64) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotate still refused 15 s after the replicas got the new key: %v\n%s", err, out)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Second) {
		if _, kv := pay(replicas[1]); kv == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica that picked up the new master key does not seal under the new version")
		}
	}
	if !strings.Contains(replicas[1].logs.String(), "picked up the new master key") {
		t.Fatal("the replica did not say it picked up the new master key")
	}
}
