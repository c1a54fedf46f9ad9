// Package templates holds paypage's HTML pages, their translations and their
// static assets, embedded into the binary.
package templates

import "embed"

// FS holds *.html, i18n/*.json and static/*.
//
//go:embed *.html i18n/*.json static/*
var FS embed.FS
