// Package web holds the live dashboard's assets, embedded in the binary. The
// dashboard has no build step: plain HTML, CSS and JavaScript reading the
// gateway's JSON API and Server-Sent Events stream.
package web

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
