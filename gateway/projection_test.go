package gateway_test

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// mergedContest is a contest as the gateway serves it: the result with its
// projection and call.
type mergedContest struct {
	tally.ContestResult
	Projection *tally.Projection `json:"projection"`
	Call       *tally.Call       `json:"call"`
}

func testProjection(c tally.ContestID) tally.Projection {
	return tally.Projection{
		Contest: c, At: time.Date(2024, 11, 5, 21, 30, 0, 0, time.UTC),
		Candidates: []tally.CandidateEstimate{
			{ID: "alice", Share: 0.562, Votes: 5620, I90: tally.Interval{Lo: 0.54, Hi: 0.58}, I99: tally.Interval{Lo: 0.53, Hi: 0.59}},
			{ID: "bob", Share: 0.438, Votes: 4380, I90: tally.Interval{Lo: 0.42, Hi: 0.46}, I99: tally.Interval{Lo: 0.41, Hi: 0.47}},
		},
		Margin: tally.MarginEstimate{Leader: "alice", RunnerUp: "bob", Estimate: 0.124,
			I90: tally.Interval{Lo: 0.08, Hi: 0.16}, I99: tally.Interval{Lo: 0.06, Hi: 0.18}},
		ExpectedVotes: 10000, CountedVotes: 192, Outstanding: 9808, CountedShare: 0.0192,
		PrecinctsReporting: 1, PrecinctsTotal: 2, BaselineYear: 2020,
	}
}

func testCall(c tally.ContestID, winner tally.CandidateID) tally.Call {
	p := testProjection(c)
	return tally.Call{Contest: c, Status: tally.CallCalled, Winner: winner,
		At: time.Date(2024, 11, 5, 21, 43, 0, 0, time.UTC), By: "model", Basis: &p}
}

// getMerged waits until cond holds for contest id's response and returns
// the response.
func getMerged(t *testing.T, v *env, id tally.ContestID, what string, cond func(mergedContest) bool) (mergedContest, response) {
	t.Helper()
	var (
		got mergedContest
		res response
	)
	eventually(t, what, func() bool {
		res = get(t, v.base+"/api/v1/contests/"+string(id))
		if res.status != 200 {
			return false
		}
		got = mergedContest{}
		mustJSON(t, res.body, &got)
		return cond(got)
	})
	return got, res
}

// nextContest returns the next contest event of contest id, skipping others.
func (s *sseStream) nextContest(t *testing.T, id tally.ContestID) (sseEvent, mergedContest) {
	t.Helper()
	for {
		ev := s.next(t)
		if ev.name != "contest" {
			continue
		}
		var c mergedContest
		mustJSON(t, []byte(ev.data), &c)
		if c.ID == id {
			return ev, c
		}
	}
}

func TestProjectionAndCall(t *testing.T) {
	v := MustEnv(t, nil)
	url := v.base + "/api/v1/contests/pres-nm"
	first := get(t, url)
	if !bytes.HasSuffix(first.body, []byte(`,"projection":null,"call":null}`)) {
		t.Errorf("contest without projection = %s, want projection and call null", first.body)
	}
	list := get(t, v.base+"/api/v1/contests")
	s := MustStream(t, v.base, "")
	for range 6 {
		s.next(t) // the snapshot
	}

	// A projection: GET, the list and the stream show it, with a new ETag.
	prev := MustPut(t, v.kv, tally.ProjectionKey("pres-nm"), testProjection("pres-nm"))
	got, res := getMerged(t, v, "pres-nm", "projection in GET", func(c mergedContest) bool { return c.Projection != nil })
	p := got.Projection
	if p.Contest != "pres-nm" || len(p.Candidates) != 2 || p.Candidates[0].I90 != (tally.Interval{Lo: 0.54, Hi: 0.58}) ||
		p.Margin.Leader != "alice" || p.Outstanding != 9808 || got.Call != nil {
		t.Errorf("projection = %+v, call %+v", p, got.Call)
	}
	if got.Candidates[0].Votes != 112 || got.Precincts.Reporting != 1 {
		t.Errorf("the result is lost in the merge: %+v", got.ContestResult)
	}
	if res.header.Get("ETag") == first.header.Get("ETag") {
		t.Errorf("ETag unchanged by a projection")
	}
	if r := get(t, v.base+"/api/v1/contests", "If-None-Match", list.header.Get("ETag")); r.status != 200 || !bytes.Contains(r.body, []byte(`"margin":{"leader":"alice"`)) {
		t.Errorf("list after a projection = %d %s", r.status, r.body)
	}
	ev, c := s.nextContest(t, "pres-nm")
	if ev.id != strconv.FormatUint(prev, 10) || c.Projection == nil || c.Projection.Candidates[0].Share != 0.562 || c.Candidates[0].Votes != 112 {
		t.Errorf("projection event %s = %s, want the merged contest at %d", ev.id, ev.data, prev)
	}

	// A call.
	etag := res.header.Get("ETag")
	rev := MustPut(t, v.kv, tally.CallKey("pres-nm"), testCall("pres-nm", "alice"))
	got, res = getMerged(t, v, "pres-nm", "call in GET", func(c mergedContest) bool { return c.Call != nil })
	if got.Call.Winner != "alice" || got.Call.Status != tally.CallCalled || got.Call.By != "model" ||
		got.Call.Basis == nil || got.Projection == nil {
		t.Errorf("call = %+v, projection %+v", got.Call, got.Projection)
	}
	if r := get(t, url, "If-None-Match", etag); r.status != 200 {
		t.Errorf("conditional GET after a call = %d, want 200", r.status)
	}
	if r := get(t, url, "If-None-Match", res.header.Get("ETag")); r.status != 304 {
		t.Errorf("conditional GET with the new ETag = %d, want 304", r.status)
	}
	ev, c = s.nextContest(t, "pres-nm")
	if ev.id != strconv.FormatUint(rev, 10) || c.Call == nil || c.Call.Winner != "alice" || c.Projection == nil {
		t.Errorf("call event %s = %s, want the merged contest at %d", ev.id, ev.data, rev)
	}

	// New results keep the projection and call.
	rep := report(v.e, "b1", "p2", "pres-nm", map[tally.CandidateID]int64{"alice": 10, "bob": 5})
	v.t.Apply(1, rep)
	rev = MustPut(t, v.kv, tally.ContestKey("pres-nm"), v.t.ContestResult("pres-nm", nil))
	ev, c = s.nextContest(t, "pres-nm")
	if ev.id != strconv.FormatUint(rev, 10) || c.Precincts.Reporting != 2 || c.Projection == nil || c.Call == nil {
		t.Errorf("result event = %s, want 2 reporting with projection and call", ev.data)
	}

	// A retraction replaces the call; a deleted projection is null again.
	retract := tally.Call{Contest: "pres-nm", Status: tally.CallRetracted, At: time.Date(2024, 11, 5, 21, 50, 0, 0, time.UTC),
		By: "admin", Reason: "counting error"}
	MustPut(t, v.kv, tally.CallKey("pres-nm"), retract)
	if err := v.kv.Delete(context.Background(), tally.ProjectionKey("pres-nm")); err != nil {
		t.Fatal(err)
	}
	got, _ = getMerged(t, v, "pres-nm", "retraction, no projection", func(c mergedContest) bool {
		return c.Projection == nil && c.Call != nil && c.Call.Status == tally.CallRetracted
	})
	if got.Call.Winner != "" || got.Call.Reason != "counting error" {
		t.Errorf("retraction = %+v", got.Call)
	}

	// National views have no projection unless their key exists.
	if nat, _ := getMerged(t, v, "all-president", "national view", func(mergedContest) bool { return true }); nat.Projection != nil || nat.Call != nil {
		t.Errorf("all-president projection %+v call %+v, want none", nat.Projection, nat.Call)
	}
	MustPut(t, v.kv, tally.ProjectionKey("all-president"), testProjection("all-president"))
	getMerged(t, v, "all-president", "national projection", func(c mergedContest) bool { return c.Projection != nil })

	// A projection of a contest without results waits for its result.
	if err := v.kv.Delete(context.Background(), tally.ContestKey("gov-nm")); err != nil {
		t.Fatal(err)
	}
	for {
		if ev := s.next(t); ev.name == "contest-removed" && bytes.Contains([]byte(ev.data), []byte(`"gov-nm"`)) {
			break
		}
	}
	gp := testProjection("gov-nm")
	gp.Candidates[0].ID, gp.Candidates[1].ID, gp.Margin.Leader, gp.Margin.RunnerUp = "carol", "dan", "carol", "dan"
	MustPut(t, v.kv, tally.ProjectionKey("gov-nm"), gp)
	// The stream announces a change before the cached view is rebuilt.
	eventually(t, "contest with a projection but no result: 404", func() bool {
		return get(t, v.base+"/api/v1/contests/gov-nm").status == 404
	})
	rev = MustPut(t, v.kv, tally.ContestKey("gov-nm"), v.t.ContestResult("gov-nm", nil))
	ev, c = s.nextContest(t, "gov-nm")
	if ev.id != strconv.FormatUint(rev, 10) || c.Projection == nil || c.Projection.Margin.Leader != "carol" {
		t.Errorf("gov-nm event %s = %s, want its result with the earlier projection", ev.id, ev.data)
	}

	// A new viewer's snapshot holds one event per contest, merged.
	snap := MustStream(t, v.base, "")
	names := map[string]int{}
	for range 6 {
		ev := snap.next(t)
		if ev.name == "contest" {
			var c mergedContest
			mustJSON(t, []byte(ev.data), &c)
			names[string(c.ID)]++
			if c.ID == "pres-nm" && (c.Call == nil || c.Call.Status != tally.CallRetracted) {
				t.Errorf("snapshot pres-nm = %s", ev.data)
			}
		}
	}
	for _, id := range []string{"pres-nm", "gov-nm", "pres-az", "all-president", "all-governor"} {
		if names[id] != 1 {
			t.Errorf("snapshot has %d events of %s, want 1 (%v)", names[id], id, names)
		}
	}
}

func TestProjectionBadValue(t *testing.T) {
	v := MustEnv(t, nil)
	s := MustStream(t, v.base, "")
	for range 6 {
		s.next(t)
	}
	if _, err := v.kv.Put(context.Background(), tally.ProjectionKey("pres-nm"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.kv.Put(context.Background(), tally.CallKey("pres-nm"), []byte(`{"contest":"pres-nm","status":"maybe"}`)); err != nil {
		t.Fatal(err)
	}
	rev := MustPut(t, v.kv, tally.ProjectionKey("pres-az"), testProjection("pres-az"))
	// The bad values are skipped: the next event is the good one.
	if ev := s.next(t); ev.id != strconv.FormatUint(rev, 10) {
		t.Errorf("event = %+v, want pres-az's projection at %d", ev, rev)
	}
	if got, _ := getMerged(t, v, "pres-nm", "pres-nm", func(mergedContest) bool { return true }); got.Projection != nil || got.Call != nil {
		t.Errorf("bad values shown: %+v %+v", got.Projection, got.Call)
	}
}
