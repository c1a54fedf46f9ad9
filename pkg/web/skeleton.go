package web

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// skeletons render the pages most requests see without running the
// template each time. A page's template runs once per shape (the page, its
// language, its state, its notices: everything but the request's own
// strings) with a marker in place of each of those strings (the order, the
// session's links, the CSRF token, the language links, the hidden fields);
// the output, cut at the markers, is the skeleton. A request fills the
// markers in, each escaped as the template escapes it in that spot, and
// gets the same bytes the template would write (TestSkeletonsMatchTemplate).
//
// How the template escapes each spot is learnt, not assumed: the skeleton's
// template runs a second time with each marker followed by a probe ("<&"),
// and each spot must show the probe as HTML text or an attribute does, or
// as a URL attribute does; a spot that shows it any other way makes the
// shape one that always runs the template. A string bound for a URL spot
// is filled in only when it holds nothing the URL escaper would change (a
// path or an http(s) URL of plain characters); otherwise that request runs
// the template.
type skeletons struct {
	nonce string // in every marker, so no stored text can pass for one
	re    *regexp.Regexp
	mu    sync.Mutex
	byKey map[string]*skeleton // by shapeKey
	bufs  sync.Pool            // *bytes.Buffer: keys and pages
}

// skeleton is a page cut at its markers: chunks[0], slot[0], chunks[1], ...
// A nil skeleton is a shape that always runs the template.
type skeleton struct {
	chunks [][]byte
	slots  []int  // which of the page's strings goes in each spot
	url    []bool // whether the spot is a URL attribute
}

// maxSkeletons bounds the shapes kept; past it the cache starts afresh.
const maxSkeletons = 1024

// probe follows each marker in the second run: HTML escapes it one way, a
// URL attribute another.
const probe = "<&"

func newSkeletons() *skeletons {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	nonce := ""
	for _, c := range b {
		nonce += string(rune('a' + c%26))
	}
	return &skeletons{nonce: nonce, re: regexp.MustCompile("pp" + nonce + "([0-9]+)x"), byKey: map[string]*skeleton{},
		bufs: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
}

func (k *skeletons) marker(i int) string { return "pp" + k.nonce + strconv.Itoa(i) + "x" }

// slots are the page's strings that change from request to request.
func (d *pageData) slots() []*string {
	out := []*string{&d.Action, &d.CancelURL, &d.KaspiURL, &d.CardURL, &d.LinkURL, &d.Refresh, &d.CSRF, &d.Poll}
	if d.Order != nil {
		out = append(out, &d.Order.Merchant, &d.Order.Description, &d.Order.Reference, &d.Order.Amount)
	}
	for i := range d.Langs {
		out = append(out, &d.Langs[i].URL)
	}
	for i := range d.Hidden {
		out = append(out, &d.Hidden[i].Value)
	}
	return out
}

// cacheable reports whether a page may come from a skeleton: the card and
// redirect pages, without field errors or typed values (those differ with
// every shopper).
func cacheable(page string, d *pageData) bool {
	return (page == "pay" || page == "redirect") && len(d.Errors) == 0 && len(d.ErrorList) == 0 && d.Values.Name == "" &&
		d.Values.ExpMonth == "" && d.Values.ExpYear == "" && d.ACS == nil && d.QR == nil
}

// marked returns a copy of d with each non-empty slot holding marker(i)+suffix,
// and the slots' values in d. An empty slot stays empty: templates test
// them ({{if .LinkURL}}).
func (k *skeletons) marked(d *pageData, suffix string) (*pageData, []string) {
	c := *d
	if d.Order != nil {
		o := *d.Order
		c.Order = &o
	}
	c.Langs = append([]langLink(nil), d.Langs...)
	c.Hidden = append([]hidden(nil), d.Hidden...)
	slots := c.slots()
	values := make([]string, len(slots))
	for i, p := range slots {
		values[i] = *p
		if *p != "" {
			*p = k.marker(i) + suffix
		}
	}
	return &c, values
}

// shapeKey writes the name of a page's shape into key: the page and its
// data with every slot marked. The template reads exported fields only, so
// this is all it reads.
func shapeKey(key *bytes.Buffer, page string, marked *pageData) error {
	key.WriteString(page)
	key.WriteByte(0)
	return json.NewEncoder(key).Encode(marked)
}

// fill writes the page from its skeleton into a buffer, learning the
// skeleton first if its shape is new; ok is false when the page must run
// the template. The caller gives the buffer back with done once written.
func (k *skeletons) fill(s *Server, page string, d *pageData) (out *bytes.Buffer, ok bool) {
	if !cacheable(page, d) {
		return nil, false
	}
	marked, values := k.marked(d, "")
	key := k.buffer()
	defer k.done(key)
	if shapeKey(key, page, marked) != nil {
		return nil, false
	}
	k.mu.Lock()
	sk, known := k.byKey[string(key.Bytes())]
	k.mu.Unlock()
	if !known {
		sk = k.learn(s, page, d, marked)
		k.mu.Lock()
		if len(k.byKey) >= maxSkeletons {
			clear(k.byKey)
		}
		k.byKey[key.String()] = sk
		k.mu.Unlock()
	}
	if sk == nil {
		return nil, false
	}
	for i := range sk.slots {
		if sk.url[i] && !plainURL(values[sk.slots[i]]) {
			return nil, false
		}
	}
	buf := k.buffer()
	for i, c := range sk.chunks {
		buf.Write(c)
		if i == len(sk.slots) {
			break
		}
		v := values[sk.slots[i]]
		if sk.url[i] {
			writeURL(buf, v)
			continue
		}
		htmlEscape(buf, v)
	}
	return buf, true
}

// buffer is an empty buffer from the pool.
func (k *skeletons) buffer() *bytes.Buffer {
	b := k.bufs.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

// done gives a buffer back, unless it grew too large to keep.
func (k *skeletons) done(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		k.bufs.Put(b)
	}
}

// writeURL writes a plain URL (plainURL) as an attribute holds it.
func writeURL(buf *bytes.Buffer, v string) {
	for {
		i := strings.IndexByte(v, '&')
		if i < 0 {
			buf.WriteString(v)
			return
		}
		buf.WriteString(v[:i])
		buf.WriteString("&amp;")
		v = v[i+1:]
	}
}

// learn runs the template twice, with markers and with markers and the
// probe, and cuts the first output at its markers; nil when a spot escapes
// the probe in a way fill cannot repeat.
func (k *skeletons) learn(s *Server, page string, d *pageData, marked *pageData) *skeleton {
	var a, b bytes.Buffer
	probed, _ := k.marked(d, probe)
	if s.pages[page].ExecuteTemplate(&a, "layout", marked) != nil || s.pages[page].ExecuteTemplate(&b, "layout", probed) != nil {
		return nil
	}
	cut := func(out []byte) ([][]byte, []int) {
		var chunks [][]byte
		var slots []int
		last := 0
		for _, m := range k.re.FindAllSubmatchIndex(out, -1) {
			chunks = append(chunks, out[last:m[0]])
			i, _ := strconv.Atoi(string(out[m[2]:m[3]]))
			slots = append(slots, i)
			last = m[1]
		}
		return append(chunks, out[last:]), slots
	}
	ac, as := cut(a.Bytes())
	bc, bs := cut(b.Bytes())
	if len(as) != len(bs) || fmt.Sprint(as) != fmt.Sprint(bs) {
		return nil
	}
	var asHTML bytes.Buffer
	htmlEscape(&asHTML, probe)
	sk := &skeleton{chunks: ac, slots: as, url: make([]bool, len(as))}
	for i := range as {
		shown, ok := bytes.CutSuffix(bc[i+1], ac[i+1])
		switch {
		case !ok:
			return nil
		case bytes.Equal(shown, asHTML.Bytes()):
		case bytes.Equal(shown, []byte("%3c&amp;")):
			sk.url[i] = true
		default:
			return nil
		}
	}
	return sk
}

// plainURL reports whether the URL escaper leaves s as it is: a path, or
// an http(s) URL, of letters, digits and -._~/?=:& only.
func plainURL(s string) bool {
	if !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "//") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/?=:&", c) >= 0) {
			return false
		}
	}
	return true
}

// htmlEscape writes s as html/template writes a string in HTML text or a
// quoted attribute.
func htmlEscape(buf *bytes.Buffer, s string) {
	last := 0
	for i, r := range s {
		var rep string
		switch r {
		case 0:
			rep = "\uFFFD"
		case '"':
			rep = "&#34;"
		case '&':
			rep = "&amp;"
		case '\'':
			rep = "&#39;"
		case '+':
			rep = "&#43;"
		case '<':
			rep = "&lt;"
		case '>':
			rep = "&gt;"
		default:
			continue
		}
		buf.WriteString(s[last:i])
		buf.WriteString(rep)
		last = i + len(string(r))
	}
	buf.WriteString(s[last:])
}
