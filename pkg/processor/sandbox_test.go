package processor_test

import (
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/paypage/paypage/pkg/processor"
	"github.com/paypage/paypage/pkg/threeds"
)

// SandboxNumbers is the README's sandbox table, and holds every number the
// sandbox processor and issuer decide by: the per-card limit skips exactly
// these.
func TestSandboxNumbersAreTheTable(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(readme), "\n## Sandbox")
	if i < 0 {
		t.Fatal("no Sandbox section in the README")
	}
	var table []string
	row := regexp.MustCompile(`(?m)^\| ([0-9][0-9 ]{13,22}) \|`)
	for _, m := range row.FindAllStringSubmatch(string(readme[i:]), -1) {
		table = append(table, strings.ReplaceAll(m[1], " ", ""))
	}
	got := slices.Clone(processor.SandboxNumbers)
	sort.Strings(got)
	sort.Strings(table)
	if !slices.Equal(got, table) {
		t.Fatalf("SandboxNumbers %v\nREADME table %v", got, table)
	}
	for n := range processor.SandboxOutcomes {
		if !slices.Contains(got, n) {
			t.Errorf("processor sandbox number %s missing", n)
		}
	}
	for n := range threeds.SandboxStatus {
		if !slices.Contains(got, n) {
			t.Errorf("issuer sandbox number %s missing", n)
		}
	}
}
