package web_test

import (
	"encoding/json"
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
	for _, want := range []string{`<html lang="en">`, `src="app.js"`, `href="style.css"`, `id="banner"`, `aria-live="polite"`, `name="viewport"`, `id="announce"`, `id="feed"`, `id="contest-view"`} {
		if !strings.Contains(string(index), want) {
			t.Errorf("index.html lacks %s", want)
		}
	}
	app, _ := fs.ReadFile(fsys, "app.js")
	for _, want := range []string{"new EventSource(", `"data-contest"`, `"data-candidate"`, `"data-region-status"`, `"aria-hidden"`, `"caption"`,
		`"data-call"`, `"data-projection"`, "Called for ", "Too early to call", "Call retracted", "of expected vote counted",
		`"feed"`, "last_event_id", "#/contest/", "/counties", "/precincts?", "Audit trail: "} {
		if !strings.Contains(string(app), want) {
			t.Errorf("app.js lacks %s", want)
		}
	}
}

// TestCountyShapes checks the generated county maps: one file per state,
// every county with a name, a slug and path data.
func TestCountyShapes(t *testing.T) {
	fsys := web.FS()
	for st, want := range map[string]int{"NH": 10, "NM": 33, "NC": 100} {
		b, err := fs.ReadFile(fsys, "counties-"+st+".json")
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			State         string
			Width, Height int
			Counties      []struct{ Name, Slug, FIPS, D string }
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
		if m.State != st || m.Width <= 0 || m.Height <= 0 || len(m.Counties) != want {
			t.Errorf("%s: state %q, %dx%d, %d counties; want %d", st, m.State, m.Width, m.Height, len(m.Counties), want)
		}
		for _, c := range m.Counties {
			if c.Name == "" || c.Slug == "" || !strings.HasPrefix(c.D, "M") {
				t.Errorf("%s: county %+v", st, c)
			}
		}
	}
}
