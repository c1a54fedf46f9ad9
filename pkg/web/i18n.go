package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/text/language"

	"github.com/paypage/paypage/templates"
)

// Catalog holds the page's messages in every language.
type Catalog map[string]map[string]string

// Languages the pages speak, English first (the fallback).
var Languages = []string{"en", "ru", "kk"}

var matcher = language.NewMatcher([]language.Tag{language.English, language.Russian, language.Kazakh})

// LoadCatalog reads templates/i18n/*.json.
func LoadCatalog() (Catalog, error) {
	c := Catalog{}
	for _, l := range Languages {
		b, err := templates.FS.ReadFile("i18n/" + l + ".json")
		if err != nil {
			return nil, err
		}
		m := map[string]string{}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("i18n/%s.json: %w", l, err)
		}
		c[l] = m
	}
	return c, nil
}

// T translates key into lang, with fmt arguments; English when the key is
// missing in lang, and the key itself when missing everywhere (a test
// makes sure that never happens).
func (c Catalog) T(lang, key string, args ...any) string {
	s, ok := c[lang][key]
	if !ok {
		if s, ok = c["en"][key]; !ok {
			return key
		}
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}

// Has reports whether key exists in English.
func (c Catalog) Has(key string) bool { _, ok := c["en"][key]; return ok }

// pickLang chooses the page's language: an explicit ?lang= choice (kept in a
// cookie), else the session's locale, else the browser's Accept-Language.
func pickLang(r *http.Request, sessionLocale string) string {
	if l := r.URL.Query().Get("lang"); isLang(l) {
		return l
	}
	if c, err := r.Cookie("pp_lang"); err == nil && isLang(c.Value) {
		return c.Value
	}
	if isLang(sessionLocale) {
		return sessionLocale
	}
	tags, _, _ := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
	_, i, conf := matcher.Match(tags...)
	if conf == language.No {
		return "en"
	}
	return Languages[i]
}

func isLang(l string) bool {
	for _, x := range Languages {
		if strings.EqualFold(x, l) && x == l {
			return true
		}
	}
	return false
}
