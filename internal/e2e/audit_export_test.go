package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/audit"
)

// audit export writes every record not exported yet as JSON lines, marks
// them, and the trail is then capped at --audit-max-records by removing
// exported records only: beside a running service and without one, on
// both stores.
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

		// Without the service, to stdout; the file holds everything once.
		svc.stop()
		r = w.ok(nil, "audit", "export")
		var more int
		sc := bufio.NewScanner(strings.NewReader(r.stdout))
		for sc.Scan() {
			var e map[string]any
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("not a JSON line: %q", sc.Text())
			}
			if e["id"] == lines[13]["id"] {
				t.Fatal("a record exported twice")
			}
			more++
		}
		if more != 12 || len(w.audit()) != 6 { // the eleven, and the refused mark's record
			t.Fatalf("second export: %d records; %d left", more, len(w.audit()))
		}
	})
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
