package tally_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
	// ReadTotals, a cell at a time, from what a snapshot writes.
	var w bytes.Buffer
	if err := orig.Copy().WriteJSON(&w); err != nil {
		t.Fatal(err)
	}
	read, err := tally.ReadTotals(e, json.NewDecoder(&w))
	if err != nil {
		t.Fatalf("ReadTotals: %v", err)
	}
	if got := mustJSON(t, read.State()); !bytes.Equal(got, b) {
		t.Fatalf("state read differs:\n got %s\nwant %s", got, b)
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

// ReadTotals refuses what it cannot read a cell at a time: the head of
// the state after its cells, a field twice, a field it does not know.
func TestReadTotalsRefuses(t *testing.T) {
	e, _ := MustBuildSmall(t)
	for _, tc := range []struct{ name, in, want string }{
		{"CellsFirst", `{"cells":[],"election":"` + e.ID + `"}`, "cells before the election field"},
		{"HeadAfterCells", `{"election":"` + e.ID + `","cells":[],"events":1}`, `field "events" after the cells`},
		{"Twice", `{"election":"` + e.ID + `","election":"` + e.ID + `"}`, `field "election" twice`},
		{"Unknown", `{"election":"` + e.ID + `","Cells":[]}`, `unknown field "Cells"`},
		{"NotAnObject", `[]`, "want"},
		{"CellsNotAnArray", `{"election":"` + e.ID + `","cells":{}}`, "cells: want an array"},
		{"Truncated", `{"election":"` + e.ID + `","cells":[`, "totals state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tally.ReadTotals(e, json.NewDecoder(strings.NewReader(tc.in)))
			if tally.ErrorCode(err) != tally.EINVALID || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadTotals(%s) error = %v, want EINVALID containing %q", tc.in, err, tc.want)
			}
		})
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
			if st == nil {
				return
			}
			_, err = tally.ReadTotals(e, json.NewDecoder(bytes.NewReader(mustJSON(t, st))))
			if tally.ErrorCode(err) != tally.EINVALID || !strings.Contains(err.Error(), tt2.want) {
				t.Errorf("ReadTotals() error = %v, want EINVALID containing %q", err, tt2.want)
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
	f.Add([]byte(`{"election":"gen-2024","cells":null,"contests":[]}`))
	f.Add([]byte(`{"cells":[],"election":"gen-2024"}`))
	f.Add([]byte(`{"election":"gen-2024","election":"gen-2024"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// ReadTotals accepts only what RestoreTotals accepts, with the
		// same result.
		dec := json.NewDecoder(bytes.NewReader(b))
		read, rerr := tally.ReadTotals(e, dec)
		if rerr == nil {
			if _, err := dec.Token(); err != io.EOF {
				read = nil // data after the object: json.Unmarshal refuses it
			}
		}
		var st tally.TotalsState
		if json.Unmarshal(b, &st) != nil {
			if read != nil {
				t.Fatalf("ReadTotals accepted what json.Unmarshal refuses: %q", b)
			}
			return
		}
		restored, err := tally.RestoreTotals(e, &st)
		if err != nil {
			if read != nil {
				t.Fatalf("ReadTotals accepted what RestoreTotals refuses (%v): %q", err, b)
			}
			return // refusing is fine; panicking is not
		}
		if read != nil {
			if g, w := mustJSON(t, read.State()), mustJSON(t, restored.State()); !bytes.Equal(g, w) {
				t.Fatalf("ReadTotals read %q as\n%s\nRestoreTotals\n%s", b, g, w)
			}
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
