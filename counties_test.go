package tally_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

func TestCountyAndPrecinctResults(t *testing.T) {
	e, _ := MustBuildSmall(t)
	p1, p2 := e.Precinct("xa-north-1"), e.Precinct("xa-north-2")
	rep := func(p *tally.Precinct, id string, smith, jones int64, complete bool) *tally.Report {
		return &tally.Report{ID: tally.EventID(string(p.Region) + "-" + id), Region: p.Region, Precinct: p.ID, Contest: "xa-president",
			Votes: map[tally.CandidateID]int64{"smith": smith, "jones": jones}, Complete: complete}
	}
	tt := tally.NewTotals(e)
	tt.Apply(1, rep(p1, "a", 10, 5, true))
	tt.Apply(2, rep(p2, "b", 3, 4, false))
	fix := rep(p1, "c", 12, 5, true)
	fix.Correction = &tally.Correction{Supersedes: fix.ID, SupersedesSeq: 1, Reason: "typo"}
	tt.Apply(3, fix)

	cr := tt.CountyResults("xa-president")
	if len(cr.Counties) != 3 || cr.Counties[0].County != "East" || cr.Counties[1].County != "North" {
		t.Fatalf("counties = %+v, want East, North, South", cr.Counties)
	}
	north := cr.Counties[1]
	if north.Votes["smith"] != 15 || north.Votes["jones"] != 9 || north.TotalVotes != 24 ||
		north.Precincts != (tally.PrecinctCount{Total: 2, Reporting: 2, Complete: 1}) || north.Corrections != 1 {
		t.Errorf("North = %+v", north)
	}
	if east := cr.Counties[0]; east.Precincts.Reporting != 0 || east.Precincts.Total != 1 || east.Votes["smith"] != 0 {
		t.Errorf("East = %+v, want 1 precinct, none reporting", east)
	}

	shard := tally.Shard{Region: p1.Region, N: e.PrecinctShard(p1.ID)}
	pr := tt.PrecinctResults("xa-president", shard)
	if len(pr.Precincts) != 2 {
		t.Fatalf("precincts = %+v, want 2 reported", pr.Precincts)
	}
	got := pr.Precincts[0]
	if got.ID != p1.ID || got.Votes["smith"] != 12 || got.Seq != 3 || got.Reports != 2 || got.Corrections != 1 ||
		got.Correction == nil || got.Correction.Reason != "typo" {
		t.Errorf("precinct %s = %+v", p1.ID, got)
	}
	if pr.Precincts[1].Correction != nil || pr.Precincts[1].Corrections != 0 {
		t.Errorf("precinct %s = %+v, want no correction", p2.ID, pr.Precincts[1])
	}
	if k := tally.PrecinctsKey("xa-president", shard); k != "precincts.xa-president."+string(p1.Region)+".0" {
		t.Errorf("PrecinctsKey = %q", k)
	}
}

// The shards of a contest's precinct results hold each reported precinct
// exactly once, whatever the regions' precincts interleave, and their keys
// parse back to what made them.
func TestPrecinctShards(t *testing.T) {
	e := &tally.Election{ID: "shards", Regions: []tally.Region{{ID: "ra"}, {ID: "rb"}},
		Contests: []tally.Contest{
			{ID: "all", Candidates: []tally.Candidate{{ID: "x"}}},
			{ID: "some", Candidates: []tally.Candidate{{ID: "x"}}},
		}}
	const n = 3*tally.PrecinctShardSize + 7
	for i := range n {
		p := tally.Precinct{ID: tally.PrecinctID(fmt.Sprintf("p%d", i)), County: "c", Region: "ra", Contests: []tally.ContestID{"all"}}
		if i%3 == 0 {
			p.Region = "rb"
		}
		if i%5 == 0 {
			p.Contests = append(p.Contests, "some")
		}
		e.Precincts = append(e.Precincts, p)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	tt := tally.NewTotals(e)
	seq := map[tally.RegionID]uint64{}
	for i, p := range e.Precincts {
		if i%7 == 0 {
			continue // not reported
		}
		for _, c := range p.Contests {
			seq[p.Region]++
			tt.Apply(seq[p.Region], &tally.Report{ID: tally.EventID(fmt.Sprintf("%s-%s", p.ID, c)), Region: p.Region, Precinct: p.ID, Contest: c,
				Votes: map[tally.CandidateID]int64{"x": int64(i)}})
		}
	}
	for _, c := range e.Contests {
		seen := map[tally.PrecinctID]int{}
		for _, s := range e.ContestShards(c.ID) {
			key := tally.PrecinctsKey(c.ID, s)
			gc, gs, ok := tally.ParsePrecinctsKey(key)
			if !ok || gc != c.ID || gs != s {
				t.Errorf("ParsePrecinctsKey(%q) = %q, %+v, %v", key, gc, gs, ok)
			}
			pr := tt.PrecinctResults(c.ID, s)
			if pr.Contest != c.ID || pr.Region != s.Region || pr.Shard != s.N {
				t.Errorf("%s: names %s %s %d", key, pr.Contest, pr.Region, pr.Shard)
			}
			last := -1
			for _, r := range pr.Precincts {
				i := e.PrecinctIndex(r.ID)
				if i/tally.PrecinctShardSize != s.N || e.Precinct(r.ID).Region != s.Region || i <= last {
					t.Errorf("%s: precinct %s (index %d) out of place", key, r.ID, i)
				}
				last = i
				seen[r.ID]++
				if r.Votes["x"] != int64(i) {
					t.Errorf("%s: precinct %s votes %v", key, r.ID, r.Votes)
				}
			}
		}
		for _, pid := range e.ContestPrecincts(c.ID) {
			want := 1
			if e.PrecinctIndex(pid)%7 == 0 {
				want = 0
			}
			if seen[pid] != want {
				t.Errorf("contest %s: precinct %s in %d shards, want %d", c.ID, pid, seen[pid], want)
			}
		}
	}
	for _, bad := range []string{"precincts.all.ra", "precincts.all.ra.x", "precincts.all.ra.-1", "precincts..0", "precincts.all..0", "counties.all"} {
		if _, _, ok := tally.ParsePrecinctsKey(bad); ok {
			t.Errorf("ParsePrecinctsKey(%q) accepted", bad)
		}
	}
}

// The county results Apply keeps up to date equal those counted afresh from
// the cells, whatever the order, times and corrections of the reports.
func TestCountyResultsIncremental(t *testing.T) {
	e, _ := MustBuildSmall(t)
	rng := rand.New(rand.NewPCG(1, 2))
	zones := []*time.Location{time.UTC, time.FixedZone("e", 3600)}
	for _, c := range e.Contests {
		tt := tally.NewTotals(e)
		tt.CountyResults(c.ID) // the index first: Apply keeps it from here
		pids := e.ContestPrecincts(c.ID)
		seq := map[tally.RegionID]uint64{}
		base := time.Date(2020, 11, 3, 20, 0, 0, 0, time.UTC)
		for i := range 300 {
			p := e.Precinct(pids[rng.IntN(len(pids))])
			votes := map[tally.CandidateID]int64{}
			for _, cand := range c.Candidates {
				if rng.IntN(4) > 0 {
					votes[cand.ID] = rng.Int64N(100)
				}
			}
			if len(votes) == 0 {
				votes[c.Candidates[0].ID] = 1
			}
			rep := &tally.Report{ID: tally.EventID(fmt.Sprintf("%s-%d", p.Region, i)), Region: p.Region, Precinct: p.ID,
				Contest: c.ID, Votes: votes, Complete: rng.IntN(2) == 0,
				ReportedAt: base.Add(time.Duration(rng.IntN(20)) * time.Minute).In(zones[rng.IntN(2)])}
			if rng.IntN(3) == 0 {
				rep.BallotsCast = i64(1000)
			}
			if rng.IntN(5) == 0 {
				rep.Correction = &tally.Correction{Supersedes: "x", SupersedesSeq: 1, Reason: "typo"}
			}
			seq[p.Region]++
			tt.Apply(seq[p.Region], rep)
			if i%7 != 0 {
				continue
			}
			fresh, err := tally.RestoreTotals(e, tt.State())
			if err != nil {
				t.Fatal(err)
			}
			got, want := tt.CountyResults(c.ID), fresh.CountyResults(c.ID)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s after %d reports: CountyResults() = %+v, want %+v", c.ID, i+1, got, want)
			}
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(want)
			if string(gb) != string(wb) {
				t.Fatalf("%s after %d reports: JSON %s, want %s", c.ID, i+1, gb, wb)
			}
		}
	}
}
