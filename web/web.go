// Package web holds the live dashboard's assets, embedded in the binary. The
// dashboard has no build step: plain HTML, CSS and JavaScript reading the
// gateway's JSON API and Server-Sent Events stream. The county maps'
// shapes (static/counties-<ST>.json) are generated from the us-atlas npm
// package and committed; regenerate them with
//
//	npm ci --prefix web && go generate ./web
package web

//go:generate go run gencounties.go -atlas node_modules/us-atlas/counties-10m.json -out static -version 3.0.1

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// FS returns the dashboard's files, rooted at the directory holding
// index.html, app.js and style.css.
func FS() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// fs.Sub fails only for an invalid path; "static" is valid.
		panic(err)
	}
	return sub
}
