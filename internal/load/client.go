package load

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// answer is an HTTP answer as a client got it.
type answer struct {
	status int
	body   []byte
	header http.Header
}

// jar is one shopper's cookies, on the one origin the run drives.
type jar map[string]string

// request is one HTTP request of an operation.
type request struct {
	step   string // names the step in error counts: "submit", "detokenize"
	method string
	path   string // on the target, or an absolute URL whose path is taken
	body   []byte
	ctype  string
	header map[string]string
	jar    jar
}

// send makes one request on the worker's connection and reads the whole
// answer. A transport error is a failure of the step with status 0.
func (w *worker) send(ctx context.Context, q request) (answer, error) {
	u := q.path
	if strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
		// The page names links on the public URL; the run stays on its target.
		if pu, err := url.Parse(u); err == nil {
			u = pu.RequestURI()
		}
	}
	var body io.Reader
	if q.body != nil {
		body = bytes.NewReader(q.body)
	}
	req, err := http.NewRequestWithContext(ctx, q.method, w.r.joinURL(u), body)
	if err != nil {
		return answer{}, &failure{step: q.step, code: err.Error()}
	}
	if q.ctype != "" {
		req.Header.Set("Content-Type", q.ctype)
	}
	for k, v := range q.header {
		req.Header.Set(k, v)
	}
	for name, value := range q.jar {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	w.requests++
	resp, err := w.hc.Do(req)
	if err != nil {
		return answer{}, &failure{step: q.step}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, &failure{step: q.step}
	}
	if q.jar != nil {
		for _, c := range resp.Cookies() {
			if c.MaxAge < 0 {
				delete(q.jar, c.Name)
			} else {
				q.jar[c.Name] = c.Value
			}
		}
	}
	return answer{status: resp.StatusCode, body: b, header: resp.Header}, nil
}

// expect turns an answer of another status into a failure naming the
// step, the status and the API's error code, or the page's state.
func expect(step string, a answer, status int) error {
	if a.status == status {
		return nil
	}
	return &failure{step: step, status: a.status, code: codeOf(a)}
}

var reState = regexp.MustCompile(`class="state ([a-z_]+)"`)

// codeOf is the error code of a JSON error answer, or what a page shows:
// its state ("state failed"), else a field marked invalid ("field error"),
// a decline ("declined") or a notice ("notice").
func codeOf(a answer) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(a.body, &e) == nil && e.Error.Code != "" {
		return e.Error.Code
	}
	if m := reState.FindSubmatch(a.body); m != nil {
		return "state " + string(m[1])
	}
	for _, p := range pageMarks {
		if bytes.Contains(a.body, []byte(p.mark)) {
			return p.code
		}
	}
	return ""
}

// pageMarks are what the card and bank pages show beside their form.
var pageMarks = []struct{ mark, code string }{
	{`aria-invalid="true"`, "field error"},
	{`id="decline"`, "declined"},
	{`id="notice"`, "notice"},
}

var (
	reForm   = regexp.MustCompile(`(?s)<form[^>]*action="([^"]*)"[^>]*>.*?</form>`)
	reHidden = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
)

// form returns the action and hidden fields of a page's first form whose
// markup holds mark (an id, a field's name; "": the first form).
func form(body []byte, mark string) (action string, fields url.Values, ok bool) {
	for _, m := range reForm.FindAllSubmatch(body, -1) {
		if !bytes.Contains(m[0], []byte(mark)) {
			continue
		}
		fields = url.Values{}
		for _, h := range reHidden.FindAllSubmatch(m[0], -1) {
			fields.Set(string(h[1]), html.UnescapeString(string(h[2])))
		}
		return html.UnescapeString(string(m[1])), fields, true
	}
	return "", nil, false
}

// postForm posts form fields as a browser does.
func (w *worker) postForm(ctx context.Context, step, path string, v url.Values, j jar) (answer, error) {
	return w.send(ctx, request{step: step, method: http.MethodPost, path: path, body: []byte(v.Encode()),
		ctype: "application/x-www-form-urlencoded", jar: j})
}

// api calls the JSON API with a secret key.
func (w *worker) api(ctx context.Context, step, method, path, key string, body any, header map[string]string) (answer, error) {
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	h := map[string]string{"Authorization": "Bearer " + key}
	for k, v := range header {
		h[k] = v
	}
	q := request{step: step, method: method, path: path, body: raw, header: h}
	if body != nil {
		q.ctype = "application/json"
	}
	return w.send(ctx, q)
}
