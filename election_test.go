package tally_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/tallyvote/tally"
)

// ballotElection is an election of the given size in which each region's
// precincts have the same contests (the region's own), as its JSON.
func ballotElection(tb testing.TB, precincts, contests, regions int) []byte {
	tb.Helper()
	e := tally.Election{ID: "ballots", Name: "Ballots", Date: "2026-11-03"}
	for r := range regions {
		e.Regions = append(e.Regions, tally.Region{ID: tally.RegionID(fmt.Sprintf("r%d", r+1)), Name: "R"})
		for c := range contests {
			id := tally.ContestID(fmt.Sprintf("r%d-c%d", r+1, c))
			e.Contests = append(e.Contests, tally.Contest{ID: id, Name: string(id), Office: fmt.Sprintf("office-%d", c), Seats: 1,
				Candidates: []tally.Candidate{{ID: "a", Name: "A"}, {ID: "b", Name: "B"}}})
		}
	}
	for p := range precincts {
		r := p % regions
		var cids []tally.ContestID
		for c := range contests {
			cids = append(cids, e.Contests[r*contests+c].ID)
		}
		e.Precincts = append(e.Precincts, tally.Precinct{ID: tally.PrecinctID(fmt.Sprintf("p%06d", p)), Name: "P",
			County: fmt.Sprintf("county-%d", p/500), Region: e.Regions[r].ID, Contests: cids})
	}
	b, err := json.Marshal(e)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestElectionSharedBallots: precincts with the same contests share one list
// after LoadElection, each list as long as its contests, so that an append
// to one precinct's list does not reach another's; lists that differ stay
// apart, and every precinct keeps its own contests in order.
func TestElectionSharedBallots(t *testing.T) {
	e, err := tally.LoadElection(bytes.NewReader(ballotElection(t, 40, 3, 2)))
	if err != nil {
		t.Fatal(err)
	}
	// A precinct of r1 with its contests in another order, one with a
	// contest fewer, and one with none: each keeps its own.
	extra := []tally.Precinct{
		{ID: "x1", Name: "X", Region: "r1", Contests: []tally.ContestID{"r1-c2", "r1-c0", "r1-c1"}},
		{ID: "x2", Name: "X", Region: "r1", Contests: []tally.ContestID{"r1-c0", "r1-c1"}},
		{ID: "x3", Name: "X", Region: "r1", Contests: []tally.ContestID{}},
		{ID: "x4", Name: "X", Region: "r1", Contests: []tally.ContestID{"r1-c2", "r1-c0", "r1-c1"}},
	}
	e.Precincts = append(e.Precincts, extra...)
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	lists := map[*tally.ContestID]int{}
	for i, p := range e.Precincts {
		var want []tally.ContestID
		if i < 40 {
			for c := range 3 {
				want = append(want, tally.ContestID(fmt.Sprintf("r%d-c%d", i%2+1, c)))
			}
		} else {
			want = extra[i-40].Contests
		}
		if !slices.Equal(p.Contests, want) {
			t.Errorf("precinct %s: contests %v, want %v", p.ID, p.Contests, want)
		}
		if len(p.Contests) > 0 {
			lists[&p.Contests[0]]++
			if cap(p.Contests) != len(p.Contests) {
				t.Errorf("precinct %s: contests cap %d, len %d", p.ID, cap(p.Contests), len(p.Contests))
			}
		}
	}
	// r1's, r2's, and the two of x1 to x4 with contests of their own
	// (x4 shares x1's).
	if len(lists) != 4 {
		t.Errorf("%d lists of contests, want 4 (one per distinct ballot): %v", len(lists), lists)
	}
	if p := e.Precinct("x3"); p.Contests == nil {
		t.Errorf("precinct x3: contests nil, want empty")
	}
	p0, p2 := e.Precincts[0].Contests, e.Precincts[2].Contests // both r1's
	if &p0[0] != &p2[0] {
		t.Errorf("precincts p000000 and p000002 do not share their contests")
	}
	if a := append(p0, "r1-c9"); &a[0] == &p2[0] {
		t.Errorf("an append to one precinct's contests went into the list it shares")
	}
}

// BenchmarkLoadElection loads an election of 20,000 precincts x 30
// contests in 4 regions (each region's precincts with the same contests)
// and reports the live heap it holds per precinct, measured after a
// collection.
//
//	go test -run '^$' -bench LoadElection -benchtime 3x .
func BenchmarkLoadElection(b *testing.B) {
	const precincts = 20_000
	js := ballotElection(b, precincts, 30, 4)
	var perPrecinct float64
	for b.Loop() {
		b.StopTimer()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		e, err := tally.LoadElection(bytes.NewReader(js))
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perPrecinct = float64(after.HeapAlloc-before.HeapAlloc) / precincts
		runtime.KeepAlive(e)
		b.StartTimer()
	}
	b.ReportMetric(perPrecinct, "heap_bytes/precinct")
}
