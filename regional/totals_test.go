package regional_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/regional"
)

func TestTotals(t *testing.T) {
	dir := t.TempDir()
	n := MustOpenNode(t, func(c *regional.Config) { c.NATS.StoreDir = dir })
	post(t, n, "/api/v1/reports", "["+reportN1+","+reportN2+","+reportG1+"]").results(t)
	post(t, n, "/api/v1/corrections", correction("north-c1", "north-r1", 1, 12)).results(t)
	waitFor(t, "totals at seq 4", func() bool { return n.AppliedSeq() == 4 })

	type want struct {
		votes                      map[tally.CandidateID]int64
		total, reporting, complete int
		corrections                int
	}
	wants := map[tally.ContestID]want{
		"pres": {map[tally.CandidateID]int64{"biden": 15, "trump": 12}, 2, 2, 2, 1},
		"gov":  {map[tally.CandidateID]int64{"alice": 8, "bob": 6}, 1, 1, 1, 0},
	}
	check := func(t *testing.T, res tally.ContestResult) {
		t.Helper()
		w, ok := wants[res.ID]
		if !ok {
			t.Fatalf("unexpected contest %q", res.ID)
		}
		for _, c := range res.Candidates {
			if c.Votes != w.votes[c.ID] {
				t.Errorf("%s: votes.%s = %d, want %d", res.ID, c.ID, c.Votes, w.votes[c.ID])
			}
		}
		if res.Precincts.Total != w.total || res.Precincts.Reporting != w.reporting || res.Precincts.Complete != w.complete {
			t.Errorf("%s: precincts = %+v, want total %d reporting %d complete %d", res.ID, res.Precincts, w.total, w.reporting, w.complete)
		}
		if res.Corrections != w.corrections {
			t.Errorf("%s: corrections = %d, want %d", res.ID, res.Corrections, w.corrections)
		}
		if len(res.Regions) != 1 || res.Regions[0].ID != "north" || res.Regions[0].Precincts.Total != w.total {
			t.Errorf("%s: regions = %+v, want north only with %d precincts", res.ID, res.Regions, w.total)
		}
	}

	t.Run("All", func(t *testing.T) {
		r := get(t, n, "/api/v1/totals")
		var all []tally.ContestResult
		if err := json.Unmarshal(r.Body, &all); err != nil || r.Status != 200 {
			t.Fatalf("GET totals = %d %s (%v)", r.Status, r.Body, err)
		}
		if len(all) != 2 || all[0].ID != "pres" || all[1].ID != "gov" {
			t.Fatalf("contests = %+v, want pres, gov", all)
		}
		for _, res := range all {
			check(t, res)
		}
	})
	t.Run("One", func(t *testing.T) {
		r := get(t, n, "/api/v1/totals/gov")
		var res tally.ContestResult
		if err := json.Unmarshal(r.Body, &res); err != nil || r.Status != 200 {
			t.Fatalf("GET totals/gov = %d %s (%v)", r.Status, r.Body, err)
		}
		check(t, res)
	})
	t.Run("AfterRestart", func(t *testing.T) {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		n2 := MustOpenNode(t, func(c *regional.Config) { c.NATS.StoreDir = dir })
		// Open returns once the totals have caught up with the stream,
		// which ends with the checkpoint Close stored at seq 5.
		if got := n2.AppliedSeq(); got != 5 {
			t.Fatalf("applied seq after reopen = %d, want 5 (4 events and the final checkpoint)", got)
		}
		if cp, at, ok := n2.LastCheckpoint(); !ok || at != 5 || cp.Seq != 4 || cp.Events != 4 {
			t.Fatalf("last checkpoint = %+v at %d (%v), want seq 4, 4 events, stored at 5", cp, at, ok)
		}
		res, ok := n2.Totals("pres")
		if !ok {
			t.Fatal("no pres totals")
		}
		check(t, res)
		// A retry after the restart is still a duplicate.
		res2 := post(t, n2, "/api/v1/reports", reportN2).results(t)
		if !res2[0].Duplicate || res2[0].Seq != 2 {
			t.Errorf("retry after restart = %+v, want seq 2 duplicate", res2[0])
		}
	})
}

func TestNewConfig(t *testing.T) {
	e := testElection(t)
	ok := regional.Config{Region: "north", Election: e, NATS: regional.NATSConfig{StoreDir: t.TempDir()}}
	tests := []struct {
		name  string
		edit  func(*regional.Config)
		field string // "" for a valid config
	}{
		{"Valid", func(*regional.Config) {}, ""},
		{"ValidExternal", func(c *regional.Config) { c.NATS = regional.NATSConfig{URL: "nats://127.0.0.1:4222", Replicas: 3} }, ""},
		{"NoRegion", func(c *regional.Config) { c.Region = "" }, "region:"},
		{"BadRegion", func(c *regional.Config) { c.Region = "a.b" }, "region:"},
		{"UnknownRegion", func(c *regional.Config) { c.Region = "east" }, "region:"},
		{"NoElection", func(c *regional.Config) { c.Election = nil }, "election:"},
		{"NoStoreDir", func(c *regional.Config) { c.NATS.StoreDir = "" }, "nats.store_dir:"},
		{"BadPort", func(c *regional.Config) { c.NATS.Port = 70000 }, "nats.port:"},
		{"EmbeddedReplicas", func(c *regional.Config) { c.NATS.Replicas = 3 }, "nats.replicas:"},
		{"BadHubURL", func(c *regional.Config) { c.NATS.HubURL = "::" }, "nats.hub_url:"},
		{"BadDomain", func(c *regional.Config) { c.NATS = regional.NATSConfig{URL: "nats://x", Domain: "a b"} }, "nats.domain:"},
		{"NegativeWindow", func(c *regional.Config) { c.DuplicateWindow = -time.Second }, "duplicate_window:"},
		{"NegativeBody", func(c *regional.Config) { c.HTTP.MaxBody = -1 }, "http.max_body:"},
		{"NegativeBatch", func(c *regional.Config) { c.HTTP.MaxBatch = -1 }, "http.max_batch:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			cfg.Logger = zerolog.New(zerolog.NewTestWriter(t))
			tt.edit(&cfg)
			_, err := regional.New(cfg)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("New() = %v, want nil", err)
				}
				return
			}
			if tally.ErrorCode(err) != tally.EINVALID || !startsWith(tally.ErrorMessage(err), tt.field) {
				t.Errorf("New() = %v, want invalid naming %s", err, tt.field)
			}
		})
	}
}

func startsWith(s, prefix string) bool { return len(s) >= len(prefix) && s[:len(prefix)] == prefix }

func TestCloseTwice(t *testing.T) {
	n := MustOpenNode(t, nil)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}
