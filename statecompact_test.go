package tally_test

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/tallyvote/tally"
)

// mustCompact returns the compact form of t's state.
func mustCompact(tb testing.TB, t *tally.Totals) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := t.Copy().WriteCompact(&b); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// The compact form reads back to the same state, which then goes on
// applying reports as the original does.
func TestTotalsCompactRoundTrip(t *testing.T) {
	e, _ := MustBuildSmall(t)
	reps, seqs := randomReports(e, 400, 3)
	orig := tally.NewTotals(e)
	for i := range 300 {
		if err := reps[i].Validate(e); err != nil {
			t.Fatal(err)
		}
		orig.Apply(seqs[i], reps[i])
	}
	want := mustJSON(t, orig.State())
	b := mustCompact(t, orig)
	dec := json.NewDecoder(bytes.NewReader(b))
	back, err := tally.ReadTotalsCompact(e, dec)
	if err != nil {
		t.Fatalf("ReadTotalsCompact: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Errorf("after the object: %v, want io.EOF", err)
	}
	if got := mustJSON(t, back.State()); !bytes.Equal(got, want) {
		t.Fatalf("state read differs:\n got %s\nwant %s", got, want)
	}
	for i := 300; i < len(reps); i++ {
		orig.Apply(seqs[i], reps[i])
		back.Apply(seqs[i], reps[i])
	}
	if got, want := mustJSON(t, back.State()), mustJSON(t, orig.State()); !bytes.Equal(got, want) {
		t.Errorf("after more reports:\n got %s\nwant %s", got, want)
	}

}

// The compact form is refused when it does not fit the election's ballots
// or is damaged, rather than misread.
func TestReadTotalsCompactRefuses(t *testing.T) {
	e, _ := MustBuildSmall(t)
	reps, seqs := randomReports(e, 200, 4)
	tt := tally.NewTotals(e)
	for i := range reps {
		tt.Apply(seqs[i], reps[i])
	}
	good := mustCompact(t, tt)
	var head struct {
		Groups []struct {
			Contest tally.ContestID `json:"contest"`
			Data    []byte          `json:"data"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(good, &head); err != nil || len(head.Groups) == 0 {
		t.Fatalf("compact form: %v, %d groups", err, len(head.Groups))
	}
	// Another election: the same, with two precincts of a region swapped.
	swapped := *e
	swapped.Precincts = slices.Clone(e.Precincts)
	i, j := -1, -1
	for k, p := range swapped.Precincts {
		if p.Region != swapped.Precincts[0].Region || !slices.Equal(p.Contests, swapped.Precincts[0].Contests) {
			continue
		}
		if i < 0 {
			i = k
		} else if j < 0 {
			j = k
		}
	}
	if j < 0 {
		t.Fatal("no two precincts of a region with the same ballot")
	}
	swapped.Precincts[i], swapped.Precincts[j] = swapped.Precincts[j], swapped.Precincts[i]
	if err := swapped.Validate(); err != nil {
		t.Fatal(err)
	}
	data := string(mustJSON(t, head.Groups[0].Data)) // "<base64>"
	damaged := append([]byte(nil), head.Groups[0].Data...)
	damaged[len(damaged)/2] ^= 0xff
	for _, tc := range []struct {
		name string
		e    *tally.Election
		in   string
		want string
	}{
		{"BallotsChanged", &swapped, string(good), "slots are not the election's"},
		{"DataDamaged", e, strings.Replace(string(good), data, string(mustJSON(t, damaged)), 1), "totals state"},
		{"DataCut", e, strings.Replace(string(good), data, string(mustJSON(t, head.Groups[0].Data[:len(head.Groups[0].Data)-1])), 1), "totals state"},
		{"Truncated", e, string(good[:len(good)/2]), "totals state"},
		{"GroupsFirst", e, `{"groups":[],"election":"` + e.ID + `"}`, "groups before the election field"},
		{"AfterGroups", e, `{"election":"` + e.ID + `","groups":[],"events":1}`, `field "events" after the groups`},
		{"Unknown", e, `{"election":"` + e.ID + `","cells":[]}`, `unknown field "cells"`},
		{"NoGroups", e, `{"election":"` + e.ID + `"}`, "no groups"},
		{"OrphanCorrection", e, `{"election":"` + e.ID + `","corrections":[{"precinct":"x","contest":"y","correction":{"supersedes":"a","supersedes_seq":1,"reason":"r"}}],"groups":[]}`, "no such cell"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tally.ReadTotalsCompact(tc.e, json.NewDecoder(strings.NewReader(tc.in)))
			if tally.ErrorCode(err) != tally.EINVALID || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadTotalsCompact() error = %v, want EINVALID containing %q", err, tc.want)
			}
		})
	}
}

// FuzzReadTotalsCompact: whatever the input, ReadTotalsCompact returns
// without panicking, and what it accepts is written back to the same state
// and survives more reports.
func FuzzReadTotalsCompact(f *testing.F) {
	e, _ := MustBuildSmall(f)
	reps, seqs := randomReports(e, 30, 5)
	tt := tally.NewTotals(e)
	for i := range reps {
		tt.Apply(seqs[i], reps[i])
	}
	f.Add(mustCompact(f, tt))
	f.Add(mustCompact(f, tally.NewTotals(e)))
	f.Add([]byte(`{"election":"2020-general","groups":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := tally.ReadTotalsCompact(e, json.NewDecoder(bytes.NewReader(b)))
		if err != nil {
			return // refusing is fine; panicking is not
		}
		again, err := tally.ReadTotalsCompact(e, json.NewDecoder(bytes.NewReader(mustCompact(t, got))))
		if err != nil {
			t.Fatalf("its own compact form refused: %v", err)
		}
		if g, w := mustJSON(t, again.State()), mustJSON(t, got.State()); !bytes.Equal(g, w) {
			t.Fatalf("written and read back:\n%s\nwant\n%s", g, w)
		}
		for i := range reps {
			got.Apply(got.LastSeq(reps[i].Region)+1, reps[i])
		}
		for _, c := range e.Contests {
			got.ContestResult(c.ID, nil)
		}
	})
}
