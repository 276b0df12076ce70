package gateway

import (
	"bytes"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tallyvote/tally/web"
)

// staticFile is one dashboard asset, held in memory.
type staticFile struct {
	name        string
	body        []byte
	etag        string
	contentType string
}

// loadStatic reads the dashboard's assets from package web.
func loadStatic() (map[string]*staticFile, error) {
	files := map[string]*staticFile{}
	fsys := web.FS()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = http.DetectContentType(b)
		}
		files["/"+p] = &staticFile{name: p, body: b, etag: resourceOf(b).etag, contentType: ct}
		return nil
	})
	return files, err
}

// serveStatic serves the dashboard; "/" is index.html. An unknown path is a
// JSON 404 like every other error.
func (g *Gateway) serveStatic(c echo.Context) error {
	p := path.Clean("/" + c.Request().URL.Path)
	if p == "/" {
		p = "/index.html"
	}
	f := g.static[p]
	if f == nil {
		return echo.ErrNotFound
	}
	h := c.Response().Header()
	h.Set("Content-Type", f.contentType)
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	if strings.HasSuffix(p, ".html") {
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
	}
	http.ServeContent(c.Response(), c.Request(), f.name, time.Time{}, bytes.NewReader(f.body))
	return nil
}
