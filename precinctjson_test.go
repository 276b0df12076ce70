package tally_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// AppendPrecinctResults writes what encoding/json writes of
// PrecinctResults, whatever the votes, times and corrections.
func TestAppendPrecinctResults(t *testing.T) {
	e, _ := MustBuildSmall(t)
	rng := rand.New(rand.NewPCG(3, 4))
	zones := []*time.Location{time.UTC, time.FixedZone("e", 3600), time.FixedZone("w", -5*3600-1800)}
	reasons := []string{"typo", `a "quoted" <reason> & more`, "Übertragungsfehler\n", "tab\there", "\u2028"}
	tt := tally.NewTotals(e)
	seq := map[tally.RegionID]uint64{}
	base := time.Date(2020, 11, 3, 20, 0, 0, 0, time.UTC)
	check := func(when string) {
		t.Helper()
		for _, c := range e.Contests {
			for _, s := range e.ContestShards(c.ID) {
				want, err := json.Marshal(tt.PrecinctResults(c.ID, s))
				if err != nil {
					t.Fatal(err)
				}
				got, err := tt.AppendPrecinctResults([]byte("x"), c.ID, s)
				if err != nil {
					t.Fatal(err)
				}
				if string(got[1:]) != string(want) || got[0] != 'x' {
					t.Fatalf("%s: %s %v:\n got %s\nwant x%s", when, c.ID, s, got, want)
				}
			}
		}
	}
	check("empty")
	for i := range 400 {
		c := e.Contests[rng.IntN(len(e.Contests))]
		pids := e.ContestPrecincts(c.ID)
		p := e.Precinct(pids[rng.IntN(len(pids))])
		votes := map[tally.CandidateID]int64{}
		for _, cand := range c.Candidates {
			if rng.IntN(4) > 0 {
				votes[cand.ID] = rng.Int64N(100000)
			}
		}
		if len(votes) == 0 {
			votes[c.Candidates[0].ID] = 0
		}
		rep := &tally.Report{ID: tally.EventID(fmt.Sprintf("%s-%d", p.Region, i)), Region: p.Region, Precinct: p.ID,
			Contest: c.ID, Votes: votes, Complete: rng.IntN(2) == 0,
			ReportedAt: base.Add(time.Duration(rng.Int64N(int64(20 * time.Hour)))).In(zones[rng.IntN(len(zones))])}
		if rng.IntN(4) == 0 {
			rep.Correction = &tally.Correction{Supersedes: "x", SupersedesSeq: uint64(i), Reason: reasons[rng.IntN(len(reasons))]}
		}
		seq[p.Region]++
		tt.Apply(seq[p.Region], rep)
		if i%13 == 0 {
			check(fmt.Sprintf("after %d reports", i+1))
		}
	}
	check("at the end")
}
