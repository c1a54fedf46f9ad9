package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// Review of issue 13 (reproduction, fails today): a vulnerability in the
// standard library that our code reaches never fails make check without
// -strict (main.go:94-99), even when the Go release the Dockerfile pins
// (golang:1.26.11) does not fix it either: the shipped image carries it and
// the check passes. Today's run lists 12 reached standard-library findings
// for the local go1.26.8 (and passes); a GO-2026-xxxx fixed in v1.26.12
// would pass the same way. The check should compare each fix against the
// Dockerfile's Go version (and run with that toolchain), failing when the
// image is not fixed.
func TestReviewStdlibVulnUnfixedInTheImageFails(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`FROM golang:(1\.\d+\.)(\d+)`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("no golang image in the Dockerfile")
	}
	image := "v" + m[1] + m[2]
	fixed := "v" + m[1] + "99" // a fix that comes after the image's release
	stream := `{"finding": {"osv": "GO-9999-0001", "fixed_version": "` + fixed + `", "trace": [{"module": "stdlib", "version": "` + image + `", "package": "net/http", "function": "Serve"}]}}`
	found, err := read(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if !report(&out, found, false) {
		t.Errorf("a reached net/http vulnerability in %s (the image's Go), fixed only in %s, passes make check:\n%s", image, fixed, out.String())
	}
}
