// Command vulnreport reads govulncheck's JSON output (-format json) on
// stdin and decides: a vulnerability that the code reaches in a module the
// project requires fails the check; one in the Go standard library is
// listed with the version that fixes it, and fails the check only with
// -strict, since the toolchain that builds the image is pinned on its own
// (the Dockerfile) and the one that runs the check may not be ours to
// choose (GOTOOLCHAIN=local). scripts/vulncheck.sh runs it.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
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

func main() {
	strict := flag.Bool("strict", false, "fail on vulnerabilities in the standard library too")
	flag.Parse()
	found, err := read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulnreport:", err)
		os.Exit(2)
	}
	fail := report(os.Stdout, found, *strict)
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
func report(w io.Writer, found []finding, strict bool) bool {
	fail := false
	for _, f := range found {
		verdict := "noted (imported, not reached)"
		switch {
		case f.called && f.module != "stdlib":
			verdict, fail = "FAILS the check: reached from our code", true
		case f.called && strict:
			verdict, fail = "FAILS the check (-strict): reached from our code", true
		case f.called:
			verdict = "reached from our code: build with a Go release that fixes it (the Dockerfile pins one)"
		}
		fixed := f.fixed
		if fixed == "" {
			fixed = "no fix yet"
		}
		fmt.Fprintf(w, "%s in %s@%s (fixed in %s): %s\n", f.id, f.module, f.version, fixed, verdict)
	}
	if !fail {
		fmt.Fprintf(w, "vulncheck: no known vulnerability reached in a required module (%d findings listed)\n", len(found))
	}
	return fail
}
