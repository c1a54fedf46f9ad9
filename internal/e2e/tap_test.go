package e2e

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// tap is the harness's HTTP path to the JSON APIs: every request a test
// sends and every answer it gets through env.client pass it. It checks each
// answer against the API's description (openapi_test.go), and each request
// too: one the description refuses must be one the server refused. It keeps
// what the shop could see (the answers to the merchant's key) for the
// card-data scan.
type tap struct {
	e    *env
	next http.RoundTripper // nil: http.DefaultTransport
}

func (t *tap) RoundTrip(req *http.Request) (*http.Response, error) {
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	var sent []byte
	if req.GetBody != nil {
		if rc, err := req.GetBody(); err == nil {
			sent, _ = io.ReadAll(rc)
			rc.Close()
		}
	}
	resp, err := next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	// A redirect (the router cleaning a path such as /v1/x/../) is followed
	// by the client, and the answer it leads to is checked.
	if strings.HasPrefix(req.URL.Path, "/v1/") && (resp.StatusCode < 300 || resp.StatusCode >= 400) {
		if err := checkAnswer(req, resp.StatusCode, resp.Header, body); err != nil {
			t.e.t.Errorf("openapi.yaml does not describe the answer to %s %s (%d): %v\n%.2000s", req.Method, req.URL.Path, resp.StatusCode, err, body)
		}
		if err := agree(req, sent, resp.StatusCode); err != nil {
			t.e.t.Errorf("%s %s: %v\n%.2000s", req.Method, req.URL.Path, err, sent)
		}
	}
	if t.e.key != "" && req.Header.Get("Authorization") == "Bearer "+t.e.key {
		t.e.seen.Write(body)
	}
	return resp, nil
}
