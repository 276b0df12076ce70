package tally_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

func TestChain(t *testing.T) {
	events := []struct {
		seq  uint64
		subj string
		data string
	}{
		{1, "tally.xa-1.results.p1.c", `{"a":1}`},
		{2, "tally.xa-1.results.p2.c", `{"a":2}`},
		{4, "tally.xa-1.results.p1.c", `{"a":3}`},
	}
	sum := func(mod func(i int, seq *uint64, subj, data *string) bool) string {
		c := tally.NewChain("xa-1")
		for i, ev := range events {
			seq, subj, data := ev.seq, ev.subj, ev.data
			if mod != nil && !mod(i, &seq, &subj, &data) {
				continue
			}
			c.Add(seq, subj, []byte(data))
		}
		return c.Hex()
	}
	base := sum(nil)
	if base != sum(nil) {
		t.Fatal("chain is not deterministic")
	}
	if tally.NewChain("xa-1").Hex() == tally.NewChain("xa-2").Hex() {
		t.Error("two regions start from the same sum")
	}
	changes := map[string]func(i int, seq *uint64, subj, data *string) bool{
		"altered": func(i int, _ *uint64, _, data *string) bool { *data += map[bool]string{true: " "}[i == 1]; return true },
		"dropped": func(i int, _ *uint64, _, _ *string) bool { return i != 1 },
		"resequenced": func(i int, seq *uint64, _, _ *string) bool {
			if i == 2 {
				*seq = 3
			}
			return true
		},
		"subject": func(i int, _ *uint64, subj, _ *string) bool {
			if i == 0 {
				*subj = "tally.xa-1.results.p9.c"
			}
			return true
		},
	}
	for name, mod := range changes {
		if sum(mod) == base {
			t.Errorf("%s event: chain sum unchanged", name)
		}
	}
	// Moving bytes between subject and data must change the sum.
	a, b := tally.NewChain("r"), tally.NewChain("r")
	a.Add(1, "ab", []byte("c"))
	b.Add(1, "a", []byte("bc"))
	if a.Hex() == b.Hex() {
		t.Error("subject/data boundary not hashed")
	}
	// JSON round trip, as in snapshots.
	c := tally.NewChain("xa-1")
	c.Add(7, "s", []byte("d"))
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back tally.Chain
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if back != c {
		t.Errorf("round trip: %+v, want %+v", back, c)
	}
	if err := json.Unmarshal([]byte(`{"sum":"zz","events":1,"seq":1}`), &back); err == nil {
		t.Error("bad sum accepted")
	}
}

func TestCheckpointCompare(t *testing.T) {
	e, _ := MustBuildSmall(t)
	p := e.Precinct("xa-north-1")
	tt := tally.NewTotals(e)
	c := tally.NewChain(p.Region)
	rep := &tally.Report{ID: "x1", Region: p.Region, Precinct: p.ID, Contest: "xa-president",
		Votes: map[tally.CandidateID]int64{"smith": 10, "jones": 5}, Complete: true}
	tt.Apply(1, rep)
	data, err := rep.Encode()
	if err != nil {
		t.Fatal(err)
	}
	c.Add(1, tally.ResultsSubject(p.Region, p.ID, "xa-president"), data)
	at := time.Date(2026, 11, 3, 20, 0, 0, 0, time.UTC)
	cp := tt.Checkpoint(p.Region, 1, c, at)
	if cp.Seq != 1 || cp.Events != 1 || len(cp.Contests) != 1 || cp.Contests[0].Votes["smith"] != 10 || cp.Contests[0].Complete != 1 {
		t.Fatalf("checkpoint = %+v", cp)
	}
	back, err := tally.DecodeCheckpoint(cp.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Compare(cp); err != nil {
		t.Fatalf("decoded checkpoint differs: %v", err)
	}
	mods := map[string]func(cp *tally.Checkpoint){
		"covers seq": func(cp *tally.Checkpoint) { cp.Seq = 2 },
		"events":     func(cp *tally.Checkpoint) { cp.Events = 0 },
		"hash":       func(cp *tally.Checkpoint) { cp.Hash = strings.Repeat("0", 64) },
		"candidate smith": func(cp *tally.Checkpoint) {
			cp.Contests[0].Votes = map[tally.CandidateID]int64{"smith": 11, "jones": 5}
		},
		"precincts complete":   func(cp *tally.Checkpoint) { cp.Contests[0].Complete = 0 },
		"contest xa-president": func(cp *tally.Checkpoint) { cp.Contests = nil },
	}
	for want, mod := range mods {
		other, _ := tally.DecodeCheckpoint(cp.Encode())
		mod(&other)
		err := other.Compare(cp)
		if err == nil || tally.ErrorCode(err) != tally.ECONFLICT || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "seq") {
			t.Errorf("%s changed: Compare = %v", want, err)
		}
	}
	for _, bad := range []string{`{`, `{"region":"a b","hash":"` + strings.Repeat("0", 64) + `"}`, `{"region":"r","hash":"00"}`,
		`{"region":"r","seq":1,"events":2,"hash":"` + strings.Repeat("0", 64) + `"}`} {
		if _, err := tally.DecodeCheckpoint([]byte(bad)); tally.ErrorCode(err) != tally.EINVALID {
			t.Errorf("DecodeCheckpoint(%s) = %v, want invalid", bad, err)
		}
	}
	if r, ok := tally.IsCheckpointSubject(tally.CheckpointSubject("xa-1")); !ok || r != "xa-1" {
		t.Errorf("IsCheckpointSubject = %q, %v", r, ok)
	}
	for _, s := range []string{"tally.xa-1.results.p.c", "tally..checkpoint", "x.xa-1.checkpoint", "tally.checkpoint"} {
		if _, ok := tally.IsCheckpointSubject(s); ok {
			t.Errorf("IsCheckpointSubject(%q) = true", s)
		}
	}
}

func TestContestResultCompleteReconciled(t *testing.T) {
	e, _ := MustBuildSmall(t)
	tt := tally.NewTotals(e)
	var seq uint64
	for _, pid := range e.ContestPrecincts("xb-president") {
		p := e.Precinct(pid)
		seq++
		tt.Apply(seq, &tally.Report{ID: tally.EventID("r" + string(pid)), Region: p.Region, Precinct: pid, Contest: "xb-president",
			Votes: map[tally.CandidateID]int64{"smith": 1}, Complete: true})
	}
	res := tt.ContestResult("xb-president", nil)
	if !res.Complete || res.Reconciled {
		t.Errorf("no statuses: complete %v reconciled %v, want true false", res.Complete, res.Reconciled)
	}
	st := map[tally.RegionID]tally.RegionStatus{}
	for _, r := range e.ContestRegions("xb-president") {
		st[r] = tally.RegionStatus{ID: r, Status: tally.StatusLive, Reconciled: true}
	}
	if res := tt.ContestResult("xb-president", st); !res.Complete || !res.Reconciled {
		t.Errorf("all reconciled: complete %v reconciled %v", res.Complete, res.Reconciled)
	}
	if res := tt.ContestResult("xa-president", st); res.Complete || res.Reconciled {
		t.Errorf("nothing reported: complete %v reconciled %v", res.Complete, res.Reconciled)
	}
}
