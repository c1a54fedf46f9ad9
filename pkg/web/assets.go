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

// Assets are the page's own stylesheet and script: nothing else is loaded.
type Assets struct {
	CSS, JS Asset
	byName  map[string]*Asset
}

func loadAssets() (*Assets, error) {
	a := &Assets{byName: map[string]*Asset{}}
	for _, f := range []struct {
		name, ctype string
		into        *Asset
	}{{"pay.css", "text/css; charset=utf-8", &a.CSS}, {"pay.js", "text/javascript; charset=utf-8", &a.JS}} {
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
