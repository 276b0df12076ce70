package reconciler_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/reconciler"
)

func runJetStream(tb testing.TB) *nats.Conn {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		tb.Fatal("nats not ready")
	}
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close) // runs before the server shuts down (LIFO)
	return nc
}

const election = `{"id": "x", "name": "X", "date": "2020-11-03",
  "regions": [{"id": "ra", "name": "A"}, {"id": "rb", "name": "B"}],
  "contests": [{"id": "gov", "name": "Governor", "office": "Governor", "candidates": [{"id": "ann", "name": "Ann"}]}],
  "precincts": [{"id": "p1", "name": "One", "county": "N", "region": "ra", "contests": ["gov"]}]}`

// TestReadStream: every stored message, in order, with its subject, time
// and exact bytes; a deleted one is simply absent, also at the end.
func TestReadStream(t *testing.T) {
	nc := runJetStream(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: tally.MirrorStream("ra"), Subjects: []string{"tally.ra.>"}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000 // more than one pull batch
	for i := 1; i <= n; i++ {
		if _, err := js.Publish(ctx, tally.ResultsSubject("ra", "p1", "gov"), fmt.Appendf(nil, `{"n":%d, "x":"<&>"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, seq := range []uint64{7, n} {
		if err := s.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	evs, ls, err := reconciler.ReadStream(ctx, js, tally.MirrorStream("ra"), "ra")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n-2 || ls.Messages != n-2 || ls.FirstSeq != 1 || ls.LastSeq != n {
		t.Fatalf("read %d messages, %+v; want %d, seq 1 to %d", len(evs), ls, n-2, n)
	}
	if evs[6].Seq != 8 || string(evs[6].Data) != `{"n":8, "x":"<&>"}` || evs[6].Region != "ra" || evs[6].Subject != "tally.ra.results.p1.gov" || evs[6].Stored.IsZero() {
		t.Errorf("7th message read: %+v %s", evs[6], evs[6].Data)
	}

	if _, _, err := reconciler.ReadStream(ctx, js, "NOPE", ""); !errors.Is(err, reconciler.ErrNoStream) {
		t.Errorf("missing stream: %v, want ErrNoStream", err)
	}
}

// TestReadHub reads the mirrors it finds and the audit and calls streams,
// and NationalState the contest results and region statuses.
func TestReadHub(t *testing.T) {
	nc := runJetStream(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := tally.LoadElection(strings.NewReader(election))
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range []jetstream.StreamConfig{
		{Name: tally.MirrorStream("ra"), Subjects: []string{"tally.ra.>"}}, // rb has no mirror yet
		{Name: tally.AuditStream, Subjects: []string{tally.AuditSubjects}},
	} {
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	for _, subj := range []string{tally.ResultsSubject("ra", "p1", "gov"), tally.CheckpointSubject("ra"), tally.AuditStatusSubject("ra")} {
		if _, err := js.Publish(ctx, subj, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	h, err := reconciler.ReadHub(ctx, js, e, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Events) != 2 || len(h.Audit) != 1 || len(h.Calls) != 0 || h.LastSeq["ra"] != 2 || len(h.Streams) != 2 {
		t.Errorf("hub: %d events, %d audit, %d calls, last seq %v, streams %+v", len(h.Events), len(h.Audit), len(h.Calls), h.LastSeq, h.Streams)
	}

	if _, _, err := reconciler.NationalState(ctx, js, e); err == nil {
		t.Error("NationalState without the bucket: no error")
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: tally.NationalBucket})
	if err != nil {
		t.Fatal(err)
	}
	res := tally.ContestResult{ID: "gov", Candidates: []tally.CandidateResult{{ID: "ann", Votes: 7}}}
	b, _ := json.Marshal(res)
	if _, err := kv.Put(ctx, tally.ContestKey("gov"), b); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal([]tally.RegionStatus{{ID: "ra", Applied: 2}})
	if _, err := kv.Put(ctx, tally.KeyRegions, b); err != nil {
		t.Fatal(err)
	}
	results, statuses, err := reconciler.NationalState(ctx, js, e)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results["gov"].Candidates[0].Votes != 7 || len(statuses) != 1 || statuses[0].Applied != 2 {
		t.Errorf("national state %+v %+v", results, statuses)
	}
}
