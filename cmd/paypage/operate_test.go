package main

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Every operator command works beside a running service, on both stores:
// it goes through the service's socket (mode 0600), the kernel names the
// operator in the audit trail, what it made is live in the service at once,
// and with the service gone the same commands open the store themselves.
func TestOperatorBesideService(t *testing.T) {
	forEachStore(t, func(t *testing.T, w *world) {
		svc := w.serve()
		sock := filepath.Join(w.env["PAYPAGE_DATA"], "paypage.sock")
		st, err := os.Stat(sock)
		if err != nil || st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
			t.Fatalf("socket %v %v", st.Mode(), err)
		}
		var m map[string]string
		w.ok(&m, "merchant", "add", "--name", "Air Astana")
		// The service knows the new key at once: the command went into its store.
		if code, s := svc.session(m["secret_key"]); code != 201 {
			t.Fatalf("session with the new key: %d %v", code, s)
		}
		w.ok(nil, "processor", "add", "--name", "Acquirer")
		var ks map[string]any
		w.ok(&ks, "keys", "status")
		w.ok(nil, "keys", "rotate")
		w.ok(nil, "events", "list")

		me, _ := user.Current()
		recs := w.audit()
		if len(recs) != 3 {
			t.Fatalf("audit: %+v", recs)
		}
		for _, r := range recs {
			if r.Operator == nil || r.Operator.Via != "socket" || r.Operator.UID != os.Getuid() || r.Operator.User != me.Username ||
				r.Actor != "operator:"+me.Username || r.Operator.PID == 0 || r.Operator.PID == svc.cmd.Process.Pid {
				t.Fatalf("operator not named by the kernel: %+v %+v", r, r.Operator)
			}
		}
		if recs[0].Action != "merchant.add" || recs[0].Object != m["id"] || recs[1].Action != "processor.add" || recs[2].Action != "keys.rotate" {
			t.Fatalf("audit: %+v", recs)
		}
		if !strings.Contains(svc.logs.String(), `"msg":"operator command","command":"merchant add","user":"`+me.Username+`","uid":`+strconv.Itoa(os.Getuid())) {
			t.Fatalf("the service does not log the operator's command:\n%s", svc.logs.String())
		}

		// A command meant for another store is refused, not carried out there.
		r := w.runEnv([]string{"PAYPAGE_STORE=redis://127.0.0.1:1/0"}, "merchant", "add", "--name", "Elsewhere")
		if r.code != 1 || !strings.Contains(r.stderr, "runs on another store") {
			t.Fatalf("another store through the socket: %+v", r)
		}

		// The service stopped: the socket is gone and commands open the store.
		svc.stop()
		if exists(sock) {
			t.Fatal("the socket outlived the service")
		}
		w.ok(nil, "merchant", "add", "--name", "Offline shop")
		recs = w.audit()
		if last := recs[len(recs)-1]; last.Action != "merchant.add" || last.Operator == nil || last.Operator.Via != "direct" || last.Operator.UID != os.Getuid() {
			t.Fatalf("direct: %+v", last)
		}

		// A service killed outright leaves its socket behind: commands see
		// nobody answers and open the store; the next serve replaces it.
		svc = w.serve()
		svc.kill()
		if !exists(sock) {
			t.Fatal("a killed service removed its socket")
		}
		w.ok(nil, "keys", "status")
		w.serve()
		w.ok(nil, "processor", "add", "--name", "After restart")
		if last := w.audit(); last[len(last)-1].Operator.Via != "socket" {
			t.Fatalf("after restart: %+v", last[len(last)-1])
		}
	})
}
