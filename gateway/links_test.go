package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/gateway"
)

// recordLinks records the links set through the admin API.
type recordLinks struct {
	mu  sync.Mutex
	set []string
}

func (l *recordLinks) SetRegionLink(r tally.RegionID, up bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.set = append(l.set, string(r)+map[bool]string{true: " up", false: " down"}[up])
	return nil
}

func postLink(t *testing.T, base, region, auth, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/admin/regions/"+region+"/link", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestAdminRegionLink(t *testing.T) {
	links := &recordLinks{}
	v := MustEnv(t, func(c *gateway.Config) { c.AdminToken = "s3cret"; c.Links = links })
	const auth = "Bearer s3cret"
	cases := []struct {
		region, auth, body string
		status             int
		want               string
	}{
		{"r1", "", `{"up":false}`, http.StatusUnauthorized, "admin token required"},
		{"r1", auth, `{"up":false}`, http.StatusOK, `"up":false`},
		{"r1", auth, `{"up":true}`, http.StatusOK, `"up":true`},
		{"nowhere", auth, `{"up":true}`, http.StatusNotFound, `not a region`},
		{"r1", auth, `{}`, http.StatusBadRequest, `up`},
		{"r1", auth, `{"up":"no"}`, http.StatusBadRequest, `up`},
	}
	for _, c := range cases {
		st, body := postLink(t, v.base, c.region, c.auth, c.body)
		if st != c.status || !strings.Contains(body, c.want) {
			t.Errorf("%s %s: %d %s, want %d with %q", c.region, c.body, st, body, c.status, c.want)
		}
	}
	if got := strings.Join(links.set, ","); got != "r1 down,r1 up" {
		t.Errorf("links set: %s, want r1 down,r1 up", got)
	}

	// Without Links (any real deployment), there is nothing to cut.
	w := MustEnv(t, func(c *gateway.Config) { c.AdminToken = "s3cret" })
	if st, body := postLink(t, w.base, "r1", auth, `{"up":false}`); st != http.StatusNotFound || !strings.Contains(body, "only tally demo") {
		t.Errorf("without links: %d %s, want 404", st, body)
	}
}
