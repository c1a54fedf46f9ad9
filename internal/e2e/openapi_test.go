package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	paypage "github.com/paypage/paypage"
	"github.com/paypage/paypage/pkg/web"
)

// The API's description (openapi.yaml) is checked against what the service
// does: every answer of the JSON APIs that the end-to-end tests get through
// the harness (tap.go) and every webhook its receiver gets are validated
// against it, so the description cannot drift from the code.

// spec is openapi.yaml, loaded and validated once.
var spec = sync.OnceValues(func() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(paypage.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapi.yaml is not a valid description: %w", err)
	}
	return doc, nil
})

// checked counts what was checked, by operation, so a test can tell the
// check ran.
var checked = struct {
	sync.Mutex
	ops map[string]int
}{ops: map[string]int{}}

func countChecked(op string) {
	checked.Lock()
	checked.ops[op]++
	checked.Unlock()
}

// checkedEverything, after a whole run (no -run filter, not -short),
// fails it unless every operation and every webhook of the description was
// met at least once: the check covers the whole description, not a part.
func checkedEverything() int {
	if f := flag.Lookup("test.run"); testing.Short() || f == nil || f.Value.String() != "" {
		return 0
	}
	doc, err := spec()
	if err != nil {
		fmt.Println(err)
		return 1
	}
	checked.Lock()
	defer checked.Unlock()
	var missing []string
	total := 0
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if checked.ops[op.OperationID] == 0 {
				missing = append(missing, op.OperationID)
			}
		}
	}
	for typ := range doc.Webhooks {
		if checked.ops["webhook "+typ] == 0 {
			missing = append(missing, "webhook "+typ)
		}
	}
	for _, n := range checked.ops {
		total += n
	}
	slices.Sort(missing)
	fmt.Printf("openapi.yaml: %d answers and webhooks checked against it: %v\n", total, checked.ops)
	if len(missing) > 0 {
		fmt.Printf("FAIL: openapi.yaml: never met by the end-to-end tests: %v\n", missing)
		return 1
	}
	return 0
}

// routeOf finds the path of the description that a request's path matches,
// and its path parameters.
func routeOf(doc *openapi3.T, path string) (string, *openapi3.PathItem, map[string]string) {
	got := strings.Split(path, "/")
	for tmpl, item := range doc.Paths.Map() {
		want := strings.Split(tmpl, "/")
		if len(want) != len(got) {
			continue
		}
		params := map[string]string{}
		for i, w := range want {
			if name, ok := strings.CutPrefix(w, "{"); ok && got[i] != "" {
				params[strings.TrimSuffix(name, "}")] = got[i]
			} else if w != got[i] {
				params = nil
				break
			}
		}
		if params != nil {
			return tmpl, item, params
		}
	}
	return "", nil, nil
}

// checkAnswer validates one answer of the JSON APIs (a path under /v1/)
// against the description: its status must be one the operation lists,
// its body and headers of the schema given there. An answer for a path or
// method the description does not have must be the API's Error.
func checkAnswer(req *http.Request, status int, header http.Header, body []byte) error {
	doc, err := spec()
	if err != nil {
		return err
	}
	tmpl, item, params := routeOf(doc, req.URL.Path)
	var op *openapi3.Operation
	if item != nil {
		op = item.GetOperation(req.Method)
	}
	if op == nil {
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			return fmt.Errorf("%s %s answered %d but is not in openapi.yaml", req.Method, req.URL.Path, status)
		}
		countChecked("unrouted")
		return visit(doc.Components.Schemas["Error"].Value, body)
	}
	countChecked(op.OperationID)
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params,
			Route: &routers.Route{Spec: doc, Path: tmpl, PathItem: item, Method: req.Method, Operation: op},
		},
		Status: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// checkWebhook validates one webhook delivery (its headers and body)
// against the description's webhook of its type.
func checkWebhook(req *http.Request, body []byte) error {
	doc, err := spec()
	if err != nil {
		return err
	}
	typ := req.Header.Get("Paypage-Event-Type")
	item := doc.Webhooks[typ]
	if item == nil || item.Post == nil {
		return fmt.Errorf("webhook %q is not in openapi.yaml", typ)
	}
	countChecked("webhook " + typ)
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(body))
	return openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
		Request: r,
		Route:   &routers.Route{Spec: doc, Path: typ, PathItem: item, Method: http.MethodPost, Operation: item.Post},
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	})
}

func visit(s *openapi3.Schema, body []byte) error {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return s.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors())
}

// TestOpenAPIIsValid: the description loads and validates as OpenAPI 3.1
// (its examples included), and is what GET /v1/openapi.yaml serves.
func TestOpenAPIIsValid(t *testing.T) {
	doc, err := spec()
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() || len(doc.Webhooks) != 6 {
		t.Fatalf("openapi %s with %d webhooks", doc.OpenAPI, len(doc.Webhooks))
	}
	e := newEnv(t, envOpts{})
	st, body, h := e.raw("GET", "/v1/openapi.yaml", "", nil)
	if st != 200 || !bytes.Equal(body, paypage.OpenAPI) || !strings.HasPrefix(h.Get("Content-Type"), "application/yaml") {
		t.Fatalf("served: %d %s, %d bytes", st, h.Get("Content-Type"), len(body))
	}
}

// TestOpenAPICoversEveryRoute: every route the server answers under /v1 is
// described, with its method.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	doc, err := spec()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{noAccounts: true})
	n := 0
	for _, r := range e.app.Web.Routes() {
		if !strings.HasPrefix(r.Path, "/v1/") {
			continue
		}
		n++
		item := doc.Paths.Value(r.Path)
		if item == nil || item.GetOperation(r.Method) == nil {
			t.Errorf("%s %s is not in openapi.yaml", r.Method, r.Path)
		}
	}
	// And nothing is described that the server does not answer.
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !slices.Contains(e.app.Web.Routes(), webRoute(method, path)) {
				t.Errorf("openapi.yaml describes %s %s, which the server does not answer", method, path)
			}
		}
	}
	if n < 7 {
		t.Fatalf("only %d routes under /v1", n)
	}
}

// TestOpenAPICheckCatchesDrift: the check refuses answers that differ from
// the description (a field added, one missing, a wrong type, a status not
// listed), so a pass means something.
func TestOpenAPICheckCatchesDrift(t *testing.T) {
	t.Parallel()
	good := `{"id":"ses_x","object":"session","url":"http://127.0.0.1/pay/ses_x","status":"open","amount":1000,"currency":"KZT",` +
		`"success_url":"https://s.example/ok","cancel_url":"https://s.example/no","methods":["card"],"created":"2027-01-15T08:00:00Z",` +
		`"expires_at":"2027-01-16T08:00:00Z","attempts":0,"max_attempts":3}`
	get, _ := http.NewRequest("GET", "http://127.0.0.1/v1/sessions/ses_x", nil)
	json := http.Header{"Content-Type": {"application/json"}}
	tests := []struct {
		name   string
		status int
		body   string
		ok     bool
	}{
		{"OK", 200, good, true},
		{"a field not described", 200, strings.Replace(good, `"attempts":0`, `"attempts":0,"pan":"4242"`, 1), false},
		{"a field missing", 200, strings.Replace(good, `"max_attempts":3`, `"reference":"x"`, 1), false},
		{"a wrong type", 200, strings.Replace(good, `"amount":1000`, `"amount":"1000"`, 1), false},
		{"a status not listed", 418, `{"error":{"code":"invalid","message":"x"}}`, false},
		{"an error as described", 404, `{"error":{"code":"not_found","message":"no such session"}}`, true},
		{"an error code not described", 404, `{"error":{"code":"gone","message":"x"}}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkAnswer(get, tt.status, json, []byte(tt.body))
			if (err == nil) != tt.ok {
				t.Fatalf("check: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func webRoute(method, path string) web.Route { return web.Route{Method: method, Path: path} }
