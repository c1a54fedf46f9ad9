package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	paypage "github.com/paypage/paypage"
	"github.com/paypage/paypage/pkg/money"
	"github.com/paypage/paypage/pkg/web"
)

// The API's description (openapi.yaml) is checked against what the service
// does: every answer of the JSON APIs that the end-to-end tests get through
// the harness (tap.go) and every webhook its receiver gets are validated
// against it, so the description cannot drift from the code.

// spec is openapi.yaml, loaded and validated once, with its byte-length
// formats defined.
var spec = sync.OnceValues(func() (*openapi3.T, error) {
	defineByteFormats(paypage.OpenAPI)
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

// byteFormat is the format of a text whose UTF-8 encoding has at most N
// bytes (openapi.yaml's info says so): JSON Schema's maxLength counts
// characters, and the server counts bytes.
var byteFormat = regexp.MustCompile(`utf8-max-([0-9]+)-bytes`)

// defineByteFormats teaches the validator every utf8-max-N-bytes format
// the description uses.
func defineByteFormats(doc []byte) {
	for _, m := range byteFormat.FindAllSubmatch(doc, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		openapi3.DefineStringFormatValidator(string(m[0]), openapi3.NewCallbackValidator(func(v string) error {
			if len(v) > n {
				return fmt.Errorf("%d bytes of UTF-8, more than %d", len(v), n)
			}
			return nil
		}))
	}
}

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
		if status == http.StatusMethodNotAllowed && item != nil {
			// Allow names what the description has for the path.
			var want []string
			for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
				if item.GetOperation(m) != nil {
					want = append(want, m)
				}
			}
			if got := header.Get("Allow"); got != strings.Join(want, ", ") {
				return fmt.Errorf("%s %s: 405 with Allow %q, openapi.yaml has %v", req.Method, req.URL.Path, got, want)
			}
		}
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

// checkRequest validates a request to the JSON APIs (a path under /v1/)
// against the description: its path, query, headers and body. It answers
// nil for a path or method the description does not have (checkAnswer
// says whether the server refused it).
func checkRequest(req *http.Request, body []byte) error {
	doc, err := spec()
	if err != nil {
		return err
	}
	tmpl, item, params := routeOf(doc, req.URL.Path)
	if item == nil || item.GetOperation(req.Method) == nil {
		return nil
	}
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(body))
	return openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params,
		Route:   &routers.Route{Spec: doc, Path: tmpl, PathItem: item, Method: req.Method, Operation: item.GetOperation(req.Method)},
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	})
}

// agree checks a request against the answer the server gave it: a request
// the description refuses must be refused by the server (4xx), so the
// description never refuses what the server takes. (The other way round
// is not required: the server also refuses by state, a refund larger than
// what is left, which no schema can know.)
func agree(req *http.Request, body []byte, status int) error {
	err := checkRequest(req, body)
	if err == nil || (status >= 400 && status < 500) {
		return nil
	}
	return fmt.Errorf("openapi.yaml refuses the request, which the server answered %d: %w", status, err)
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
	st, body, h = e.raw("HEAD", "/v1/openapi.yaml", "", nil)
	if st != 200 || len(body) != 0 || !strings.HasPrefix(h.Get("Content-Type"), "application/yaml") || h.Get("Content-Length") != strconv.Itoa(len(paypage.OpenAPI)) {
		t.Fatalf("HEAD: %d %s, Content-Length %q, %d bytes", st, h.Get("Content-Type"), h.Get("Content-Length"), len(body))
	}
	// The currencies described are the ones the server takes.
	enum := doc.Components.Schemas["Currency"].Value.Enum
	var described []string
	for _, c := range enum {
		described = append(described, c.(string))
	}
	slices.Sort(described)
	if !slices.Equal(described, money.Currencies()) {
		t.Fatalf("openapi.yaml's currencies %v, the server's %v", described, money.Currencies())
	}
}

// TestDescriptionAndServerAgreeOnBodies: for bodies at the edges of the
// rules, openapi.yaml and the server say the same: what the description
// refuses the server refuses, and what it takes the server takes. Lengths
// are bytes (150 Cyrillic letters are 300 bytes: refused by both, where
// JSON Schema's maxLength alone, counting characters, took them), a
// currency in any case is taken, null is no value. The one difference is
// written in the description: an integer written as 1.0 or 1e3, which JSON
// Schema counts as an integer and the server refuses.
func TestDescriptionAndServerAgreeOnBodies(t *testing.T) {
	doc, err := spec()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOpts{})
	base := func() map[string]any {
		return map[string]any{"amount": 100, "currency": "KZT", "success_url": "https://s.example/ok", "cancel_url": "https://s.example/no"}
	}
	with := func(k string, v any) map[string]any { b := base(); b[k] = v; return b }
	tests := []struct {
		name     string
		body     any
		accepted bool
	}{
		{"the base", base(), true},
		{"150 Cyrillic letters: 300 bytes", with("reference", strings.Repeat("я", 150)), false},
		{"100 Cyrillic letters: 200 bytes", with("reference", strings.Repeat("я", 100)), true},
		{"200 ASCII letters", with("reference", strings.Repeat("r", 200)), true},
		{"201 ASCII letters", with("reference", strings.Repeat("r", 201)), false},
		{"a description of 250 Kazakh letters: 500 bytes", with("description", strings.Repeat("ә", 250)), true},
		{"a description of 251 Kazakh letters", with("description", strings.Repeat("ә", 251)), false},
		{"a return URL of 2048 bytes", with("success_url", "https://s.example/"+strings.Repeat("ж", 1015)), true},
		{"a return URL of 2050 bytes", with("success_url", "https://s.example/"+strings.Repeat("ж", 1016)), false},
		{"a control character", with("reference", "PNR\u0085"), false},
		{"currency in lower case", with("currency", "kzt"), true},
		{"currency in mixed case", with("currency", "Usd"), true},
		{"an unknown currency", with("currency", "xyz"), false},
		{"kaspi_qr in USD", func() map[string]any { b := with("currency", "usd"); b["methods"] = []string{"kaspi_qr"}; return b }(), false},
		{"kaspi_qr in kzt", with("methods", []string{"card", "kaspi_qr"}), true},
		{"null amount", with("amount", nil), false},
		{"null methods", with("methods", nil), false},
		{"null locale", with("locale", nil), false},
		{"null expires_in", with("expires_in", nil), false},
		{"no methods", with("methods", []string{}), false},
		{"a method twice", with("methods", []string{"card", "card"}), false},
		{"expires_in too long", with("expires_in", 86401), false},
		{"an http URL", with("cancel_url", "http://s.example/no"), true},
		{"a relative URL", with("cancel_url", "/no"), false},
	}
	schema := doc.Components.Schemas["SessionCreate"].Value
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, _ := json.Marshal(tt.body)
			var v any
			_ = json.Unmarshal(j, &v) // the body as JSON values
			schemaErr := schema.VisitJSON(v, openapi3.EnableJSONSchema2020())
			st, r, _ := e.api("POST", "/v1/sessions", e.key, tt.body)
			if (schemaErr == nil) != (st == 201) || (st == 201) != tt.accepted {
				t.Fatalf("the description says valid=%v (%v); the server answered %d %v; want accepted=%v", schemaErr == nil, schemaErr, st, r, tt.accepted)
			}
		})
	}
	// The written exception: 1.0 is an integer to JSON Schema, not to the
	// server (and the description says so).
	if err := schema.VisitJSON(map[string]any{"amount": 1.0, "currency": "KZT", "success_url": "https://s.example/ok", "cancel_url": "https://s.example/no"}, openapi3.EnableJSONSchema2020()); err != nil {
		t.Fatalf("JSON Schema refuses 1.0 as an integer now (%v): the description's note on 1.0 is out of date", err)
	}
	if st, _, _ := e.api("POST", "/v1/sessions", e.key, `{"amount":1.0,"currency":"KZT","success_url":"https://s.example/ok","cancel_url":"https://s.example/no"}`); st != 400 {
		t.Fatalf("amount 1.0: %d", st)
	}
	if !strings.Contains(schema.Properties["amount"].Value.Description, "`1.0`") {
		t.Fatal("the description of amount does not say 1.0 is refused")
	}
}

// TestOpenAPICheckNeedsRetryAfter: openapi.yaml promises Retry-After on
// every 429 and 503, and the Go client relies on it; the check refuses an
// answer without it.
func TestOpenAPICheckNeedsRetryAfter(t *testing.T) {
	t.Parallel()
	req, _ := http.NewRequest("POST", "http://127.0.0.1/v1/detokenize", nil)
	for status, code := range map[int]string{429: "rate_limited", 503: "unavailable"} {
		body := []byte(`{"error":{"code":"` + code + `","message":"x"}}`)
		if err := checkAnswer(req, status, http.Header{"Content-Type": {"application/json"}}, body); err == nil {
			t.Errorf("a %d without Retry-After passes the check", status)
		}
		if err := checkAnswer(req, status, http.Header{"Content-Type": {"application/json"}, "Retry-After": {"1"}}, body); err != nil {
			t.Errorf("a %d with Retry-After: %v", status, err)
		}
	}
}

// TestWebhookCheckCatchesDrift: the webhook check refuses each wrong shape,
// so a pass means something.
func TestWebhookCheckCatchesDrift(t *testing.T) {
	t.Parallel()
	pay := `{"id":"pay_1","object":"payment","session_id":"ses_1","amount":1,"currency":"KZT","status":"succeeded","method":"card","amount_refunded":0,"refunds":[],"attempts":[],"created":"2027-01-15T08:00:00Z","updated":"2027-01-15T08:00:00Z"}`
	ev := func(typ, data, extra string) string {
		return `{"id":"evt_1","type":"` + typ + `","created":"2027-01-15T08:00:00Z","merchant":"mer_1","data":` + data + extra + `}`
	}
	for _, c := range []struct {
		name, typ, body string
		ok              bool
	}{
		{"good", "payment.succeeded", ev("payment.succeeded", pay, ""), true},
		{"extra member", "payment.succeeded", ev("payment.succeeded", pay, `,"pan":"4242424242424242"`), false},
		{"extra in data", "payment.succeeded", ev("payment.succeeded", strings.Replace(pay, `"amount":1,`, `"amount":1,"pan":"4242",`, 1), ""), false},
		{"type differs from header", "payment.succeeded", ev("payment.failed", pay, ""), false},
		{"data of another kind", "refund.succeeded", ev("refund.succeeded", pay, ""), false},
	} {
		r, _ := http.NewRequest("POST", "http://shop.example/hook", nil)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Paypage-Signature", "t=1,v1="+strings.Repeat("a", 64))
		r.Header.Set("Paypage-Event-Id", "evt_1")
		r.Header.Set("Paypage-Event-Type", c.typ)
		if err := checkWebhook(r, []byte(c.body)); (err == nil) != c.ok {
			t.Errorf("%s: check %v, want ok=%v", c.name, err, c.ok)
		}
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
