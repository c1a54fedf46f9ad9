package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/store/redis/redistest"
)

// bin is the real paypage binary, built once by TestMain (not with -short).
var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "paypage-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "paypage")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needBinary skips a test that runs the real binary under -short.
func needBinary(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary and a real store: not with -short")
	}
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// world is the settings that a service and the operator's commands share.
type world struct {
	t   *testing.T
	env map[string]string
}

// newWorld is a data directory and a store: "bolt", or "redis" (a real
// redis-server, with a master key file, as production has).
func newWorld(t *testing.T, kind string) *world {
	t.Helper()
	needBinary(t)
	dir := t.TempDir()
	w := &world{t: t, env: map[string]string{"PAYPAGE_DATA": filepath.Join(dir, "data")}}
	if kind == "redis" {
		key := filepath.Join(dir, "master.key")
		if err := os.WriteFile(key, []byte(strings.Repeat("7c", 32)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		w.env["PAYPAGE_STORE"] = redistest.Start(t).URL()
		w.env["PAYPAGE_MASTER_KEY_FILE"] = key
	}
	return w
}

// environ is the process environment for the binary: this one's without
// any PAYPAGE_ variable, then the world's, then extra ("K=V").
func (w *world) environ(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PAYPAGE_") {
			out = append(out, kv)
		}
	}
	for k, v := range w.env {
		out = append(out, k+"="+v)
	}
	return append(out, extra...)
}

// result is what one run of the binary did.
type result struct {
	stdout, stderr string
	code           int
}

// json decodes stdout.
func (r result) json(t *testing.T, into any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), into); err != nil {
		t.Fatalf("not JSON (exit %d): %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
}

// run runs the binary to its end.
func (w *world) run(args ...string) result {
	w.t.Helper()
	return w.runEnv(nil, args...)
}

func (w *world) runEnv(extra []string, args ...string) result {
	w.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = w.environ(extra...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs a command that must succeed and decodes its answer.
func (w *world) ok(into any, args ...string) result {
	w.t.Helper()
	r := w.run(args...)
	if r.code != 0 {
		w.t.Fatalf("paypage %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	if into != nil {
		r.json(w.t, into)
	}
	return r
}

// service is a running "paypage serve".
type service struct {
	w    *world
	cmd  *exec.Cmd
	url  string
	logs *syncBuffer
	done chan error
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// serve starts the service and waits until it is ready and its operator
// socket is there.
func (w *world) serve(extra ...string) *service {
	w.t.Helper()
	addr := freeAddr(w.t)
	s := &service{w: w, url: "http://" + addr, logs: &syncBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = w.environ(append([]string{"PAYPAGE_ADDR=" + addr, "PAYPAGE_METRICS_ADDR=off"}, extra...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	w.t.Cleanup(s.stop)
	sock := filepath.Join(w.env["PAYPAGE_DATA"], "paypage.sock")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if strings.Contains(s.logs.String(), "paypage serving") && exists(sock) {
			if resp, err := http.Get(s.url + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return s
				}
			}
		}
		select {
		case err := <-s.done:
			s.done <- err
			w.t.Fatalf("serve ended: %v\n%s", err, s.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("serve never ready:\n%s", s.logs.String())
		}
	}
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// stop ends the service as an operator would (SIGTERM) and waits.
func (s *service) stop() { s.signal(syscall.SIGTERM) }

// kill ends it at once (SIGKILL): nothing cleans up.
func (s *service) kill() { s.signal(syscall.SIGKILL) }

func (s *service) signal(sig syscall.Signal) {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case err := <-s.done:
		s.done <- err
	case <-time.After(20 * time.Second):
		s.w.t.Errorf("serve did not stop on %v:\n%s", sig, s.logs.String())
		_ = s.cmd.Process.Kill()
	}
}

// api calls the service's JSON API.
func (s *service) api(method, path, key string, body any) (int, map[string]any) {
	s.w.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, s.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.w.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// session creates a payment session with a merchant key.
func (s *service) session(key string) (int, map[string]any) {
	return s.api("POST", "/v1/sessions", key, map[string]any{"amount": 1000, "currency": "KZT",
		"success_url": "https://shop.example/ok", "cancel_url": "https://shop.example/cancel"})
}

// auditRecord is one line of "paypage audit list".
type auditRecord struct {
	Actor, Action, Outcome, Object, Reason, Merchant string
	Operator                                         *struct {
		UID  int    `json:"uid"`
		User string `json:"user"`
		PID  int    `json:"pid"`
		Via  string `json:"via"`
	}
}

func (w *world) audit(args ...string) []auditRecord {
	w.t.Helper()
	var recs []auditRecord
	w.ok(&recs, append([]string{"audit", "list", "--limit", "1000"}, args...)...)
	return recs
}

// forEachStore runs f on the embedded store and on Redis.
func forEachStore(t *testing.T, f func(t *testing.T, w *world)) {
	for _, kind := range []string{"bolt", "redis"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f(t, newWorld(t, kind))
		})
	}
}
