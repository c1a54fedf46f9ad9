package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/audit"
)

// audit export writes every record not exported yet as JSON lines, marks
// them, and the trail is then capped at --audit-max-records by removing
// exported records only: beside a running service and without one, on
// both stores. To a pipe it marks nothing unless told (--mark), and says
// how to move the mark; stdout redirected to a file is synced and marked.
func TestAuditExportAndCap(t *testing.T) {
	onBothStores(t, func(t *testing.T, w *world) {
		w.env["PAYPAGE_AUDIT_MAX_RECORDS"] = "5"
		svc := w.serve()
		addMerchants := func(n int) {
			for i := 0; i < n; i++ {
				w.ok(nil, "merchant", "add", "--name", "Shop")
			}
		}
		addMerchants(12) // twelve audit records
		out := filepath.Join(t.TempDir(), "audit.jsonl")
		r := w.ok(nil, "audit", "export", "--out", out, "--batch", "5")
		lines := readLines(t, out)
		// Three batches (5, 5, then 4 with the records of the first two
		// marks); the third mark's own record waits for the next export.
		if len(lines) != 14 || !strings.Contains(r.stderr, "exported 14 records") {
			t.Fatalf("%d lines exported: %s", len(lines), r.stderr)
		}
		if lines[0]["action"] != "merchant.add" || lines[5]["action"] != "merchant.add" || lines[12]["action"] != "audit.export" {
			t.Fatalf("exported %v", lines)
		}
		// The last mark trimmed to five, then recorded itself: six.
		left := w.audit()
		if len(left) != 6 || left[5].Action != "audit.export" || left[5].Operator == nil || left[0].Action != "merchant.add" {
			t.Fatalf("after the export the trail holds %d records: %+v", len(left), left)
		}
		if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("export file: %v %v", st, err)
		}

		// Records not exported are never removed, however many.
		addMerchants(10)
		if n := len(w.audit()); n != 16 {
			t.Fatalf("%d records, want 16: unexported records were removed", n)
		}
		var u struct {
			Mark    audit.Mark    `json:"mark"`
			Records []audit.Event `json:"records"`
		}
		w.ok(&u, "audit", "unexported")
		if len(u.Records) != 11 || u.Mark.Exported != 14 || u.Mark.Through != lines[13]["id"] {
			t.Fatalf("unexported: %d records, mark %+v", len(u.Records), u.Mark)
		}
		// A mark from a stale position is refused.
		if r := w.cli(nil, "audit", "mark-exported", "--after", "", "--through", u.Records[0].ID); r.code == 0 {
			t.Fatalf("a stale mark moved: %s", r.stdout)
		}

		// Without the service, to stdout. A pipe cannot be synced: the
		// records are written, the mark stays, and the command says how to
		// move it once they are safe.
		svc.stop()
		r = w.ok(nil, "audit", "export")
		piped := jsonLines(t, r.stdout)
		for _, e := range piped {
			if e["id"] == lines[13]["id"] {
				t.Fatal("a record exported twice")
			}
		}
		if len(piped) != 12 || !strings.Contains(r.stderr, "the mark stays") { // the eleven, and the refused mark's record
			t.Fatalf("export to a pipe: %d records\n%s", len(piped), r.stderr)
		}
		w.ok(&u, "audit", "unexported")
		if len(u.Records) != 12 || u.Mark.Through != lines[13]["id"] || len(w.audit()) != 17 {
			t.Fatalf("a pipe's export moved the mark or trimmed: mark %+v, %d unexported", u.Mark, len(u.Records))
		}
		told := regexp.MustCompile(`paypage (audit mark-exported --after "[^"]*" --through "[^"]*")`).FindStringSubmatch(r.stderr)
		if told == nil {
			t.Fatalf("no mark-exported command in\n%s", r.stderr)
		}
		last := piped[len(piped)-1]["id"].(string)
		w.ok(nil, "audit", "mark-exported", "--after", u.Mark.Through, "--through", last)
		if !strings.Contains(told[1], `--through "`+last+`"`) {
			t.Errorf("told %s; the last record written was %s", told[1], last)
		}
		if n := len(w.audit()); n != 6 { // trimmed to five, and the mark's record
			t.Fatalf("after mark-exported: %d records", n)
		}

		// To a pipe with --mark, the mark moves as it writes.
		w.ok(nil, "merchant", "add", "--name", "Shop")
		r = w.ok(nil, "audit", "export", "--mark")
		if got := jsonLines(t, r.stdout); len(got) != 2 || !strings.Contains(r.stderr, "exported 2 records") {
			t.Fatalf("export --mark to a pipe: %d records\n%s", len(got), r.stderr)
		}

		// Stdout redirected to a file is synced, and the mark moves.
		w.ok(nil, "merchant", "add", "--name", "Shop")
		f, err := os.OpenFile(filepath.Join(t.TempDir(), "redirected.jsonl"), os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := exec.Command(w.bin, "audit", "export")
		var stderr strings.Builder
		cmd.Env, cmd.Stdout, cmd.Stderr = w.environ(), f, &stderr
		if err := cmd.Run(); err != nil || !strings.Contains(stderr.String(), "exported 2 records") {
			t.Fatalf("export to a file on stdout: %v\n%s", err, stderr.String())
		}
		if got := readLines(t, f.Name()); len(got) != 2 {
			t.Fatalf("export to a file on stdout: %d records", len(got))
		}
		w.ok(&u, "audit", "unexported")
		if len(u.Records) != 1 || u.Records[0].Action != "audit.export" {
			t.Fatalf("after an export to a file on stdout: %d unexported", len(u.Records))
		}
	})
}

// jsonLines parses JSON lines.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		out = append(out, e)
	}
	return out
}

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		out = append(out, m)
	}
	return out
}
