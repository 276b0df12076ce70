package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// TestGatewayReplicas runs two `tally gateway` replicas against a hub while
// a replay goes through its regions: when the hub has applied everything,
// the replicas serve the same contests, with the same ETags, as the hub's
// own gateway, and a viewer of a replica's live stream gets the state.
func TestGatewayReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five JetStream servers")
	}
	le, err := loadElection(ElectionSource{Results: "bundled", Regions: 1})
	if err != nil {
		t.Fatal(err)
	}
	e := le.Election
	f := MustRunFederation(t, e, true)

	var replicas []*GatewayMain
	for range 2 {
		g := NewGatewayMain(nil)
		env := map[string]string{"TALLY_NATS_PASSWORD": federationPassword}
		err := g.ParseFlags([]string{"--results", "bundled", "--regions", "1", "--http", "127.0.0.1:0",
			"--nats-url", f.rec.ClientURL()}, func(k string) string { return env[k] })
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = g.Run(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := g.Close(); err != nil {
				t.Error(err)
			}
		})
		replicas = append(replicas, g)
	}

	intake := map[tally.RegionID]string{}
	for _, r := range e.Regions {
		intake[r.ID] = f.intake(r.ID)
	}
	cfg := DefaultReplayConfig()
	cfg.Speed = "max"
	rp := &Replayer{Election: e, Counts: le.Counts, Intake: intake, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stats, err := rp.Run(ctx)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	t.Logf("replay: %d reports, %d corrections", stats.Reports, stats.Corrections)
	want := expectedTotals(e, le.Counts)
	waitFor(t, 30*time.Second, func() string { return checkTotals(t, f.api, want, true) })

	// Every gateway serves the same bytes under the same ETag.
	urls := []string{f.api}
	for _, g := range replicas {
		urls = append(urls, "http://"+g.Addr())
	}
	paths := []string{"/api/v1/contests", "/api/v1/election"}
	for _, c := range e.Contests {
		paths = append(paths, "/api/v1/contests/"+string(c.ID))
	}
	waitFor(t, 10*time.Second, func() string {
		for _, p := range paths {
			var first, firstTag string
			for i, u := range urls {
				res, err := http.Get(u + p)
				if err != nil {
					return err.Error()
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					return fmt.Sprintf("GET %s%s: %s", u, p, res.Status)
				}
				if i == 0 {
					first, firstTag = string(b), res.Header.Get("ETag")
					continue
				}
				if string(b) != first || res.Header.Get("ETag") != firstTag {
					return fmt.Sprintf("GET %s: replica %d serves ETag %s, %d bytes; the hub's gateway ETag %s, %d bytes",
						p, i, res.Header.Get("ETag"), len(b), firstTag, len(first))
				}
			}
		}
		return ""
	})
	for _, u := range urls[1:] {
		if msg := checkTotals(t, u, want, true); msg != "" {
			t.Errorf("replica %s: %s", u, msg)
		}
	}

	// A replica's live stream opens with the state.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, urls[1]+"/api/v1/stream", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	buf := make([]byte, 4096)
	n, _ := io.ReadAtLeast(res.Body, buf, 64)
	if res.StatusCode != http.StatusOK || !strings.Contains(string(buf[:n]), "event: ") {
		t.Errorf("GET /api/v1/stream on a replica: %s, %q", res.Status, buf[:n])
	}

	// Without the hub's password a replica does not start, and says why.
	g := NewGatewayMain(nil)
	if err := g.ParseFlags([]string{"--results", "bundled", "--nats-url", f.rec.ClientURL()}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := g.Run(ctx); err == nil || !strings.Contains(err.Error(), "nats.password_file") {
		t.Errorf("replica without password: err = %v, want one naming nats.password_file", err)
		g.Close()
	}
}
