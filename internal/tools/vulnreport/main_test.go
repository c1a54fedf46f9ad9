package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// A reached vulnerability in a required module fails the check; one in the
// standard library fails it when its fix is newer than the Go the binaries
// are built with (or, without -go, than the Go it was found in), and with
// no fix released only with -strict; one only imported never.
func TestReport(t *testing.T) {
	t.Parallel()
	const (
		stdlibImported = `{"finding": {"osv": "GO-1", "fixed_version": "v1.26.9", "trace": [{"module": "stdlib", "version": "v1.26.8"}]}}` + "\n"
		stdlibReached  = `{"finding": {"osv": "GO-1", "fixed_version": "v1.26.9", "trace": [{"module": "stdlib", "version": "v1.26.8", "package": "net/http", "function": "Get"}]}}` + "\n"
		stdlibLater    = `{"finding": {"osv": "GO-4", "fixed_version": "v1.26.12", "trace": [{"module": "stdlib", "version": "v1.26.11", "package": "net/http", "function": "Get"}]}}` + "\n"
		stdlibNoFix    = `{"finding": {"osv": "GO-5", "trace": [{"module": "stdlib", "version": "v1.26.11", "package": "net/http", "function": "Get"}]}}` + "\n"
		moduleImported = `{"finding": {"osv": "GO-2", "trace": [{"module": "example.com/m", "version": "v1.0.0", "package": "example.com/m/p"}]}}` + "\n"
		moduleReached  = `{"finding": {"osv": "GO-3", "fixed_version": "v1.2.0", "trace": [{"module": "example.com/m", "version": "v1.0.0", "function": "F"}]}}` + "\n"
	)
	built := policy{goVersion: "v1.26.11"}
	for _, tt := range []struct {
		name, stream string
		p            policy
		fail         bool
	}{
		{"stdlib reached, fixed in the Go the binaries are built with", stdlibImported + stdlibReached, built, false},
		{"stdlib reached, fixed after the Go it was found in", stdlibReached, policy{}, true},
		{"stdlib reached, fixed after the Go the binaries are built with", stdlibLater, built, true},
		{"stdlib imported only, fixed later", strings.Replace(stdlibLater, `, "package": "net/http", "function": "Get"`, "", 1), built, false},
		{"stdlib reached, no fix released", stdlibNoFix, built, false},
		{"stdlib reached, no fix released, strict", stdlibNoFix, policy{strict: true, goVersion: "v1.26.11"}, true},
		{"module imported only", moduleImported, policy{strict: true}, false},
		{"module reached", stdlibImported + moduleReached, built, true},
		{"nothing", `{"config": {}}`, built, false},
	} {
		found, err := read(strings.NewReader(tt.stream))
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if got := report(&out, found, tt.p); got != tt.fail {
			t.Errorf("%s: fail = %v, want %v\n%s", tt.name, got, tt.fail, out.String())
		}
	}
	if _, err := read(strings.NewReader("not json")); err == nil {
		t.Error("garbage read as a report")
	}
}

// buildGo is the Go release the Dockerfile builds the image with, and the
// toolchain go.mod pins: the two must agree, since make check judges the
// standard library by go.mod's (scripts/vulncheck.sh).
func buildGo(t *testing.T) string {
	t.Helper()
	read := func(name string) string {
		b, err := os.ReadFile("../../../" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	image := regexp.MustCompile(`(?m)^FROM golang:(1\.\d+\.\d+)`).FindStringSubmatch(read("Dockerfile"))
	toolchain := regexp.MustCompile(`(?m)^toolchain go(1\.\d+\.\d+)$`).FindStringSubmatch(read("go.mod"))
	if image == nil || toolchain == nil {
		t.Fatalf("the Dockerfile's Go %v, go.mod's toolchain %v: pin both", image, toolchain)
	}
	if image[1] != toolchain[1] {
		t.Fatalf("the Dockerfile builds with Go %s, go.mod pins the toolchain go%s: make them agree", image[1], toolchain[1])
	}
	return "v" + image[1]
}

// TestToolchainAgrees: the Dockerfile's Go is go.mod's toolchain, and
// scripts/vulncheck.sh runs govulncheck with it and judges by it.
func TestToolchainAgrees(t *testing.T) {
	t.Parallel()
	buildGo(t)
	b, err := os.ReadFile("../../../scripts/vulncheck.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`GOTOOLCHAIN="$toolchain"`, `-go "$toolchain"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("scripts/vulncheck.sh does not say %s", want)
		}
	}
}

// A reached standard-library vulnerability in the image's Go, fixed only in
// a later release, fails make check: the shipped image carries it.
func TestStdlibVulnUnfixedInTheImageFails(t *testing.T) {
	t.Parallel()
	image := buildGo(t)
	minor := image[:strings.LastIndex(image, ".")+1]
	fixed := minor + "99" // a fix that comes after the image's release
	stream := `{"finding": {"osv": "GO-9999-0001", "fixed_version": "` + fixed + `", "trace": [{"module": "stdlib", "version": "` + image + `", "package": "net/http", "function": "Serve"}]}}`
	found, err := read(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []policy{{}, {goVersion: image}} {
		var out strings.Builder
		if !report(&out, found, p) {
			t.Errorf("a reached net/http vulnerability in %s (the image's Go), fixed only in %s, passes make check (%+v):\n%s", image, fixed, p, out.String())
		}
	}
}
