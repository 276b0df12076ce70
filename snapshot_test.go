package tally_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// randomReports returns n valid reports of e's precincts, some of them
// corrections, split by vote type, with ballots cast; seq is each one's
// sequence in its region's stream.
func randomReports(e *tally.Election, n int, seed uint64) (reps []*tally.Report, seqs []uint64) {
	rng := rand.New(rand.NewPCG(seed, seed))
	last := map[tally.RegionID]uint64{}
	type key struct {
		p tally.PrecinctID
		c tally.ContestID
	}
	latest := map[key]struct {
		id  tally.EventID
		seq uint64
	}{}
	at := time.Date(2024, 11, 5, 20, 0, 0, 0, time.UTC)
	for i := range n {
		p := e.Precincts[rng.IntN(len(e.Precincts))]
		c := p.Contests[rng.IntN(len(p.Contests))]
		con := e.Contest(c)
		rep := &tally.Report{
			ID: tally.EventID(fmt.Sprintf("%s-%d", p.Region, i)), Region: p.Region, Precinct: p.ID, Contest: c,
			Votes: map[tally.CandidateID]int64{}, VoteTypes: map[tally.VoteType]map[tally.CandidateID]int64{},
			Complete: rng.IntN(3) == 0, ReportedAt: at.Add(time.Duration(rng.IntN(3600)) * time.Second),
		}
		var ballots int64
		for _, cand := range con.Candidates {
			day, early := rng.Int64N(500), rng.Int64N(300)
			rep.Votes[cand.ID] = day + early
			for vt, v := range map[tally.VoteType]int64{tally.VoteElectionDay: day, tally.VoteEarly: early} {
				if rep.VoteTypes[vt] == nil {
					rep.VoteTypes[vt] = map[tally.CandidateID]int64{}
				}
				rep.VoteTypes[vt][cand.ID] = v
			}
			ballots += day + early
		}
		rep.BallotsCast = &ballots
		if prev, ok := latest[key{p.ID, c}]; ok && rng.IntN(4) == 0 {
			rep.Correction = &tally.Correction{Supersedes: prev.id, SupersedesSeq: prev.seq, Reason: "recount"}
		}
		last[p.Region] += uint64(1 + rng.IntN(2)) // gaps: other messages in the stream
		latest[key{p.ID, c}] = struct {
			id  tally.EventID
			seq uint64
		}{rep.ID, last[p.Region]}
		reps, seqs = append(reps, rep), append(seqs, last[p.Region])
	}
	return reps, seqs
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// A state taken, encoded, decoded and restored gives the same totals, which
// then go on applying reports exactly as the originals do.
func TestTotalsStateRoundTrip(t *testing.T) {
	e, _ := MustBuildSmall(t)
	reps, seqs := randomReports(e, 400, 1)
	orig := tally.NewTotals(e)
	for i := range 300 {
		if err := reps[i].Validate(e); err != nil {
			t.Fatal(err)
		}
		orig.Apply(seqs[i], reps[i])
	}
	st := orig.State()
	b := mustJSON(t, st)
	var back tally.TotalsState
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	restored, err := tally.RestoreTotals(e, &back)
	if err != nil {
		t.Fatalf("RestoreTotals: %v", err)
	}
	if got := mustJSON(t, restored.State()); !bytes.Equal(got, b) {
		t.Fatalf("restored state differs:\n got %s\nwant %s", got, b)
	}
	// Later changes to the totals do not reach a state already taken.
	for i := 300; i < len(reps); i++ {
		orig.Apply(seqs[i], reps[i])
		restored.Apply(seqs[i], reps[i])
	}
	if got := mustJSON(t, st); !bytes.Equal(got, b) {
		t.Error("a state changed after it was taken")
	}
	if got, want := mustJSON(t, restored.State()), mustJSON(t, orig.State()); !bytes.Equal(got, want) {
		t.Errorf("after more reports:\n got %s\nwant %s", got, want)
	}
	for _, c := range e.Contests {
		got, want := restored.ContestResult(c.ID, nil), orig.ContestResult(c.ID, nil)
		if !bytes.Equal(mustJSON(t, got), mustJSON(t, want)) {
			t.Errorf("ContestResult(%s) = %+v, want %+v", c.ID, got, want)
		}
		for _, s := range e.ContestShards(c.ID) {
			if g, w := mustJSON(t, restored.PrecinctResults(c.ID, s)), mustJSON(t, orig.PrecinctResults(c.ID, s)); !bytes.Equal(g, w) {
				t.Errorf("PrecinctResults(%s, %v) = %s, want %s", c.ID, s, g, w)
			}
		}
	}
	for _, r := range e.Regions {
		if restored.LastSeq(r.ID) != orig.LastSeq(r.ID) {
			t.Errorf("LastSeq(%s) = %d, want %d", r.ID, restored.LastSeq(r.ID), orig.LastSeq(r.ID))
		}
	}
	if restored.Events() != orig.Events() {
		t.Errorf("Events() = %d, want %d", restored.Events(), orig.Events())
	}
}

func TestRestoreTotalsRefuses(t *testing.T) {
	e, _ := MustBuildSmall(t)
	reps, seqs := randomReports(e, 100, 2)
	tt := tally.NewTotals(e)
	for i := range reps {
		tt.Apply(seqs[i], reps[i])
	}
	tests := []struct {
		name string
		edit func(s *tally.TotalsState)
		want string
	}{
		{"OtherElection", func(s *tally.TotalsState) { s.Election = "gen-2020" }, `of election "gen-2020"`},
		{"UnknownRegion", func(s *tally.TotalsState) { s.LastSeq["nowhere"] = 3 }, `unknown region "nowhere"`},
		{"UnknownPrecinct", func(s *tally.TotalsState) { s.Cells[0].Precinct = "nowhere" }, "not a precinct and contest"},
		{"CellTwice", func(s *tally.TotalsState) { s.Cells = append(s.Cells, s.Cells[0]) }, "listed twice"},
		{"CellPastLastSeq", func(s *tally.TotalsState) { s.Cells[0].Cell.Seq = 1 << 40 }, "past region"},
		{"VotesTampered", func(s *tally.TotalsState) {
			for cand := range s.Contests[0].Votes {
				s.Contests[0].Votes[cand]++
				break
			}
		}, "its cells make"},
		{"RegionVotesTampered", func(s *tally.TotalsState) {
			for cand := range s.Contests[0].Regions[0].Votes {
				s.Contests[0].Regions[0].Votes[cand]--
				break
			}
		}, "its cells make"},
		{"ReportingTampered", func(s *tally.TotalsState) { s.Contests[0].Reporting++ }, "reporting"},
		{"VoteTypeMissing", func(s *tally.TotalsState) { delete(s.Contests[0].VoteTypes, tally.VoteEarly) }, "vote type early missing"},
		{"SumsMissing", func(s *tally.TotalsState) { s.Contests = s.Contests[1:] }, "no sums"},
		{"RegionSumsMissing", func(s *tally.TotalsState) { s.Contests[0].Regions = s.Contests[0].Regions[1:] }, "no sums"},
		{"Nil", nil, "missing"},
	}
	for _, tt2 := range tests {
		t.Run(tt2.name, func(t *testing.T) {
			var st *tally.TotalsState
			if tt2.edit != nil {
				// A fresh, deep copy each time.
				st = &tally.TotalsState{}
				if err := json.Unmarshal(mustJSON(t, tt.State()), st); err != nil {
					t.Fatal(err)
				}
				tt2.edit(st)
			}
			_, err := tally.RestoreTotals(e, st)
			if tally.ErrorCode(err) != tally.EINVALID || !strings.Contains(err.Error(), tt2.want) {
				t.Errorf("RestoreTotals() error = %v, want EINVALID containing %q", err, tt2.want)
			}
		})
	}
}

func FuzzRestoreTotals(f *testing.F) {
	e, _ := MustBuildSmall(f)
	reps, seqs := randomReports(e, 3, 3)
	tt := tally.NewTotals(e)
	for i := range reps {
		tt.Apply(seqs[i], reps[i])
	}
	b, _ := json.Marshal(tt.State())
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var st tally.TotalsState
		if json.Unmarshal(b, &st) != nil {
			return
		}
		restored, err := tally.RestoreTotals(e, &st)
		if err != nil {
			return // refusing is fine; panicking is not
		}
		// What is accepted must survive another report of every cell.
		for i := range reps {
			restored.Apply(restored.LastSeq(reps[i].Region)+1, reps[i])
		}
		for _, c := range e.Contests {
			restored.ContestResult(c.ID, nil)
		}
	})
}
