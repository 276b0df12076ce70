package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/regional"
)

// TestFederation drives reports, batches, retries and corrections over HTTP
// into four region nodes (each its own embedded JetStream server and domain)
// linked to the hub by leaf nodes, and checks that the gateway's national
// totals equal the sum of the latest report per precinct and contest, and
// that every kind of bad input is refused and changes nothing.
func TestFederation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five JetStream servers")
	}
	le, err := loadElection(ElectionSource{Results: "bundled", Regions: 2})
	if err != nil {
		t.Fatal(err)
	}
	e := le.Election
	if len(e.Regions) < 3 {
		t.Fatalf("want at least 3 regions, got %d", len(e.Regions))
	}
	f := MustRunFederation(t, e, true)

	latest := tally.Counts{} // the latest report per precinct and contest
	report := func(p *tally.Precinct, id string, scale int64, complete bool) map[string]any {
		c := e.Contest(p.Contests[0])
		votes := map[string]int64{}
		for i, cand := range c.Candidates {
			votes[string(cand.ID)] = scale * int64(i+1)
		}
		return map[string]any{"id": string(p.Region) + "-" + id, "precinct": p.ID, "contest": c.ID, "votes": votes, "complete": complete}
	}
	record := func(r map[string]any) {
		votes := map[tally.CandidateID]int64{}
		for k, v := range r["votes"].(map[string]int64) {
			votes[tally.CandidateID(k)] = v
		}
		p, c := r["precinct"].(tally.PrecinctID), r["contest"].(tally.ContestID)
		if latest[p] == nil {
			latest[p] = map[tally.ContestID]map[tally.CandidateID]int64{}
		}
		latest[p][c] = votes
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	results := func(t *testing.T, body map[string]any) []map[string]any {
		t.Helper()
		rs, ok := body["results"].([]any)
		if !ok {
			t.Fatalf("answer %v has no results", body)
		}
		out := make([]map[string]any, len(rs))
		for i, r := range rs {
			out[i] = r.(map[string]any)
		}
		return out
	}

	for _, reg := range e.Regions {
		t.Run("Region_"+string(reg.ID), func(t *testing.T) {
			url := f.intake(reg.ID) + "/api/v1/reports"
			ps := e.RegionPrecincts(reg.ID)[:4]
			p := func(i int) *tally.Precinct { return e.Precinct(ps[i]) }

			// A single partial report.
			first := report(p(0), "partial-0", 10, false)
			if st, body := post(t, url, mustJSON(first)); st != http.StatusOK {
				t.Fatalf("single report: %d %v", st, body)
			}
			record(first)

			// A batch of final reports; the first replaces the partial one.
			var batch []map[string]any
			for i := range ps {
				batch = append(batch, report(p(i), fmt.Sprintf("final-%d", i), int64(100+i), true))
			}
			st, body := post(t, url, mustJSON(batch))
			if st != http.StatusOK {
				t.Fatalf("batch: %d %v", st, body)
			}
			first4 := results(t, body)
			if len(first4) != len(batch) {
				t.Fatalf("batch answered %d results, want %d", len(first4), len(batch))
			}
			for _, r := range batch {
				record(r)
			}

			// The same batch again: duplicates, answered with the original sequences.
			st, body = post(t, url, mustJSON(batch))
			if st != http.StatusOK {
				t.Fatalf("retried batch: %d %v", st, body)
			}
			for i, r := range results(t, body) {
				if r["duplicate"] != true || r["seq"] != first4[i]["seq"] {
					t.Errorf("retry %d = %v, want duplicate of seq %v", i, r, first4[i]["seq"])
				}
			}

			// A correction of the second precinct's final report.
			fix := report(p(1), "fix-1", 7, true)
			fix["correction"] = map[string]any{"supersedes": first4[1]["id"], "supersedes_seq": first4[1]["seq"], "reason": "transposed digits"}
			st, body = post(t, f.intake(reg.ID)+"/api/v1/corrections", mustJSON(fix))
			if st != http.StatusOK {
				t.Fatalf("correction: %d %v", st, body)
			}
			fixSeq := results(t, body)[0]["seq"]
			record(fix)

			// A second correction of the same, now superseded, report is stale.
			stale := report(p(1), "fix-1-late", 9, true)
			stale["correction"] = map[string]any{"supersedes": first4[1]["id"], "supersedes_seq": first4[1]["seq"], "reason": "late"}
			if st, body := post(t, url, mustJSON(stale)); st != http.StatusConflict {
				t.Errorf("stale correction: %d %v, want 409", st, body)
			}
			// The correction retried is a duplicate, not a conflict.
			st, body = post(t, url, mustJSON(fix))
			if st != http.StatusOK || results(t, body)[0]["duplicate"] != true || results(t, body)[0]["seq"] != fixSeq {
				t.Errorf("retried correction: %d %v, want duplicate of seq %v", st, body, fixSeq)
			}
		})
	}

	want := expectedTotals(e, latest)
	waitFor(t, 30*time.Second, func() string { return checkTotals(t, f.api, want, false) })

	t.Run("BadInput", func(t *testing.T) {
		reg := e.Regions[0]
		other := e.Regions[1]
		url := f.intake(reg.ID) + "/api/v1/reports"
		p := e.Precinct(e.RegionPrecincts(reg.ID)[5])
		c := e.Contest(p.Contests[0])
		good := func() map[string]any { return report(p, "bad-case", 50, false) }
		with := func(k string, v any) []byte { r := good(); r[k] = v; return mustJSON(r) }
		cand := string(c.Candidates[0].ID)
		otherP := e.Precinct(e.RegionPrecincts(other.ID)[0])
		tests := []struct {
			name   string
			body   []byte
			status int
			want   string
		}{
			{"MalformedJSON", []byte(`{"precinct":`), 400, "malformed JSON"},
			{"UnknownField", with("colour", "red"), 400, `unknown field "colour"`},
			{"UnknownPrecinct", with("precinct", "nowhere"), 400, "unknown precinct"},
			{"UnknownContest", with("contest", "mayor"), 400, "unknown contest"},
			{"UnknownCandidate", with("votes", map[string]int64{"nobody": 3}), 400, "unknown candidate"},
			{"NegativeCount", with("votes", map[string]int64{cand: -3}), 400, "non-negative"},
			{"FractionalCount", []byte(strings.Replace(string(with("votes", map[string]any{cand: "X"})), `"X"`, "2.5", 1)), 400, "non-negative integer"},
			{"OtherRegionsPrecinct", with("precinct", otherP.ID), 400, "belongs to region"},
			{"OverBallotsCast", with("ballots_cast", 10), 400, "ballots_cast"},
			{"Oversized", mustJSON(map[string]any{"id": strings.Repeat("x", 9<<20)}), 413, ""},
			{"BatchWithOneBad", mustJSON([]any{good(), report(p, "bad-2", 5, false), map[string]any{"id": string(reg.ID) + "-bad-3", "precinct": "nowhere", "contest": c.ID, "votes": map[string]int{cand: 1}}}), 400, "reports[2]"},
			{"EmptyBatch", []byte(`[]`), 400, "no reports"},
		}
		js := mustRegionJS(t, f.regions[reg.ID])
		before := streamMsgs(t, js)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				st, body := post(t, url, tt.body)
				if st != tt.status {
					t.Fatalf("status %d, want %d: %v", st, tt.status, body)
				}
				e, ok := body["error"].(map[string]any)
				if !ok {
					t.Fatalf("answer %v has no error object", body)
				}
				if msg, _ := e["message"].(string); !strings.Contains(msg, tt.want) {
					t.Errorf("message %q, want it to contain %q", msg, tt.want)
				}
				if got := streamMsgs(t, js); got != before {
					t.Errorf("stream holds %d messages, had %d: bad input was stored", got, before)
				}
			})
		}
		// Nothing counted either: a good report sent after the bad ones is
		// counted, and the totals are exactly the earlier ones plus it.
		sentinel := good()
		if st, body := post(t, url, mustJSON(sentinel)); st != http.StatusOK {
			t.Fatalf("good report after bad ones: %d %v", st, body)
		}
		record(sentinel)
		want := expectedTotals(e, latest)
		waitFor(t, 30*time.Second, func() string { return checkTotals(t, f.api, want, false) })
	})
}

func mustRegionJS(tb testing.TB, n *regional.Node) jetstream.JetStream {
	tb.Helper()
	nc, err := n.Connect()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

func streamMsgs(tb testing.TB, js jetstream.JetStream) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, tally.ResultsStream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.Msgs
}
