package tally_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// A cell gives back what its report carried, whatever the form of its id
// (the intake's "<region>-<24 hex digits>" and short ids are held in the
// cell's slot, others beside it), its time's zone and its vote types, after Apply, through the
// state and the compact form, and as precinct results.
func TestTotalsCellForms(t *testing.T) {
	e, _ := MustBuildSmall(t)
	p := e.Precinct("xa-north-1")
	other := e.Precinct("xa-north-2")
	const c = "xa-president"
	hex := "0123456789abcdef01234567"
	at := time.Date(2024, 11, 5, 21, 4, 5, 123456789, time.UTC)
	vt := map[tally.VoteType]map[tally.CandidateID]int64{tally.VoteEarly: {"smith": 4}, tally.VoteElectionDay: {"smith": 6, "jones": 5}}
	assigned := &tally.Report{Region: p.Region, Precinct: p.ID, Contest: c, Votes: map[tally.CandidateID]int64{"smith": 1}, ReportedAt: at}
	if err := assigned.AssignID(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		id   tally.EventID
		at   time.Time
		vt   map[tally.VoteType]map[tally.CandidateID]int64
	}{
		{"assigned id", assigned.ID, at, nil},
		{"hex id, vote types", tally.EventID(string(p.Region) + "-" + hex), at.In(time.FixedZone("EST", -5*3600)), vt},
		{"upper-case hex", tally.EventID(string(p.Region) + "-" + strings.ToUpper(hex)), at.In(time.FixedZone("", 5*3600+1800)), nil},
		{"another region's prefix", tally.EventID(string(other.Region) + "x-" + hex), at.In(time.FixedZone("", 30)), vt},
		{"short hex", tally.EventID(string(p.Region) + "-" + hex[:22]), at, nil},
		{"short id", tally.EventID(string(p.Region) + "-17-4-0"), at, vt},
		{"19 bytes", "abcdefghij-12345678", at, nil},
		{"20 bytes", "abcdefghij-123456789", at, nil},
		{"19 bytes again", "zyxwvutsrq-87654321", at, nil},
		{"office's own id", "xa-north-office-7/2024-11-05T21:04", at.In(time.FixedZone("", -9*3600)), vt},
		{"no time", tally.EventID(string(p.Region) + "-" + hex[2:] + "ff"), time.Time{}, nil},
	}
	tt := tally.NewTotals(e)
	for i, s := range steps {
		rep := &tally.Report{ID: s.id, Region: p.Region, Precinct: p.ID, Contest: c, Complete: i%2 == 0,
			Votes: map[tally.CandidateID]int64{"smith": int64(10 + i), "jones": int64(5 + i)}, VoteTypes: s.vt, ReportedAt: s.at}
		if !tt.Apply(uint64(i+1), rep) {
			t.Fatalf("%s: not applied", s.name)
		}
		check := func(from string, tt *tally.Totals) {
			t.Helper()
			cl := tt.Cell(p.ID, c)
			if cl == nil {
				t.Fatalf("%s, %s: no cell", s.name, from)
			}
			if cl.ID != s.id {
				t.Errorf("%s, %s: id %q, want %q", s.name, from, cl.ID, s.id)
			}
			if !cl.ReportedAt.Equal(s.at) || cl.ReportedAt.Format(time.RFC3339Nano) != s.at.Format(time.RFC3339Nano) {
				t.Errorf("%s, %s: reported at %v, want %v", s.name, from, cl.ReportedAt, s.at)
			}
			if !reflect.DeepEqual(cl.VoteTypes, s.vt) {
				t.Errorf("%s, %s: vote types %v, want %v", s.name, from, cl.VoteTypes, s.vt)
			}
			if !maps.Equal(cl.Votes, rep.Votes) || cl.Complete != rep.Complete || cl.Seq != uint64(i+1) || cl.Reports != i+1 {
				t.Errorf("%s, %s: cell %+v, want the report's votes %v, complete %v, seq %d, %d reports", s.name, from, cl, rep.Votes, rep.Complete, i+1, i+1)
			}
			for _, sh := range e.ContestShards(c) {
				res := tt.PrecinctResults(c, sh)
				for _, pr := range res.Precincts {
					if pr.ID == p.ID && (pr.Report != s.id || !pr.ReportedAt.Equal(s.at)) {
						t.Errorf("%s, %s: precinct result report %q at %v, want %q at %v", s.name, from, pr.Report, pr.ReportedAt, s.id, s.at)
					}
				}
				want, err := json.Marshal(res)
				if err != nil {
					t.Fatal(err)
				}
				got, err := tt.AppendPrecinctResults(nil, c, sh)
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s, %s: AppendPrecinctResults = %s, %v; want %s", s.name, from, got, err, want)
				}
			}
		}
		check("applied", tt)
		restored, err := tally.RestoreTotals(e, tt.State())
		if err != nil {
			t.Fatalf("%s: RestoreTotals: %v", s.name, err)
		}
		check("restored", restored)
		back, err := tally.ReadTotalsCompact(e, json.NewDecoder(bytes.NewReader(mustCompact(t, tt))))
		if err != nil {
			t.Fatalf("%s: ReadTotalsCompact: %v", s.name, err)
		}
		check("compact", back)
		var js bytes.Buffer
		if err := tt.Copy().WriteJSON(&js); err != nil {
			t.Fatal(err)
		}
		if want := mustJSON(t, tt.State()); !bytes.Equal(bytes.TrimSpace(js.Bytes()), bytes.TrimSpace(want)) {
			t.Errorf("%s: the copy's JSON differs from the state's:\n got %s\nwant %s", s.name, js.Bytes(), want)
		}
	}
	if ct := tt.Contest(c); ct.Reporting != 1 || ct.Votes["smith"] != int64(10+len(steps)-1) {
		t.Errorf("contest: reporting %d, smith %d; want 1 and the last report's", ct.Reporting, ct.Votes["smith"])
	}
}
