package projector_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/projector"
)

// mustOpenService opens a projector over nc and closes it at cleanup.
func mustOpenService(tb testing.TB, s *synth, nc *nats.Conn, manual bool) *projector.Service {
	tb.Helper()
	svc, err := projector.New(projector.Config{Election: s.E, Baselines: *s.Baseline, Interval: 50 * time.Millisecond,
		AllowManual: manual, Logger: zerolog.New(zerolog.NewTestWriter(tb))}, nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := svc.Open(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := svc.Close(); err != nil {
			tb.Error(err)
		}
	})
	return svc
}

// standInMirror creates the stream the reconciler would mirror region r1
// into, with subjects of its own so the test can publish to it, and the
// national bucket.
func standInMirror(tb testing.TB, js jetstream.JetStream) jetstream.KeyValue {
	tb.Helper()
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: tally.MirrorStream("r1"), Subjects: []string{tally.ResultsSubjects("r1")}}); err != nil {
		tb.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: tally.NationalBucket})
	if err != nil {
		tb.Fatal(err)
	}
	return kv
}

func publishReports(tb testing.TB, js jetstream.JetStream, s *synth) {
	tb.Helper()
	for _, p := range s.E.Precincts {
		rep := &tally.Report{Region: p.Region, Precinct: p.ID, Contest: s.Contest, Votes: s.Counts[p.ID][s.Contest],
			Complete: true, ReportedAt: time.Now().UTC()}
		if err := rep.AssignID(); err != nil {
			tb.Fatal(err)
		}
		b, err := rep.Encode()
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := js.Publish(context.Background(), tally.ResultsSubject(p.Region, p.ID, s.Contest), b); err != nil {
			tb.Fatal(err)
		}
	}
	// Not a report: skipped.
	if _, err := js.Publish(context.Background(), tally.ResultsSubject("r1", s.E.Precincts[0].ID, s.Contest), []byte("junk")); err != nil {
		tb.Fatal(err)
	}
}

// waitFor polls f until it returns true or the deadline passes.
func waitFor(tb testing.TB, what string, f func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServiceProjectsAndCalls(t *testing.T) {
	s := mustSynth(t, synthOpts{Counties: 4, PerCounty: 20, Swing: 0.1, Seed: 11})
	nc := runJetStream(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The service starts before the mirror and the bucket exist.
	mustOpenService(t, s, nc, true)
	kv := standInMirror(t, js)
	publishReports(t, js, s)
	ctx := context.Background()

	var proj tally.Projection
	waitFor(t, "the full projection", func() bool {
		e, err := kv.Get(ctx, tally.ProjectionKey(s.Contest))
		if err != nil {
			return false
		}
		if err := json.Unmarshal(e.Value(), &proj); err != nil {
			t.Fatal(err)
		}
		return proj.PrecinctsReporting == len(s.E.Precincts)
	})
	if proj.Outstanding != 0 || proj.CountedShare != 1 || proj.Margin.Leader == "" {
		t.Errorf("projection = %+v", proj)
	}
	var call tally.Call
	waitFor(t, "the call", func() bool {
		e, err := kv.Get(ctx, tally.CallKey(s.Contest))
		if err != nil {
			return false
		}
		return json.Unmarshal(e.Value(), &call) == nil
	})
	if call.Status != tally.CallCalled || call.Winner != proj.Margin.Leader || call.By != "model" || call.Basis == nil {
		t.Errorf("call = %+v", call)
	}
	st, err := js.Stream(ctx, tally.CallsStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, tally.CallSubject(s.Contest))
	if err != nil {
		t.Fatal(err)
	}
	var ev tally.Call
	if err := json.Unmarshal(msg.Data, &ev); err != nil || ev.Status != tally.CallCalled || ev.Winner != call.Winner {
		t.Errorf("call event = %+v (%v)", ev, err)
	}

	// A manual retraction, answered with the Call, published as an event.
	req, _ := json.Marshal(tally.AdminCall{Contest: s.Contest, Action: "retract", Reason: "desk review", By: "ed"})
	reply, err := nc.Request(tally.AdminCallSubject, req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var got tally.Call
	if err := json.Unmarshal(reply.Data, &got); err != nil || got.Status != tally.CallRetracted || got.By != "admin" {
		t.Fatalf("manual retraction reply = %s", reply.Data)
	}
	waitFor(t, "the retraction event", func() bool {
		msg, err := st.GetLastMsgForSubject(ctx, tally.CallSubject(s.Contest))
		return err == nil && json.Unmarshal(msg.Data, &ev) == nil && ev.Status == tally.CallRetracted
	})

	// Invalid requests get an error object.
	for _, body := range []string{`{"contest":"nope","action":"call","winner":"a","reason":"x"}`, `{`} {
		reply, err := nc.Request(tally.AdminCallSubject, []byte(body), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(reply.Data, &e); err != nil || e.Error.Code != tally.EINVALID || e.Error.Message == "" {
			t.Errorf("reply to %s = %s, want an invalid error", body, reply.Data)
		}
	}
}

func TestServiceManualForbidden(t *testing.T) {
	s := mustSynth(t, synthOpts{Counties: 2, PerCounty: 5, Seed: 12})
	nc := runJetStream(t)
	mustOpenService(t, s, nc, false)
	req, _ := json.Marshal(tally.AdminCall{Contest: s.Contest, Action: "call", Winner: "a", Reason: "x", By: "ed"})
	reply, err := nc.Request(tally.AdminCallSubject, req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &e); err != nil || e.Error.Code != tally.EFORBIDDEN {
		t.Errorf("reply = %s, want a forbidden error", reply.Data)
	}
}
