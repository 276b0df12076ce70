package web_test

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/tallyvote/tally/web"
)

func TestFS(t *testing.T) {
	fsys := web.FS()
	for _, name := range []string{"index.html", "app.js", "style.css"} {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			t.Fatalf("ReadFile(%q) = %v", name, err)
		}
		if len(b) == 0 {
			t.Errorf("%s is empty", name)
		}
	}
	index, _ := fs.ReadFile(fsys, "index.html")
	for _, want := range []string{`<html lang="en">`, `src="app.js"`, `href="style.css"`, `id="banner"`, `aria-live="polite"`, `name="viewport"`, `id="announce"`} {
		if !strings.Contains(string(index), want) {
			t.Errorf("index.html lacks %s", want)
		}
	}
	app, _ := fs.ReadFile(fsys, "app.js")
	for _, want := range []string{"new EventSource(", `"data-contest"`, `"data-candidate"`, `"data-region-status"`, `"aria-hidden"`, `"caption"`,
		`"data-call"`, `"data-projection"`, "Called for ", "Too early to call", "Call retracted", "of expected vote counted"} {
		if !strings.Contains(string(app), want) {
			t.Errorf("app.js lacks %s", want)
		}
	}
}
