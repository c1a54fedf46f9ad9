package web

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"path"
	"strings"

	"github.com/paypage/paypage/templates"
)

// Asset is a static file with its Subresource Integrity hash.
type Asset struct {
	URL       string
	Integrity string
	body      []byte
	ctype     string
}

// Assets are the page's own stylesheet, script and icon: nothing else is
// loaded. Each is served under a versioned URL (its content's hash), so a
// page names exactly the bytes it was made with.
type Assets struct {
	CSS, JS, Icon Asset
	byName        map[string]*Asset
}

func loadAssets() (*Assets, error) {
	a := &Assets{byName: map[string]*Asset{}}
	for _, f := range []struct {
		name, ctype string
		into        *Asset
	}{{"pay.css", "text/css; charset=utf-8", &a.CSS}, {"pay.js", "text/javascript; charset=utf-8", &a.JS}, {"favicon.svg", "image/svg+xml", &a.Icon}} {
		b, err := templates.FS.ReadFile("static/" + f.name)
		if err != nil {
			return nil, err
		}
		sum := sha512.Sum384(b)
		ver := sha256.Sum256(b)
		*f.into = Asset{
			URL:       "/static/" + f.name + "?v=" + hex.EncodeToString(ver[:6]),
			Integrity: "sha384-" + base64.StdEncoding.EncodeToString(sum[:]),
			body:      b, ctype: f.ctype,
		}
		a.byName[f.name] = f.into
	}
	return a, nil
}

// serveIcon answers /favicon.ico, which browsers and tools ask for without
// reading the page, with the same icon (cached for a day: its URL has no
// version).
func (a *Assets) serveIcon(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", a.Icon.ctype)
	w.Header().Set("Cache-Control", "public, max-age=86400")
	_, _ = w.Write(a.Icon.body)
}

// serve answers /static/{name}: versioned by query, so cached for a year.
func (a *Assets) serve(w http.ResponseWriter, r *http.Request) {
	f := a.byName[path.Base(r.URL.Path)]
	if f == nil || strings.Contains(r.URL.Path, "..") {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.ctype)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	_, _ = w.Write(f.body)
}
