package e2e

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The operator socket is trusted both ways, by the kernel's word, and
// these tests play the other users: they run as root.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("this test runs processes as other users and sets login uids: run it as root")
	}
}

// impostorScript listens on the operator socket's path and answers every
// request with a plausible success, keeping what it was sent.
const impostorScript = `
import socket, os, sys, json
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o666)
s.listen(16)
while True:
    c, _ = s.accept()
    data = b""
    while not data.endswith(b"\n"):
        d = c.recv(65536)
        if not d:
            break
        data += d
    with open(log, "ab") as f:
        f.write(data)
    try:
        c.sendall(json.dumps({"result": {"id": "prc_fake", "secret_key": "psk_test_prc_fake_AAAA", "disabled": True}}).encode() + b"\n")
    except OSError:
        pass
    c.close()
`

// startImpostor runs impostorScript as nobody (uid 65534) on path, and
// waits until it listens. What it receives goes to captured, outside the
// data directory.
func startImpostor(t *testing.T, path string) (captured string, stop func()) {
	t.Helper()
	dir, err := os.MkdirTemp("", "impostor-") // in /tmp, which nobody can reach
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	captured = filepath.Join(dir, "impostor.log")
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", impostorScript, path, captured)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			os.Remove(path)
		}
	}
	t.Cleanup(stop)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 && st.Mode().Perm() == 0o666 {
			return captured, stop // bound, chmodded, then listening at once
		}
		if time.Now().After(deadline) {
			t.Fatal("impostor never listened")
		}
	}
}

// Another local user cannot stand in for the service. A data directory
// that others may write in is refused by serve and by every command; a
// socket planted there while it was open (by nobody, uid 65534) gets no
// command, whether its file is left as it was or made to look like the
// operator's (the kernel names who answers); and serve on Redis does not
// take it for another replica. The processor whose key leaked is still
// rolled for real once the real service answers.
func TestOperatorSocketRefusesImpostors(t *testing.T) {
	onBothStores(t, func(t *testing.T, w *world) {
		needRoot(t)
		// A data directory that nobody can reach once it is open: /tmp/...
		// (the test's own temporary directories are closed to others).
		dir, err := os.MkdirTemp("", "paypage-data-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		w.env["PAYPAGE_DATA"] = dir
		sock := filepath.Join(dir, "paypage.sock")
		// serve checks the directory before it opens anything: no store, no
		// development key in a directory open to all.
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if s, err := w.start(); err == nil || !s.logged("others may write in the data directory") {
			t.Fatalf("serve on a new data directory others may write: %v\n%s", err, s.logs.String())
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("serve wrote %v in a data directory others may write", ents)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		svc := w.serve()
		mid, key := w.merchant("Shop")
		pid, pkey := w.processor("Acquirer", "--merchants", mid)
		token := svc.as(mid, key, pkey).paidToken("4242 4242 4242 4242")
		svc.stop()

		// An installer left the data directory open to everyone.
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if s, err := w.start(); err == nil || !s.logged("others may write in the data directory") || !s.logged("chmod 700") {
			t.Fatalf("serve on a data directory others may write: %v\n%s", err, s.logs.String())
		}
		if r := w.cli(nil, "processor", "roll-key", "--id", pid, "--old-expires-in", "0s"); r.code != 1 || !strings.Contains(r.stderr, "others may write in the data directory") {
			t.Fatalf("a command in a data directory others may write: %+v", r)
		}

		// Meanwhile nobody planted a socket; then the directory was closed.
		captured, stopImpostor := startImpostor(t, sock)
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if r := w.cli(nil, "processor", "roll-key", "--id", pid, "--old-expires-in", "0s"); r.code != 1 || !strings.Contains(r.stderr, "belongs to uid 65534") {
			t.Fatalf("a command to nobody's socket: %+v", r)
		}
		// The file made to look like the operator's: the kernel still names
		// who answers.
		if err := os.Chown(sock, 0, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(sock, 0o600); err != nil {
			t.Fatal(err)
		}
		if r := w.cli(nil, "processor", "disable", "--id", pid); r.code != 1 || !strings.Contains(r.stderr, "served by uid 65534") {
			t.Fatalf("a command to a socket nobody serves: %+v", r)
		}
		// serve does not take nobody for another replica.
		if s, err := w.start(); err == nil || !s.logged("served by uid 65534") {
			t.Fatalf("serve beside nobody's socket: %v\n%s", err, s.logs.String())
		}
		if sent, _ := os.ReadFile(captured); len(sent) != 0 {
			t.Fatalf("the impostor received %q", sent)
		}
		stopImpostor()

		// Nothing was done; the real service does it.
		svc = w.serve()
		e := svc.as(mid, key, pkey)
		if code, _, _ := e.api("POST", "/v1/detokenize", pkey, map[string]any{"token": token}); code != 200 {
			t.Fatalf("before the roll: %d", code)
		}
		w.ok(nil, "processor", "roll-key", "--id", pid, "--old-expires-in", "0s")
		if code, _, _ := e.api("POST", "/v1/detokenize", pkey, map[string]any{"token": token}); code != 401 {
			t.Fatalf("the rolled-out key: %d", code)
		}
	})
}

// One failed accept() (the process out of file descriptors for a moment,
// as under a connection flood) does not end the operator socket: it is
// logged and tried again, and once the squeeze is over commands go
// through as before.
func TestOperatorSocketSurvivesAcceptErrors(t *testing.T) {
	w := newWorld(t, "bolt")
	svc := w.serve()
	pid := svc.cmd.Process.Pid
	fds := func() int {
		ents, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
		return len(ents)
	}
	limit := fds() + 4
	if out, err := exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile="+strconv.Itoa(limit)+":"+strconv.Itoa(limit)).CombinedOutput(); err != nil {
		t.Fatalf("prlimit: %v %s", err, out)
	}
	var conns []net.Conn
	for i := 0; i < 12; i++ {
		c, err := net.Dial("tcp", strings.TrimPrefix(svc.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for deadline := time.Now().Add(5 * time.Second); fds() < limit && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
	}
	done := make(chan result, 1)
	go func() { done <- w.cli(nil, "merchant", "list") }() // during the squeeze: waits in the backlog
	if !svc.logged("operator socket: accept failed; trying again") {
		t.Fatalf("the failed accept is not logged:\n%s", svc.logs.String())
	}
	for _, c := range conns {
		c.Close()
	}
	// Ease the limit again: the process is healthy.
	_ = exec.Command("prlimit", "--pid", strconv.Itoa(pid), "--nofile=4096:4096").Run()
	t.Logf("the command sent during the squeeze: %+v", <-done)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(svc.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("service never ready again")
		}
	}
	sock := filepath.Join(w.env["PAYPAGE_DATA"], "paypage.sock")
	_, statErr := os.Stat(sock)
	if r := w.cli(nil, "merchant", "list"); r.code != 0 {
		t.Fatalf("the service is ready again but operator commands fail (socket: %v): exit %d %s", statErr, r.code, r.stderr)
	}
}

// The audit trail names the person behind a shared account: the login uid
// (which sudo and su keep) beside the uid, through the socket and when the
// command opens the store itself.
func TestAuditNamesTheLogin(t *testing.T) {
	w := newWorld(t, "bolt")
	needRoot(t)
	const loginUID = 1000
	login := strconv.Itoa(loginUID)
	if u, err := user.LookupId(login); err == nil {
		login = u.Username
	}
	me, _ := user.Current()
	// As after "ssh alice@host; sudo paypage ...": the login uid is set
	// once by the login and kept across the change of user.
	asLogin := func(args ...string) result {
		t.Helper()
		cmd := exec.Command("sh", append([]string{"-c", `echo ` + strconv.Itoa(loginUID) + ` > /proc/self/loginuid && exec "$0" "$@"`, w.bin}, args...)...)
		cmd.Env = w.environ()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("paypage %v as login %d: %v\n%s", args, loginUID, err, out)
		}
		return result{stdout: string(out)}
	}
	svc := w.serve()
	asLogin("merchant", "add", "--name", "Through the socket")
	if !svc.logged(`"user":"` + me.Username + `","uid":0,"login":"` + login + `"`) {
		t.Fatalf("the service's log does not name the login:\n%s", svc.logs.String())
	}
	svc.stop()
	asLogin("merchant", "add", "--name", "Directly")
	recs := w.audit()
	if len(recs) != 2 {
		t.Fatalf("audit: %+v", recs)
	}
	for i, via := range []string{"socket", "direct"} {
		r, o := recs[i], recs[i].Operator
		if o == nil || o.Via != via || o.UID != 0 || o.User != me.Username || o.LoginUID == nil || *o.LoginUID != loginUID || o.Login != login || r.Actor != "operator:"+login {
			t.Fatalf("%s: %+v %+v", via, r, o)
		}
	}
}
