package tally_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// A TotalsCopy writes what encoding/json writes of State at the moment of
// the copy, whatever is applied after.
func TestTotalsCopyWriteJSON(t *testing.T) {
	e, _ := MustBuildSmall(t)
	rng := rand.New(rand.NewPCG(5, 6))
	tt := tally.NewTotals(e)
	seq := map[tally.RegionID]uint64{}
	apply := func(i int) {
		c := e.Contests[rng.IntN(len(e.Contests))]
		pids := e.ContestPrecincts(c.ID)
		p := e.Precinct(pids[rng.IntN(len(pids))])
		votes := map[tally.CandidateID]int64{c.Candidates[0].ID: rng.Int64N(1000)}
		rep := &tally.Report{ID: tally.EventID(fmt.Sprintf("%s-%d", p.Region, i)), Region: p.Region, Precinct: p.ID,
			Contest: c.ID, Votes: votes, Complete: rng.IntN(2) == 0, ReportedAt: time.Date(2020, 11, 3, 20, i, 0, 0, time.UTC)}
		if rng.IntN(3) == 0 { // a zone of its own, and nanoseconds: the copy keeps what its JSON shows
			rep.ReportedAt = time.Date(2020, 11, 3, 20, i, 0, 7+i, time.FixedZone("EST", -5*3600))
		}
		if rng.IntN(4) == 0 {
			n := votes[c.Candidates[0].ID] + 3
			rep.BallotsCast = &n
		}
		if rng.IntN(3) == 0 {
			rep.Correction = &tally.Correction{Supersedes: "x", SupersedesSeq: 1, Reason: `a "reason"`}
		}
		if rng.IntN(3) == 0 {
			rep.VoteTypes = map[tally.VoteType]map[tally.CandidateID]int64{tally.VoteOther: {c.Candidates[0].ID: votes[c.Candidates[0].ID]}}
		}
		seq[p.Region]++
		tt.Apply(seq[p.Region], rep)
	}
	for round := range 4 {
		want, err := json.Marshal(tt.State())
		if err != nil {
			t.Fatal(err)
		}
		cp := tt.Copy()
		for i := range 50 {
			apply(round*50 + i) // after the copy: not in it
		}
		var got strings.Builder
		if err := cp.WriteJSON(&got); err != nil {
			t.Fatal(err)
		}
		if got.String() != string(want) {
			t.Fatalf("round %d:\n got %s\nwant %s", round, got.String(), want)
		}
		var st tally.TotalsState
		if err := json.Unmarshal([]byte(got.String()), &st); err != nil {
			t.Fatal(err)
		}
		if _, err := tally.RestoreTotals(e, &st); err != nil {
			t.Fatalf("round %d: restore: %v", round, err)
		}
	}
}
