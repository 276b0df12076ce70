package tally_test

import (
	"testing"

	"github.com/tallyvote/tally"
)

func TestTotalsApply(t *testing.T) {
	e, _ := MustBuildSmall(t)
	p1, p2 := e.Precinct("xa-north-1"), e.Precinct("xa-north-2")
	rep := func(p *tally.Precinct, id string, smith, jones int64, complete bool) *tally.Report {
		return &tally.Report{ID: tally.EventID(string(p.Region) + "-" + id), Region: p.Region, Precinct: p.ID, Contest: "xa-president",
			Votes: map[tally.CandidateID]int64{"smith": smith, "jones": jones}, Complete: complete}
	}
	tt := tally.NewTotals(e)
	steps := []struct {
		seq     uint64
		r       *tally.Report
		applied bool
	}{
		{1, rep(p1, "a", 10, 5, false), true},
		{2, rep(p2, "b", 3, 4, true), true},
		{3, rep(p1, "c", 20, 9, true), true},  // replaces a
		{2, rep(p2, "b", 3, 4, true), false},  // redelivered: ignored
		{3, rep(p1, "c", 20, 9, true), false}, // redelivered: ignored
	}
	for _, s := range steps {
		if got := tt.Apply(s.seq, s.r); got != s.applied {
			t.Fatalf("Apply(%d) = %v, want %v", s.seq, got, s.applied)
		}
	}
	fix := rep(p1, "d", 19, 9, true)
	fix.Correction = &tally.Correction{Supersedes: "c", SupersedesSeq: 3, Reason: "typo"}
	if !tt.Apply(4, fix) {
		t.Fatal("correction not applied")
	}
	ct := tt.Contest("xa-president")
	if ct.Votes["smith"] != 22 || ct.Votes["jones"] != 13 {
		t.Errorf("votes = %v, want smith 22, jones 13", ct.Votes)
	}
	if ct.Reporting != 2 || ct.Complete != 2 || ct.Corrections != 1 {
		t.Errorf("reporting, complete, corrections = %d, %d, %d; want 2, 2, 1", ct.Reporting, ct.Complete, ct.Corrections)
	}
	if got := tt.LastSeq(p1.Region); got != 4 {
		t.Errorf("LastSeq = %d, want 4", got)
	}
	res := tt.ContestResult("xa-president", map[tally.RegionID]tally.RegionStatus{p1.Region: {Status: tally.StatusOffline}})
	if !res.Partial || res.TotalVotes != 35 || res.Candidates[0].ID != "smith" || res.Precincts.Total != 4 {
		t.Errorf("result = %+v, want partial, 35 votes, smith first, 4 precincts", res)
	}
	nat := tally.NationalResult("President", []tally.ContestResult{res, tt.ContestResult("xb-president", nil)})
	if nat.ID != tally.NationalContestID("President") || nat.TotalVotes != 35 || nat.Precincts.Total != 6 || !nat.Partial {
		t.Errorf("national = %+v", nat)
	}
}
