package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paypage/paypage/pkg/audit"
)

// world is a data directory and a store that real "paypage serve"
// processes and the operator's commands share.
type world struct {
	t   *testing.T
	bin string
	env map[string]string
}

// newWorld makes a world on "bolt", or on "redis" (a real redis-server,
// with a master key file, as production has).
func newWorld(t *testing.T, kind string) *world {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary beside a real store")
	}
	dir := t.TempDir()
	w := &world{t: t, bin: buildBinary(t), env: map[string]string{"PAYPAGE_DATA": filepath.Join(dir, "data"), "PAYPAGE_METRICS_ADDR": "off"}}
	if kind == "redis" {
		key := filepath.Join(dir, "master.key")
		if err := os.WriteFile(key, []byte(strings.Repeat("7c", 32)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		w.env["PAYPAGE_STORE"] = redisURL(t)
		w.env["PAYPAGE_MASTER_KEY_FILE"] = key
	}
	return w
}

// onBothStores runs f on the embedded store and on Redis, in parallel.
func onBothStores(t *testing.T, f func(t *testing.T, w *world)) {
	for _, kind := range []string{"bolt", "redis"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f(t, newWorld(t, kind))
		})
	}
}

// environ is the binary's environment: this process's without any
// PAYPAGE_ variable, then the world's, then extra ("K=V").
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

// cli runs an operator command to its end, with extra environment.
func (w *world) cli(extra []string, args ...string) result {
	w.t.Helper()
	cmd := exec.Command(w.bin, args...)
	cmd.Env = w.environ(extra...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	r := result{stdout: out.String(), stderr: errb.String()}
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatal(err)
	}
	return r
}

// ok runs a command that must succeed and decodes its JSON answer.
func (w *world) ok(into any, args ...string) result {
	w.t.Helper()
	r := w.cli(nil, args...)
	if r.code != 0 {
		w.t.Fatalf("paypage %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	if into != nil {
		if err := json.Unmarshal([]byte(r.stdout), into); err != nil {
			w.t.Fatalf("paypage %s: not JSON: %v\n%s", strings.Join(args, " "), err, r.stdout)
		}
	}
	return r
}

// fails runs a command that must fail with exit code 1 and a message.
func (w *world) fails(msg string, args ...string) {
	w.t.Helper()
	if r := w.cli(nil, args...); r.code != 1 || !strings.Contains(r.stderr, msg) {
		w.t.Fatalf("paypage %s: exit %d, want 1 with %q\n%s%s", strings.Join(args, " "), r.code, msg, r.stdout, r.stderr)
	}
}

// merchant adds a merchant and returns its ID and secret key.
func (w *world) merchant(name string, args ...string) (id, key string) {
	w.t.Helper()
	var m map[string]any
	w.ok(&m, append([]string{"merchant", "add", "--name", name}, args...)...)
	return m["id"].(string), m["secret_key"].(string)
}

// processor adds a processor and returns its ID and secret key.
func (w *world) processor(name string, args ...string) (id, key string) {
	w.t.Helper()
	var p map[string]any
	w.ok(&p, append([]string{"processor", "add", "--name", name}, args...)...)
	return p["id"].(string), p["secret_key"].(string)
}

// audit reads the whole audit trail (of one merchant, with --merchant).
func (w *world) audit(args ...string) []audit.Event {
	w.t.Helper()
	var evs []audit.Event
	w.ok(&evs, append([]string{"audit", "list", "--limit", "10000"}, args...)...)
	return evs
}

// service is a running "paypage serve".
type service struct {
	w    *world
	cmd  *exec.Cmd
	url  string
	logs *syncBuffer
	done chan error
}

// serve starts the service with extra environment and waits until it
// answers and its operator socket is there.
func (w *world) serve(extra ...string) *service {
	w.t.Helper()
	s, err := w.start(extra...)
	if err != nil {
		w.t.Fatalf("serve: %v\n%s", err, s.logs.String())
	}
	return s
}

// start is serve that reports a service that ended instead of failing.
func (w *world) start(extra ...string) (*service, error) {
	w.t.Helper()
	addr := freeAddr(w.t)
	for _, kv := range extra {
		if a, ok := strings.CutPrefix(kv, "PAYPAGE_ADDR="); ok {
			addr = strings.Replace(a, "0.0.0.0", "127.0.0.1", 1)
		}
	}
	s := &service{w: w, url: "http://" + addr, logs: &syncBuffer{}, done: make(chan error, 1)}
	s.cmd = exec.Command(w.bin, "serve")
	s.cmd.Env = w.environ(append([]string{"PAYPAGE_ADDR=" + addr}, extra...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	w.t.Cleanup(s.stop)
	sock := filepath.Join(w.env["PAYPAGE_DATA"], "paypage.sock")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			if resp, err := http.Get(s.url + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return s, nil
				}
			}
		}
		select {
		case err := <-s.done:
			s.done <- err
			if err == nil {
				err = errors.New("exited")
			}
			return s, err
		default:
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("serve never ready:\n%s", s.logs.String())
		}
	}
}

// stop ends the service as an operator would (SIGTERM) and waits.
func (s *service) stop() { s.signal(syscall.SIGTERM) }

// kill ends it at once (SIGKILL): nothing cleans up.
func (s *service) kill() { s.signal(syscall.SIGKILL) }

func (s *service) signal(sig syscall.Signal) {
	select {
	case err := <-s.done:
		s.done <- err
		return
	default:
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

// as is the service seen by a merchant (and a processor): the harness's
// env, for its API calls and its browser.
func (s *service) as(merchant, key, procKey string) *env {
	return &env{t: s.w.t, url: s.url, merchant: merchant, key: key, procKey: procKey, seen: &syncBuffer{}, logs: s.logs}
}

// paidToken pays a sandbox card in a new session of e's merchant and
// returns the card's token.
func (e *env) paidToken(number string) string {
	e.t.Helper()
	id := e.session(nil)["id"].(string)
	b := e.browser()
	if p := b.follow(b.pay(id, number, "981")); !strings.Contains(p.body, "Payment successful") {
		e.t.Fatalf("payment with %s:\n%s", number, p.body)
	}
	_, s, _ := e.api("GET", "/v1/sessions/"+id, e.key, nil)
	return s["payment"].(map[string]any)["card"].(map[string]any)["token"].(string)
}

// logged waits for a line with want in the service's log (the process
// writes it through a pipe, a moment after it answers).
func (s *service) logged(want string) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(s.logs.String(), want) {
			return true
		}
	}
	return false
}
