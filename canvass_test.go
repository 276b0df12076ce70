package tally_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// canvassElection: regions ra (county North: p1, p2) and rb (South: p3,
// p4); registered voters known for p1, p2 and p4.
const canvassElection = `{
  "id": "x-2020", "name": "Testland General 2020", "date": "2020-11-03",
  "regions": [{"id": "ra", "name": "Region A"}, {"id": "rb", "name": "Region B"}],
  "contests": [{"id": "gov", "name": "Governor", "office": "Governor", "candidates": [
    {"id": "ann", "name": "Ann Alder", "party": "Oak"}, {"id": "bob", "name": "Bob Birch", "party": "Elm"}]}],
  "precincts": [
    {"id": "p1", "name": "One", "county": "North", "region": "ra", "registered": 1000, "contests": ["gov"]},
    {"id": "p2", "name": "Two", "county": "North", "region": "ra", "registered": 800, "contests": ["gov"]},
    {"id": "p3", "name": "Three", "county": "South", "region": "rb", "contests": ["gov"]},
    {"id": "p4", "name": "Four", "county": "South", "region": "rb", "registered": 500, "contests": ["gov"]}
  ]}`

var t0 = time.Date(2020, 11, 3, 20, 0, 0, 0, time.UTC)

// regionStream builds a region's stream as a region node would: each event
// stored at the next sequence, and checkpoints of its own totals and chain.
type regionStream struct {
	tb     testing.TB
	e      *tally.Election
	r      tally.RegionID
	totals *tally.Totals
	chain  tally.Chain
	key    map[tally.PrecinctID]signingKey
	events []tally.StoredEvent
}

type signingKey struct {
	office string
	seed   string
}

func newRegionStream(tb testing.TB, e *tally.Election, r tally.RegionID) *regionStream {
	return &regionStream{tb: tb, e: e, r: r, totals: tally.NewTotals(e), chain: tally.NewChain(r), key: map[tally.PrecinctID]signingKey{}}
}

func (s *regionStream) next() uint64 { return uint64(len(s.events)) + 1 }

// report signs (when the precinct has a key), stores and applies rep.
func (s *regionStream) report(rep *tally.Report, stored time.Time) uint64 {
	s.tb.Helper()
	rep.Region = s.r
	if rep.ReportedAt.IsZero() {
		rep.ReportedAt = stored
	}
	if err := rep.AssignID(); err != nil {
		s.tb.Fatal(err)
	}
	if k, ok := s.key[rep.Precinct]; ok {
		priv, err := tally.ParseSeed(k.seed)
		if err != nil {
			s.tb.Fatal(err)
		}
		if err := rep.Sign(k.office, priv); err != nil {
			s.tb.Fatal(err)
		}
	}
	if err := rep.Validate(s.e); err != nil {
		s.tb.Fatal(err)
	}
	data, err := rep.Encode()
	if err != nil {
		s.tb.Fatal(err)
	}
	seq := s.next()
	subj := tally.ResultsSubject(s.r, rep.Precinct, rep.Contest)
	s.events = append(s.events, tally.StoredEvent{Region: s.r, Stream: tally.MirrorStream(s.r), Seq: seq, Subject: subj, Stored: stored, Data: data})
	s.chain.Add(seq, subj, data)
	s.totals.Apply(seq, rep)
	return seq
}

func (s *regionStream) checkpoint(stored time.Time) {
	seq := s.next()
	cp := s.totals.Checkpoint(s.r, seq-1, s.chain, stored)
	s.events = append(s.events, tally.StoredEvent{Region: s.r, Stream: tally.MirrorStream(s.r), Seq: seq, Subject: tally.CheckpointSubject(s.r), Stored: stored, Data: cp.Encode()})
	s.totals.Advance(s.r, seq)
}

// canvassFixture is a small election night: ra reports p1 (by vote type,
// with ballots cast), p2, then corrects p1; rb, offline from t0+5s to
// t0+25s, reports p3 (no ballots cast) and p4 meanwhile. Every report is
// signed by its county's office.
type canvassFixture struct {
	e       *tally.Election
	ra, rb  *regionStream
	offices map[tally.RegionID]*tally.Offices
	audit   []tally.StoredEvent
	calls   []tally.StoredEvent
}

func newCanvassFixture(tb testing.TB) *canvassFixture {
	tb.Helper()
	e, err := tally.LoadElection(strings.NewReader(canvassElection))
	if err != nil {
		tb.Fatal(err)
	}
	f := &canvassFixture{e: e, ra: newRegionStream(tb, e, "ra"), rb: newRegionStream(tb, e, "rb"), offices: map[tally.RegionID]*tally.Offices{}}
	for _, s := range []*regionStream{f.ra, f.rb} {
		seed, pub := tally.NewOfficeKey()
		id := string(s.r) + "-office"
		offs, err := tally.NewOffices(e, s.r, []tally.Office{{ID: id, PublicKey: pub, Precincts: e.RegionPrecincts(s.r)}})
		if err != nil {
			tb.Fatal(err)
		}
		f.offices[s.r] = offs
		for _, p := range e.RegionPrecincts(s.r) {
			s.key[p] = signingKey{office: id, seed: seed}
		}
	}
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	p1 := &tally.Report{Precinct: "p1", Contest: "gov", Votes: map[tally.CandidateID]int64{"ann": 100, "bob": 50},
		VoteTypes: map[tally.VoteType]map[tally.CandidateID]int64{
			tally.VoteElectionDay: {"ann": 60, "bob": 30}, tally.VoteAbsentee: {"ann": 40, "bob": 20}},
		BallotsCast: i64(160)}
	s1 := f.ra.report(p1, at(1))
	f.ra.report(&tally.Report{Precinct: "p2", Contest: "gov", Votes: map[tally.CandidateID]int64{"ann": 10, "bob": 20}, BallotsCast: i64(31), Complete: true}, at(2))
	f.ra.checkpoint(at(3))
	f.ra.report(&tally.Report{Precinct: "p1", Contest: "gov", Votes: map[tally.CandidateID]int64{"ann": 90, "bob": 55},
		VoteTypes: map[tally.VoteType]map[tally.CandidateID]int64{
			tally.VoteElectionDay: {"ann": 55, "bob": 35}, tally.VoteAbsentee: {"ann": 35, "bob": 20}},
		BallotsCast: i64(150), Complete: true,
		Correction: &tally.Correction{Supersedes: p1.ID, SupersedesSeq: s1, Reason: "transposed digits"}}, at(4))
	f.ra.checkpoint(at(5))
	f.rb.report(&tally.Report{Precinct: "p3", Contest: "gov", Votes: map[tally.CandidateID]int64{"ann": 5, "bob": 7}, Complete: true}, at(10))
	f.rb.report(&tally.Report{Precinct: "p4", Contest: "gov", Votes: map[tally.CandidateID]int64{"ann": 200, "bob": 100}, BallotsCast: i64(310), Complete: true}, at(20))
	f.rb.checkpoint(at(21))

	audit := func(subject string, v any) {
		b, _ := json.Marshal(v)
		f.audit = append(f.audit, tally.StoredEvent{Stream: tally.AuditStream, Seq: uint64(len(f.audit) + 1), Subject: subject, Stored: at(30), Data: b})
	}
	audit(tally.AuditStatusSubject("ra"), tally.StatusEvent{Region: "ra", Status: tally.StatusLive, Was: tally.StatusOffline, At: t0.Add(500 * time.Millisecond)})
	audit(tally.AuditStatusSubject("rb"), tally.StatusEvent{Region: "rb", Status: tally.StatusLive, Was: tally.StatusOffline, At: t0.Add(500 * time.Millisecond)})
	audit(tally.AuditStatusSubject("rb"), tally.StatusEvent{Region: "rb", Status: tally.StatusOffline, Was: tally.StatusLive, At: at(5)})
	audit(tally.AuditStatusSubject("rb"), tally.StatusEvent{Region: "rb", Status: tally.StatusLagging, Was: tally.StatusOffline, At: at(25)})
	audit(tally.AuditStatusSubject("rb"), tally.StatusEvent{Region: "rb", Status: tally.StatusLive, Was: tally.StatusLagging, At: at(26)})
	for _, s := range []*regionStream{f.ra, f.rb} {
		for _, ev := range s.events {
			if _, ok := tally.IsCheckpointSubject(ev.Subject); ok {
				cp, _ := tally.DecodeCheckpoint(ev.Data)
				audit(tally.AuditCheckpointSubject(s.r), tally.CheckpointEvent{Region: s.r, StreamSeq: ev.Seq, Seq: cp.Seq, Events: cp.Events, Hash: cp.Hash, At: cp.At, Matched: true, Compared: at(27)})
			}
		}
	}
	call := tally.Call{Contest: "gov", Status: tally.CallCalled, Winner: "ann", At: at(28), By: "model", Reason: "interval excludes every other winner",
		Basis: &tally.Projection{Contest: "gov", CountedShare: 0.97, PrecinctsReporting: 4, PrecinctsTotal: 4, BaselineYear: 2016,
			Margin: tally.MarginEstimate{Leader: "ann", RunnerUp: "bob", Estimate: 0.25, I99: tally.Interval{Lo: 0.2, Hi: 0.3}}}}
	b, _ := json.Marshal(call)
	f.calls = append(f.calls, tally.StoredEvent{Stream: tally.CallsStream, Seq: 1, Subject: tally.CallSubject("gov"), Stored: at(28), Data: b})
	return f
}

func (f *canvassFixture) events() []tally.StoredEvent {
	return append(append([]tally.StoredEvent{}, f.ra.events...), f.rb.events...)
}

func (f *canvassFixture) lastSeq() map[tally.RegionID]uint64 {
	return map[tally.RegionID]uint64{"ra": uint64(len(f.ra.events)), "rb": uint64(len(f.rb.events))}
}

func TestVerifyClean(t *testing.T) {
	f := newCanvassFixture(t)
	v := tally.Verify(f.e, f.events(), tally.VerifyOptions{Offices: f.offices, RequireSignatures: true, LastSeq: f.lastSeq()})
	if !v.OK() {
		t.Fatalf("discrepancies in a clean stream: %v", v.Discrepancies)
	}
	for _, s := range []*regionStream{f.ra, f.rb} {
		rc := v.Region(s.r)
		if rc.Chain.Hex() != s.chain.Hex() || rc.Chain.Events != s.chain.Events {
			t.Errorf("region %s chain %s over %d, want %s over %d", s.r, rc.Chain.Hex(), rc.Chain.Events, s.chain.Hex(), s.chain.Events)
		}
		if !rc.Reconciled || rc.Matched != rc.Checkpoints || rc.SignaturesChecked != int(rc.Reports) {
			t.Errorf("region %s: %+v; want reconciled, every checkpoint matched and every signature checked", s.r, rc)
		}
	}
	got := v.Totals().Contest("gov").Votes
	if got["ann"] != 305 || got["bob"] != 182 {
		t.Errorf("gov = %v, want ann 305 bob 182", got)
	}
}

// TestVerifyDiscrepancies alters, drops and moves stored events and checks
// that the first discrepancy names what was done.
func TestVerifyDiscrepancies(t *testing.T) {
	f := newCanvassFixture(t)
	alter := func(evs []tally.StoredEvent) []tally.StoredEvent {
		evs[1].Data = bytes.Replace(evs[1].Data, []byte(`"ann":10`), []byte(`"ann":11`), 1)
		return evs
	}
	tests := []struct {
		name    string
		offices bool
		require bool
		change  func([]tally.StoredEvent) []tally.StoredEvent
		want    tally.Discrepancy
	}{
		{"AlteredSigned", true, false, alter,
			tally.Discrepancy{Kind: tally.DiscSignature, Region: "ra", Seq: 2, Precinct: "p2", Contest: "gov"}},
		{"AlteredNoKeys", false, false, alter,
			tally.Discrepancy{Kind: tally.DiscCheckpoint, Region: "ra", Seq: 3, Contest: "gov", Candidate: "ann"}},
		{"Dropped", false, false, func(evs []tally.StoredEvent) []tally.StoredEvent { return append(evs[:1:1], evs[2:]...) },
			tally.Discrepancy{Kind: tally.DiscSequence, Region: "ra", Seq: 2}},
		{"DroppedLast", false, false, func(evs []tally.StoredEvent) []tally.StoredEvent { return evs[:len(evs)-1] },
			tally.Discrepancy{Kind: tally.DiscSequence, Region: "rb", Seq: 3}},
		{"Reordered", false, false, func(evs []tally.StoredEvent) []tally.StoredEvent {
			n := len(evs)
			evs[n-3], evs[n-2] = evs[n-2], evs[n-3]
			return evs
		}, tally.Discrepancy{Kind: tally.DiscSequence, Region: "rb", Seq: 1}},
		{"Resequenced", false, false, func(evs []tally.StoredEvent) []tally.StoredEvent {
			// Moved with their sequence numbers swapped too: only the chain sees it.
			n := len(evs)
			evs[n-3].Data, evs[n-2].Data = evs[n-2].Data, evs[n-3].Data
			evs[n-3].Subject, evs[n-2].Subject = evs[n-2].Subject, evs[n-3].Subject
			return evs
		}, tally.Discrepancy{Kind: tally.DiscCheckpoint, Region: "rb", Seq: 3}},
		{"UnsignedRequired", true, true, func(evs []tally.StoredEvent) []tally.StoredEvent {
			rep, _ := tally.DecodeReport(evs[0].Data)
			rep.Signature = ""
			evs[0].Data, _ = rep.Encode()
			return evs
		}, tally.Discrepancy{Kind: tally.DiscSignature, Region: "ra", Seq: 1, Precinct: "p1", Contest: "gov"}},
		{"NotAReport", false, false, func(evs []tally.StoredEvent) []tally.StoredEvent {
			evs[1].Data = []byte(`{"id":"ra-x"}`)
			return evs
		}, tally.Discrepancy{Kind: tally.DiscEvent, Region: "ra", Seq: 2, Precinct: "p2", Contest: "gov"}},
		{"StaleCorrection", false, false, func(evs []tally.StoredEvent) []tally.StoredEvent {
			rep, _ := tally.DecodeReport(evs[3].Data)
			rep.Correction.SupersedesSeq = 2
			evs[3].Data, _ = rep.Encode()
			return evs
		}, tally.Discrepancy{Kind: tally.DiscCorrection, Region: "ra", Seq: 4, Precinct: "p1", Contest: "gov"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tally.VerifyOptions{LastSeq: f.lastSeq(), RequireSignatures: tt.require}
			if tt.offices {
				opts.Offices = f.offices
			}
			v := tally.Verify(f.e, tt.change(f.events()), opts)
			d := v.First()
			if d == nil {
				t.Fatal("no discrepancy")
			}
			got := *d
			got.Message, got.Event = "", ""
			if got != tt.want {
				t.Errorf("first discrepancy = %+v (%s), want %+v", got, d, tt.want)
			}
			if !strings.Contains(d.String(), "region "+string(tt.want.Region)) {
				t.Errorf("%q does not name the region", d)
			}
			t.Log(d)
		})
	}
}

func TestVerifyCompareResults(t *testing.T) {
	f := newCanvassFixture(t)
	v := tally.Verify(f.e, f.events(), tally.VerifyOptions{})
	results := map[tally.ContestID]tally.ContestResult{"gov": v.Totals().ContestResult("gov", nil)}
	results[tally.NationalContestID("Governor")] = tally.NationalResult("Governor", []tally.ContestResult{results["gov"]})
	statuses := []tally.RegionStatus{{ID: "ra", Applied: 5}, {ID: "rb", Applied: 2}} // rb's checkpoint at 3 not counted yet: fine
	if v.CompareResults(results, statuses) {
		t.Fatalf("the same results differ: %v", v.Discrepancies)
	}

	v = tally.Verify(f.e, f.events(), tally.VerifyOptions{})
	r := results["gov"]
	r.Candidates = append([]tally.CandidateResult(nil), r.Candidates...)
	r.Candidates[1].Votes++ // bob
	results["gov"] = r
	if !v.CompareResults(results, statuses) {
		t.Fatal("altered totals pass")
	}
	if d := v.First(); d.Contest != "gov" || d.Candidate != "bob" || d.Kind != tally.DiscTotals {
		t.Errorf("first discrepancy %s, want contest gov candidate bob", d)
	}

	v = tally.Verify(f.e, f.events(), tally.VerifyOptions{})
	statuses[1].Applied = 1 // seq 2 is an event; 3 only a checkpoint, which a status may not count yet
	v.CompareResults(results, statuses)
	if d := v.First(); d == nil || d.Region != "rb" || d.Kind != tally.DiscState {
		t.Errorf("first discrepancy %v, want region rb behind", d)
	}
}

func mustCanvass(t *testing.T, f *canvassFixture, contest tally.ContestID) *tally.Canvass {
	t.Helper()
	c, err := tally.BuildCanvass(tally.CanvassInput{
		Election: f.e, Contest: contest, Events: f.events(), Audit: f.audit, Calls: f.calls,
		Verify:    tally.VerifyOptions{Offices: f.offices, LastSeq: f.lastSeq()},
		Generated: t0.Add(time.Hour), Source: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestBuildCanvass(t *testing.T) {
	f := newCanvassFixture(t)
	c := mustCanvass(t, f, "")
	if c.Status != tally.CanvassComplete || len(c.Discrepancies) != 0 {
		t.Fatalf("status %s (%s), discrepancies %v; want complete", c.Status, c.StatusNote, c.Discrepancies)
	}
	con := c.Contests[0]
	if con.Candidates[0].ID != "ann" || con.Candidates[0].Votes != 305 || con.Candidates[1].Votes != 182 || con.TotalVotes != 487 {
		t.Errorf("candidates %+v total %d", con.Candidates, con.TotalVotes)
	}
	if got := con.Candidates[0].ByType; got[tally.VoteElectionDay] != 55 || got[tally.VoteAbsentee] != 35 {
		t.Errorf("ann by type %v, want election-day 55 absentee 35", got)
	}
	if len(con.VoteTypes) != 2 || con.VoteTypes[0] != tally.VoteElectionDay || con.VoteTypes[1] != tally.VoteAbsentee {
		t.Errorf("vote types %v", con.VoteTypes)
	}
	// Ballots: p1 150, p2 31, p4 310; p3 gave none. Registered: p1, p2, p4.
	if con.BallotsCast == nil || *con.BallotsCast != 491 || con.BallotsReported != 3 || con.Registered != 2300 || con.RegisteredKnown != 3 {
		t.Errorf("participation %+v", con.Participation)
	}
	if con.Turnout == nil || *con.Turnout != 491.0/2300 || con.TurnoutPrecincts != 3 || !strings.Contains(con.TurnoutNote, "3 of 4 precincts") {
		t.Errorf("turnout %v over %d: %q", con.Turnout, con.TurnoutPrecincts, con.TurnoutNote)
	}
	if rb := con.Regions[1]; rb.ID != "rb" || rb.Votes["ann"] != 205 || rb.Precincts.Complete != 2 || rb.BallotsCast == nil || *rb.BallotsCast != 310 {
		t.Errorf("region rb %+v", rb)
	}
	if len(con.Counties) != 2 || con.Counties[0].ID != "North" || con.Counties[0].Votes["bob"] != 75 {
		t.Errorf("counties %+v", con.Counties)
	}
	if p3 := con.PrecinctResults[2]; p3.ID != "p3" || p3.BallotsCast != nil || p3.Votes["bob"] != 7 {
		t.Errorf("p3 %+v", p3)
	}
	if len(c.Corrections) != 1 {
		t.Fatalf("corrections %+v", c.Corrections)
	}
	cr := c.Corrections[0]
	want := []tally.VoteChange{{Candidate: "ann", Before: 100, After: 90, Change: -10}, {Candidate: "bob", Before: 50, After: 55, Change: 5}}
	if cr.Region != "ra" || cr.Seq != 4 || cr.SupersedesSeq != 1 || cr.ReplacedSeq != 1 || cr.Office != "ra-office" || cr.Reason != "transposed digits" ||
		len(cr.Changes) != 2 || cr.Changes[0] != want[0] || cr.Changes[1] != want[1] {
		t.Errorf("correction %+v, want changes %+v", cr, want)
	}
	if len(c.Outages) != 1 {
		t.Fatalf("outages %+v, want rb's", c.Outages)
	}
	if o := c.Outages[0]; o.Region != "rb" || !o.From.Equal(t0.Add(5*time.Second)) || !o.To.Equal(t0.Add(25*time.Second)) || o.Late != 2 || o.FirstLateSeq != 1 || o.LastLateSeq != 2 {
		t.Errorf("outage %+v, want rb from t0+5s to t0+25s with seq 1-2 late", o)
	}
	for i, r := range c.Regions {
		s := []*regionStream{f.ra, f.rb}[i]
		if r.Hash != s.chain.Hex() || !r.Reconciled || r.HubCompared != r.Checkpoints || r.HubMatched != r.Checkpoints || r.Status != tally.StatusLive {
			t.Errorf("region %+v", r)
		}
	}
	if len(c.Calls) != 1 || c.Calls[0].WinnerName != "Ann Alder" || c.Calls[0].Basis == nil {
		t.Errorf("calls %+v", c.Calls)
	}
	st, err := c.CDFStatus(true)
	if err != nil || st != tally.CDFCertified {
		t.Errorf("CDFStatus(certify) = %v, %v", st, err)
	}
}

func TestCanvassPartial(t *testing.T) {
	f := newCanvassFixture(t)
	f.rb.events = f.rb.events[:2] // rb's checkpoint not stored yet
	c := mustCanvass(t, f, "gov")
	if c.Status != tally.CanvassPartial || !strings.Contains(c.StatusNote, "region rb is not reconciled") {
		t.Errorf("status %s: %s", c.Status, c.StatusNote)
	}
	if _, err := c.CDFStatus(true); tally.ErrorCode(err) != tally.EINVALID {
		t.Errorf("certifying a partial count: %v, want EINVALID", err)
	}
	if st, _ := c.CDFStatus(false); st != tally.CDFUnofficialPartial {
		t.Errorf("CDF status %s", st)
	}
	if _, err := tally.BuildCanvass(tally.CanvassInput{Election: f.e, Contest: "nope"}); tally.ErrorCode(err) != tally.EINVALID {
		t.Errorf("unknown contest: %v", err)
	}
}

func TestCompareCanvass(t *testing.T) {
	f := newCanvassFixture(t)
	b, err := json.Marshal(mustCanvass(t, f, ""))
	if err != nil {
		t.Fatal(err)
	}
	read := func() *tally.Canvass {
		var c tally.Canvass
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		return &c
	}
	v := tally.Verify(f.e, f.events(), tally.VerifyOptions{})
	if v.CompareCanvass(read()) {
		t.Fatalf("the report differs from its own events: %v", v.Discrepancies)
	}
	c := read()
	c.Contests[0].PrecinctResults[3].Votes["bob"]--
	v = tally.Verify(f.e, f.events(), tally.VerifyOptions{})
	v.CompareCanvass(c)
	if d := v.First(); d == nil || d.Precinct != "p4" || d.Candidate != "bob" || d.Region != "rb" {
		t.Errorf("first discrepancy %v, want precinct p4 candidate bob", d)
	}
	c = read()
	c.Regions[0].Hash = strings.Repeat("0", 64)
	v = tally.Verify(f.e, f.events(), tally.VerifyOptions{})
	v.CompareCanvass(c)
	if d := v.First(); d == nil || d.Kind != tally.DiscChain || d.Region != "ra" {
		t.Errorf("first discrepancy %v, want region ra's chain", d)
	}
}

func TestCanvassCSV(t *testing.T) {
	c := mustCanvass(t, newCanvassFixture(t), "")
	var buf bytes.Buffer
	if err := c.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	r := csv.NewReader(&buf)
	r.FieldsPerRecord = -1
	rows := map[string][][]string{}
	headers := map[string][]string{}
	var last []string
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec[0] == "section" {
			last = rec
			continue
		}
		if headers[rec[0]] == nil {
			headers[rec[0]] = last
		}
		if len(rec) != len(headers[rec[0]]) {
			t.Errorf("%s row %v has %d cells, its header %d", rec[0], rec, len(rec), len(headers[rec[0]]))
		}
		rows[rec[0]] = append(rows[rec[0]], rec)
	}
	find := func(section string, match ...string) []string {
		for _, row := range rows[section] {
			ok := true
			for i := 0; i+1 < len(match); i += 2 {
				col := -1
				for j, h := range headers[section] {
					if h == match[i] {
						col = j
					}
				}
				if col < 0 || row[col] != match[i+1] {
					ok = false
				}
			}
			if ok {
				return row
			}
		}
		t.Errorf("no %s row with %v", section, match)
		return nil
	}
	if row := find(tally.CSVResults, "level", "contest", "candidate", "ann", "vote_type", "total"); row != nil && row[9] != "305" {
		t.Errorf("ann's total row %v", row)
	}
	find(tally.CSVResults, "level", "precinct", "unit", "p1", "candidate", "bob", "vote_type", "absentee", "votes", "20")
	find(tally.CSVUnits, "level", "contest", "ballots_cast", "491", "registered", "2300", "turnout", "0.2135")
	find(tally.CSVUnits, "level", "precinct", "unit", "p3", "ballots_cast", "", "registered", "", "turnout", "")
	find(tally.CSVCorrections, "precinct", "p1", "candidate", "ann", "before", "100", "after", "90", "change", "-10", "reason", "transposed digits", "supersedes_seq", "1")
	find(tally.CSVOutages, "region", "rb", "late_events", "2", "seconds", "20.0")
	find(tally.CSVReconciliation, "region", "ra", "reconciled", "true", "checkpoints_matched", "2")
	find(tally.CSVCalls, "contest", "gov", "winner", "ann", "margin", "0.2500")
	find(tally.CSVReport, "status", tally.CanvassComplete)
}

func TestCanvassHTML(t *testing.T) {
	f := newCanvassFixture(t)
	c := mustCanvass(t, f, "")
	var buf bytes.Buffer
	if err := c.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	for _, want := range []string{
		"<title>Canvass report — Testland General 2020</title>",
		`data-status="unofficial-complete"`,
		"@media print", "thead { display: table-header-group; }",
		`data-candidate="ann" data-votes="305"`,
		"21.35%",                       // turnout 491 / 2300
		"transposed digits", "ann −10", // a correction and its change
		`data-region="rb" data-late="2"`, // the outage
		`data-hash="` + f.rb.chain.Hex() + `"`,
		"Ann Alder", "margin 25.00%",
		"No precinct reported its votes by vote type.", // never: gov has vote types
	} {
		if want == "No precinct reported its votes by vote type." {
			if strings.Contains(html, want) {
				t.Errorf("HTML says %q", want)
			}
			continue
		}
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Contains(html, "<script") {
		t.Error("HTML has a script")
	}
}

// TestCanvassOutageFromHubStart: a region first heard from after the others
// was out from the hub's start, and a region never heard from is still out;
// regions first heard from together were starting up with the hub.
func TestCanvassOutageFromHubStart(t *testing.T) {
	f := newCanvassFixture(t)
	var audit []tally.StoredEvent
	for _, ev := range f.audit {
		if !strings.HasPrefix(ev.Subject, "tally.audit.status.") {
			audit = append(audit, ev)
		}
	}
	status := func(se tally.StatusEvent) tally.StoredEvent {
		b, _ := json.Marshal(se)
		return tally.StoredEvent{Stream: tally.AuditStream, Subject: tally.AuditStatusSubject(se.Region), Data: b}
	}
	build := func(audit []tally.StoredEvent) []tally.CanvassOutage {
		t.Helper()
		c, err := tally.BuildCanvass(tally.CanvassInput{Election: f.e, Events: f.events(), Audit: audit, Generated: t0.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return c.Outages
	}
	// ra heard from at t0+0.5s; rb only at t0+15s: its p3 report (t0+10s) was late.
	got := build(append(audit,
		status(tally.StatusEvent{Region: "ra", Status: tally.StatusLive, Was: tally.StatusOffline, At: t0.Add(500 * time.Millisecond)}),
		status(tally.StatusEvent{Region: "rb", Status: tally.StatusLive, Was: tally.StatusOffline, At: t0.Add(15 * time.Second)})))
	if len(got) != 1 || got[0].Region != "rb" || !got[0].FromHubStart || got[0].Late != 1 || got[0].LastLateSeq != 1 || !got[0].To.Equal(t0.Add(15*time.Second)) {
		t.Errorf("outages %+v, want rb's from the hub's start to t0+15s, seq 1 late", got)
	}
	// Both heard from at the same check: no outage.
	got = build(append(audit,
		status(tally.StatusEvent{Region: "ra", Status: tally.StatusLive, Was: tally.StatusOffline, At: t0.Add(30 * time.Second)}),
		status(tally.StatusEvent{Region: "rb", Status: tally.StatusLive, Was: tally.StatusOffline, At: t0.Add(30 * time.Second)})))
	if len(got) != 0 {
		t.Errorf("outages %+v, want none", got)
	}
	// rb never heard from.
	got = build(append(audit, status(tally.StatusEvent{Region: "ra", Status: tally.StatusLive, Was: tally.StatusOffline, At: t0})))
	if len(got) != 1 || got[0].Region != "rb" || !got[0].Ongoing || got[0].Late != 2 {
		t.Errorf("outages %+v, want rb's, ongoing, with its 2 events", got)
	}
}
