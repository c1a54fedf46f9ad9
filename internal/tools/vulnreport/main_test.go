package main

import (
	"strings"
	"testing"
)

// A reached vulnerability in a required module fails the check; one in the
// standard library fails it only with -strict; one only imported never.
func TestReport(t *testing.T) {
	t.Parallel()
	stream := `{"config": {"scanner_name": "govulncheck"}}
{"finding": {"osv": "GO-1", "fixed_version": "v1.26.9", "trace": [{"module": "stdlib", "version": "v1.26.8"}]}}
{"finding": {"osv": "GO-1", "fixed_version": "v1.26.9", "trace": [{"module": "stdlib", "version": "v1.26.8", "package": "net/http", "function": "Get"}]}}
{"finding": {"osv": "GO-2", "trace": [{"module": "example.com/m", "version": "v1.0.0", "package": "example.com/m/p"}]}}
`
	for _, tt := range []struct {
		name, stream string
		strict, fail bool
	}{
		{"stdlib reached", stream, false, false},
		{"stdlib reached, strict", stream, true, true},
		{"module imported only", `{"finding": {"osv": "GO-2", "trace": [{"module": "example.com/m", "version": "v1.0.0", "package": "example.com/m/p"}]}}`, true, false},
		{"module reached", stream + `{"finding": {"osv": "GO-3", "fixed_version": "v1.2.0", "trace": [{"module": "example.com/m", "version": "v1.0.0", "function": "F"}]}}`, false, true},
		{"nothing", `{"config": {}}`, true, false},
	} {
		found, err := read(strings.NewReader(tt.stream))
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if got := report(&out, found, tt.strict); got != tt.fail {
			t.Errorf("%s: fail = %v, want %v\n%s", tt.name, got, tt.fail, out.String())
		}
	}
	if _, err := read(strings.NewReader("not json")); err == nil {
		t.Error("garbage read as a report")
	}
}
