package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/gateway"
)

// TestRateLimit: a client over its rate gets 429 with the JSON error shape,
// on the public API as on the dashboard's files.
func TestRateLimit(t *testing.T) {
	v := MustEnv(t, func(c *gateway.Config) { c.RateLimit, c.RateBurst = 0.001, 3 })
	var last *http.Response
	var body []byte
	for range 4 {
		res, err := http.Get(v.base + "/api/v1/contests")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(res.Body)
		res.Body.Close()
		last = res
	}
	if last.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th request with burst 3: status %d, want 429", last.StatusCode)
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tally.ERATELIMIT {
		t.Errorf("429 body %s: want {\"error\":{\"code\":%q}}", body, tally.ERATELIMIT)
	}
	if last.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After on 429")
	}
	// Health checks are never limited.
	for _, path := range []string{"/healthz", "/readyz"} {
		res, err := http.Get(v.base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s over the limit: status %d, want 200", path, res.StatusCode)
		}
	}
}
