package regional_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/regional"
)

// streamCheck is what checkStream found in a RESULTS stream.
type streamCheck struct {
	last        uint64   // last sequence
	events      uint64   // results messages
	checkpoints []uint64 // stream sequences of the checkpoints
	lastIsCP    bool     // the last message is a checkpoint
}

// checkStream reads every message of region north's stream s and checks
// each checkpoint against a recomputation from the messages before it: it
// is stored at S+1 and covers S, and its event count, hash and totals are
// those of the events up to S.
func checkStream(tb testing.TB, s jetstream.Stream, e *tally.Election) streamCheck {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var sc streamCheck
	sc.last = info.State.LastSeq
	if sc.last == 0 {
		return sc
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	totals, chain := tally.NewTotals(e), tally.NewChain("north")
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			tb.Fatalf("read stream after seq %d of %d: %v", totals.LastSeq("north"), sc.last, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			tb.Fatal(err)
		}
		seq := md.Sequence.Stream
		sc.lastIsCP = false
		if _, _, _, ok := tally.ParseResultsSubject(msg.Subject()); ok {
			chain.Add(seq, msg.Subject(), msg.Data())
			sc.events++
			rep, err := tally.DecodeReport(msg.Data())
			if err == nil {
				err = rep.Validate(e)
			}
			if err == nil && rep.Region == "north" {
				totals.Apply(seq, rep)
			}
		} else if r, ok := tally.IsCheckpointSubject(msg.Subject()); ok && r == "north" {
			cp, err := tally.DecodeCheckpoint(msg.Data())
			if err != nil {
				tb.Fatalf("checkpoint at seq %d: %v", seq, err)
			}
			if cp.Seq != seq-1 {
				tb.Fatalf("checkpoint stored at seq %d covers seq %d, want %d", seq, cp.Seq, seq-1)
			}
			if got := msg.Headers().Get(jetstream.MsgIDHeader); got != tally.CheckpointMsgID(cp.Seq) {
				tb.Errorf("checkpoint at seq %d: Nats-Msg-Id %q, want %q", seq, got, tally.CheckpointMsgID(cp.Seq))
			}
			want := totals.Checkpoint("north", seq-1, chain, cp.At)
			if err := cp.Compare(want); err != nil {
				tb.Fatalf("checkpoint stored at seq %d differs from the recomputation: %v", seq, err)
			}
			sc.checkpoints = append(sc.checkpoints, seq)
			sc.lastIsCP = true
		} else {
			tb.Fatalf("seq %d: unexpected subject %q", seq, msg.Subject())
		}
		if seq >= sc.last {
			return sc
		}
	}
}

// openStore serves store dir, which a region node of north used, from a
// plain server in the test, and returns its RESULTS stream (nil if none)
// and a JetStream context.
func openStore(tb testing.TB, dir string) (jetstream.JetStream, jetstream.Stream, func()) {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{ServerName: "store", Host: "127.0.0.1", Port: -1, JetStream: true,
		JetStreamDomain: "north", StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	stop := func() { nc.Close(); ns.Shutdown(); ns.WaitForShutdown() }
	tb.Cleanup(stop)
	js, err := jetstream.NewWithDomain(nc, "north")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, tally.ResultsStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return js, nil, stop
	}
	if err != nil {
		tb.Fatal(err)
	}
	return js, s, stop
}

// reportJSON is a report of north with a unique id.
func reportJSON(id string, p, c string, k int) []byte {
	votes := map[string]int{"biden": k, "trump": k / 2}
	if c == "gov" {
		votes = map[string]int{"alice": k, "bob": k / 3}
	}
	b, _ := json.Marshal(map[string]any{"id": id, "region": "north", "precinct": p, "contest": c, "votes": votes,
		"complete": k%2 == 0, "reported_at": "2024-11-05T20:00:00Z"})
	return b
}

var cells = []struct{ p, c string }{{"n1", "pres"}, {"n1", "gov"}, {"n2", "pres"}}

// TestCheckpointsUnderLoad makes checkpoints, from the loop and on demand,
// while reports arrive concurrently over HTTP (batches, single reports,
// corrections), over the NATS intake, and around the intake: every
// checkpoint in the stream is stored right after what it covers and equals
// the recomputation from the stream.
func TestCheckpointsUnderLoad(t *testing.T) {
	n := MustOpenNode(t, func(c *regional.Config) { c.CheckpointInterval = 7 * time.Millisecond })
	s := MustStream(t, n)
	nc, err := n.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, "north")
	if err != nil {
		t.Fatal(err)
	}
	const perWorker = 150
	var wg sync.WaitGroup
	var accepted, conflicts atomic.Int64
	client := &http.Client{Timeout: 20 * time.Second}
	postBody := func(path string, body []byte) (int, regional.SubmitResponse) {
		res, err := client.Post("http://"+n.HTTPAddr()+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			return 0, regional.SubmitResponse{}
		}
		defer res.Body.Close()
		var v regional.SubmitResponse
		if res.StatusCode == http.StatusOK {
			if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
				t.Error(err)
			}
		}
		return res.StatusCode, v
	}
	worker := func(name string, f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				f(i)
			}
		}()
	}
	worker("batch", func(i int) {
		// Batches of 10, and three of 600, which the intake publishes in
		// chunks: a checkpoint waits for one chunk, not the whole batch.
		size := 10
		switch {
		case i%50 == 25:
			size = 600
		case i%5 != 0:
			return
		}
		var batch []json.RawMessage
		for j := range size {
			cell := cells[j%len(cells)]
			batch = append(batch, reportJSON(fmt.Sprintf("north-b-%d-%d", i, j), cell.p, cell.c, i+j))
		}
		body, _ := json.Marshal(batch)
		if st, _ := postBody("/api/v1/reports", body); st == http.StatusOK {
			accepted.Add(int64(size))
		} else {
			t.Errorf("batch %d: status %d", i, st)
		}
	})
	worker("single", func(i int) {
		cell := cells[i%len(cells)]
		if st, _ := postBody("/api/v1/reports", reportJSON(fmt.Sprintf("north-s-%d", i), cell.p, cell.c, i)); st == http.StatusOK {
			accepted.Add(1)
		} else {
			t.Errorf("single %d: status %d", i, st)
		}
	})
	worker("correction", func(i int) {
		id := fmt.Sprintf("north-k-%d", i)
		st, v := postBody("/api/v1/reports", reportJSON(id, "n2", "pres", i))
		if st != http.StatusOK {
			t.Errorf("report %s: status %d", id, st)
			return
		}
		accepted.Add(1)
		body := fmt.Sprintf(`{"id":"north-kc-%d","precinct":"n2","contest":"pres","votes":{"biden":%d,"trump":1},"complete":true,`+
			`"correction":{"supersedes":%q,"supersedes_seq":%d,"reason":"recount"}}`, i, i+1, id, v.Results[0].Seq)
		switch st, _ := postBody("/api/v1/corrections", []byte(body)); st {
		case http.StatusOK:
			accepted.Add(1)
		case http.StatusConflict: // another worker reported n2/pres in between
			conflicts.Add(1)
		default:
			t.Errorf("correction of %s: status %d", id, st)
		}
	})
	worker("nats", func(i int) {
		cell := cells[i%len(cells)]
		m, err := nc.Request(regional.IntakeSubject("north", tally.PrecinctID(cell.p), tally.ContestID(cell.c)),
			reportJSON(fmt.Sprintf("north-n-%d", i), cell.p, cell.c, i), 10*time.Second)
		if err != nil {
			t.Errorf("nats intake %d: %v", i, err)
			return
		}
		if !bytes.Contains(m.Data, []byte(`"results"`)) {
			t.Errorf("nats intake %d: %s", i, m.Data)
			return
		}
		accepted.Add(1)
	})
	worker("around", func(i int) {
		// Published around the intake and its gate, at the pace of an
		// intake request: a checkpoint must notice it got in first, and
		// rebuild.
		cell := cells[i%len(cells)]
		if st, _ := postBody("/api/v1/reports", reportJSON(fmt.Sprintf("north-s2-%d", i), cell.p, cell.c, i)); st == http.StatusOK {
			accepted.Add(1)
		}
		if i%3 != 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := js.Publish(ctx, tally.ResultsSubject("north", "n1", "gov"), reportJSON(fmt.Sprintf("north-a-%d", i), "n1", "gov", i)); err != nil {
			t.Errorf("publish around the intake: %v", err)
		}
	})
	var pauses []time.Duration
	var moved int
	stop := make(chan struct{})
	cpDone := make(chan struct{})
	go func() {
		defer close(cpDone)
		tick := time.NewTicker(3 * time.Millisecond) // pacing, on top of the node's own loop
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			res, err := n.Checkpoint(ctx)
			cancel()
			if tally.ErrorCode(err) == tally.ECONFLICT {
				moved++ // outpaced by the publishes around the intake; a later one makes it
				continue
			}
			if err != nil {
				t.Errorf("Checkpoint() = %v", err)
				return
			}
			if res.Made {
				pauses = append(pauses, res.Pause)
				if res.StreamSeq != res.Checkpoint.Seq+1 {
					t.Errorf("checkpoint of seq %d stored at %d", res.Checkpoint.Seq, res.StreamSeq)
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-cpDone
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	sc := checkStream(t, s, testElection(t))
	if !sc.lastIsCP {
		t.Errorf("stream ends at seq %d with an event after Checkpoint()", sc.last)
	}
	if len(sc.checkpoints) < 3 {
		t.Errorf("%d checkpoints in the stream, want several", len(sc.checkpoints))
	}
	wantEvents := uint64(accepted.Load()) + perWorker/3
	if sc.events != wantEvents {
		t.Errorf("stream holds %d events, want %d accepted", sc.events, wantEvents)
	}
	slices.Sort(pauses)
	if len(pauses) > 0 {
		var sum time.Duration
		for _, p := range pauses {
			sum += p
		}
		t.Logf("%d events, %d checkpoints (%d on demand, the rest from the loop; %d given up, outpaced), %d corrections refused; intake pause per checkpoint: median %s, p90 %s, max %s, mean %s",
			sc.events, len(sc.checkpoints), len(pauses), moved, conflicts.Load(), pauses[len(pauses)/2], pauses[len(pauses)*9/10], pauses[len(pauses)-1], sum/time.Duration(len(pauses)))
	}
}

// TestCheckpointOnlyWhenNew: no checkpoint without new events, from the
// loop or on demand.
func TestCheckpointOnlyWhenNew(t *testing.T) {
	n := MustOpenNode(t, func(c *regional.Config) { c.CheckpointInterval = 10 * time.Millisecond })
	s := MustStream(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := n.Checkpoint(ctx); err != nil || res.Made {
		t.Fatalf("Checkpoint() on an empty stream = %+v, %v; want nothing made", res, err)
	}
	post(t, n, "/api/v1/reports", reportN1).results(t)
	waitFor(t, "the loop's checkpoint at seq 2", func() bool { _, at, ok := n.LastCheckpoint(); return ok && at == 2 })
	// Ten intervals without events: nothing more is stored.
	time.Sleep(100 * time.Millisecond)
	if res, err := n.Checkpoint(ctx); err != nil || res.Made {
		t.Fatalf("Checkpoint() without new events = %+v, %v; want nothing made", res, err)
	}
	if got := msgCount(t, s); got != 2 {
		t.Errorf("stream messages = %d, want 2 (a report and one checkpoint)", got)
	}
	post(t, n, "/api/v1/reports", reportN2).results(t)
	res, err := n.Checkpoint(ctx)
	if err != nil || !res.Made || res.Checkpoint.Seq < 3 || res.Checkpoint.Events != 2 {
		// The loop may have made the one of seq 3 first: then nothing is new.
		if err != nil || res.Made || n.AppliedSeq() != 4 {
			t.Fatalf("Checkpoint() after a report = %+v, %v", res, err)
		}
	}
	checkStream(t, s, testElection(t))
}

// TestCheckpointAtClose: Close stores a final checkpoint, and a node opened
// on a store ending with a checkpoint makes none.
func TestCheckpointAtClose(t *testing.T) {
	dir := t.TempDir()
	n := MustOpenNode(t, func(c *regional.Config) { c.NATS.StoreDir = dir; c.CheckpointInterval = -1 })
	post(t, n, "/api/v1/reports", "["+reportN1+","+reportN2+","+reportG1+"]").results(t)
	post(t, n, "/api/v1/corrections", correction("north-c1", "north-r1", 1, 12)).results(t)
	if _, _, ok := n.LastCheckpoint(); ok {
		t.Fatal("checkpoint made with the loop off")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	_, s, stop := openStore(t, dir)
	sc := checkStream(t, s, testElection(t))
	if sc.last != 5 || !sc.lastIsCP || !slices.Equal(sc.checkpoints, []uint64{5}) {
		t.Fatalf("stream after Close = %+v, want 4 events and the final checkpoint at 5", sc)
	}
	stop()
	n2 := MustOpenNode(t, func(c *regional.Config) { c.NATS.StoreDir = dir })
	if got := n2.AppliedSeq(); got != 5 {
		t.Errorf("applied seq after reopen = %d, want 5: no new checkpoint", got)
	}
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	_, s, _ = openStore(t, dir)
	if got := msgCount(t, s); got != 5 {
		t.Errorf("stream messages after a reopen and close = %d, want 5", got)
	}
}

// TestCheckpointAtOpen: a store whose stream ends with events no checkpoint
// covers (a node that crashed, or a store made before checkpoints existed,
// whose stream lacks the checkpoint subject) gets a checkpoint at Open, and
// the old stream is upgraded.
func TestCheckpointAtOpen(t *testing.T) {
	e := testElection(t)
	publish := func(t *testing.T, js jetstream.JetStream, ids ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i, id := range ids {
			cell := cells[i%len(cells)]
			if _, err := js.Publish(ctx, tally.ResultsSubject("north", tally.PrecinctID(cell.p), tally.ContestID(cell.c)),
				reportJSON(id, cell.p, cell.c, 10+i), jetstream.WithMsgID(id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("OldStore", func(t *testing.T) {
		dir := t.TempDir()
		js, _, stop := openStore(t, dir)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: tally.ResultsStream, Subjects: []string{tally.ResultsSubjects("north")},
			Storage: jetstream.FileStorage, Duplicates: time.Hour}); err != nil {
			t.Fatal(err)
		}
		publish(t, js, "north-o1", "north-o2", "north-o3")
		stop()

		n := MustOpenNode(t, func(c *regional.Config) { c.NATS.StoreDir = dir })
		s := MustStream(t, n)
		if subj := s.CachedInfo().Config.Subjects; !slices.Contains(subj, tally.CheckpointSubject("north")) {
			t.Fatalf("stream subjects after Open = %v, want the checkpoint subject added", subj)
		}
		cp, at, ok := n.LastCheckpoint()
		if !ok || at != 4 || cp.Seq != 3 || cp.Events != 3 {
			t.Fatalf("last checkpoint = %+v at %d (%v), want the Open one covering 3 events at 4", cp, at, ok)
		}
		if sc := checkStream(t, s, e); !slices.Equal(sc.checkpoints, []uint64{4}) {
			t.Errorf("checkpoints at %v, want [4]", sc.checkpoints)
		}
		// The upgraded node takes reports as before.
		if res := post(t, n, "/api/v1/reports", reportN1).results(t); res[0].Seq != 5 {
			t.Errorf("report after upgrade at seq %d, want 5", res[0].Seq)
		}
	})
	t.Run("AfterCrash", func(t *testing.T) {
		dir := t.TempDir()
		n := MustOpenNode(t, func(c *regional.Config) { c.NATS.StoreDir = dir })
		post(t, n, "/api/v1/reports", "["+reportN1+","+reportN2+"]").results(t)
		if err := n.Close(); err != nil { // final checkpoint at 3
			t.Fatal(err)
		}
		// Events stored after the last checkpoint, as by a node that
		// crashed before its next one.
		js, _, stop := openStore(t, dir)
		publish(t, js, "north-x1", "north-x2")
		stop()

		n2 := MustOpenNode(t, func(c *regional.Config) { c.NATS.StoreDir = dir })
		cp, at, ok := n2.LastCheckpoint()
		if !ok || at != 6 || cp.Seq != 5 || cp.Events != 4 {
			t.Fatalf("last checkpoint = %+v at %d (%v), want one covering 4 events at 6", cp, at, ok)
		}
		if sc := checkStream(t, MustStream(t, n2), e); !slices.Equal(sc.checkpoints, []uint64{3, 6}) {
			t.Errorf("checkpoints at %v, want [3 6]", sc.checkpoints)
		}
	})
}

// TestVerifyCheckpoints: Verify counts checkpoints apart from events and
// checks each against the chain of the events before it.
func TestVerifyCheckpoints(t *testing.T) {
	n := MustOpenNode(t, nil)
	post(t, n, "/api/v1/reports", "["+reportN1+","+reportN2+"]").results(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := n.Checkpoint(ctx); err != nil || !res.Made {
		t.Fatalf("Checkpoint() = %+v, %v", res, err)
	}
	nc, err := n.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, "north")
	if err != nil {
		t.Fatal(err)
	}
	offs, err := tally.NewOffices(testElection(t), "north", nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := regional.Verify(ctx, js, tally.ResultsStream, offs)
	if err != nil || a.Events != 2 || a.Checkpoints != 1 {
		t.Fatalf("Verify() = %+v, %v; want 2 events and 1 checkpoint", a, err)
	}
	for _, p := range a.Problems {
		if p.Seq == 3 {
			t.Errorf("the node's own checkpoint is a problem: %+v", p)
		}
	}
	// A forged checkpoint: right place, wrong count.
	bad := tally.Checkpoint{Region: "north", Seq: 3, Events: 3, Hash: "00000000000000000000000000000000000000000000000000000000000000ff"}
	if _, err := js.Publish(ctx, tally.CheckpointSubject("north"), bad.Encode()); err != nil {
		t.Fatal(err)
	}
	a, err = regional.Verify(ctx, js, tally.ResultsStream, offs)
	if err != nil || a.Checkpoints != 2 {
		t.Fatalf("Verify() = %+v, %v", a, err)
	}
	found := false
	for _, p := range a.Problems {
		found = found || (p.Seq == 4 && p.Code == tally.ECONFLICT)
	}
	if !found {
		t.Errorf("forged checkpoint at seq 4 not reported: %+v", a.Problems)
	}
}
