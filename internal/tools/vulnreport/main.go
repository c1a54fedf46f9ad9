// Command vulnreport reads govulncheck's JSON output (-format json) on
// stdin and decides: a vulnerability that the code reaches in a module the
// project requires fails the check; one in the Go standard library fails it
// when its fix is newer than the Go release the binaries are built with
// (-go, the toolchain go.mod pins and the Dockerfile builds with), so a
// shipped image that carries it never passes; one fixed in that release is
// listed (the checking Go was older), and one with no fix released fails
// only with -strict. scripts/vulncheck.sh runs it.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"golang.org/x/mod/semver"
)

// message is one object of govulncheck's JSON stream; only findings matter.
type message struct {
	Finding *struct {
		OSV          string `json:"osv"`
		FixedVersion string `json:"fixed_version"`
		Trace        []struct {
			Module   string `json:"module"`
			Version  string `json:"version"`
			Package  string `json:"package"`
			Function string `json:"function"`
		} `json:"trace"`
	} `json:"finding"`
}

// finding is one vulnerability as the report shows it.
type finding struct {
	id, module, version, fixed string
	called                     bool // reached from our code, not only imported or required
}

// policy is what a finding is judged against.
type policy struct {
	// strict fails on reached standard-library vulnerabilities with no fix
	// released too.
	strict bool
	// goVersion is the Go release the binaries are built with, as a module
	// version ("v1.26.11"); "" judges each standard-library finding against
	// the release it was found in.
	goVersion string
}

func main() {
	var p policy
	flag.BoolVar(&p.strict, "strict", false, "fail on reached vulnerabilities in the standard library that no Go release fixes yet")
	goVersion := flag.String("go", "", "the Go release the binaries are built with (go1.26.11): a reached standard-library vulnerability fixed only after it fails")
	flag.Parse()
	if *goVersion != "" {
		if p.goVersion = "v" + strings.TrimPrefix(*goVersion, "go"); !semver.IsValid(p.goVersion) {
			fmt.Fprintf(os.Stderr, "vulnreport: -go %q is not a Go release\n", *goVersion)
			os.Exit(2)
		}
	}
	found, err := read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulnreport:", err)
		os.Exit(2)
	}
	fail := report(os.Stdout, found, p)
	if fail {
		os.Exit(1)
	}
}

// read collects the findings, one per vulnerability and module, keeping
// whether any trace reaches a function.
func read(r io.Reader) ([]finding, error) {
	dec := json.NewDecoder(r)
	byKey := map[string]*finding{}
	for {
		var m message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not govulncheck's JSON: %w", err)
		}
		if m.Finding == nil || len(m.Finding.Trace) == 0 {
			continue
		}
		t := m.Finding.Trace[0]
		key := m.Finding.OSV + " " + t.Module
		f := byKey[key]
		if f == nil {
			f = &finding{id: m.Finding.OSV, module: t.Module, version: t.Version, fixed: m.Finding.FixedVersion}
			byKey[key] = f
		}
		f.called = f.called || t.Function != ""
	}
	out := make([]finding, 0, len(byKey))
	for _, f := range byKey {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].module+out[i].id < out[j].module+out[j].id })
	return out, nil
}

// report writes what was found and returns whether the check fails.
func report(w io.Writer, found []finding, p policy) bool {
	fail := false
	for _, f := range found {
		verdict, fails := judge(f, p)
		fail = fail || fails
		fixed := f.fixed
		if fixed == "" {
			fixed = "no fix yet"
		}
		fmt.Fprintf(w, "%s in %s@%s (fixed in %s): %s\n", f.id, f.module, f.version, fixed, verdict)
	}
	if !fail {
		fmt.Fprintf(w, "vulncheck: no known vulnerability reached in a required module or in the Go the binaries are built with (%d findings listed)\n", len(found))
	}
	return fail
}

// judge says what a finding means, and whether it fails the check.
func judge(f finding, p policy) (string, bool) {
	switch {
	case !f.called:
		return "noted (imported, not reached)", false
	case f.module != "stdlib":
		return "FAILS the check: reached from our code", true
	case f.fixed == "" && p.strict:
		return "FAILS the check (-strict): reached from our code, and no Go release fixes it yet", true
	case f.fixed == "":
		return "reached from our code; no Go release fixes it yet", false
	}
	built := p.goVersion
	if built == "" {
		built = f.version
	}
	if semver.Compare(f.fixed, built) > 0 {
		return fmt.Sprintf("FAILS the check: reached from our code, and the Go the binaries are built with (%s) does not fix it: pin %s or later (go.mod's toolchain and the Dockerfile)", built, f.fixed), true
	}
	return fmt.Sprintf("reached, but fixed in the Go the binaries are built with (%s); the checking Go is older", built), false
}
