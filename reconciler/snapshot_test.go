package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// freePort returns a TCP port that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// restartableConfig is a hub configuration that a second hub can take over
// after the first stopped: the same store, leaf port and leaf credentials,
// so that the regions' links come back to it. Snapshots are taken only when
// the test says so (and at Close).
func restartableConfig(tb testing.TB, e *tally.Election) Config {
	cfg := testConfig(tb, e)
	cfg.NATS.LeafPort = freePort(tb)
	cfg.NATS.LeafUser, cfg.NATS.LeafPassword = "leaf", "leaf-secret-for-tests"
	cfg.SnapshotInterval = time.Hour
	return cfg
}

// crash stops r as a killed process stops, as far as its store can tell:
// the embedded server goes down first, under everything, so that no final
// snapshot, publish or audit record is written. A later Close does
// nothing.
func (r *Reconciler) crash(tb testing.TB) {
	tb.Helper()
	r.ns.Shutdown()
	r.ns.WaitForShutdown()
	r.nc.Close()
	r.consMu.Lock()
	ccs := r.consumers
	r.consumers = map[tally.RegionID]jetstream.ConsumeContext{}
	r.consMu.Unlock()
	for _, cc := range ccs {
		cc.Stop()
		select {
		case <-cc.Closed():
		case <-time.After(5 * time.Second):
			tb.Error("consumer did not stop")
		}
	}
	r.closeOnce.Do(func() {
		r.cancel()
		r.wg.Wait()
	})
}

// state returns the hub's totals state and chains, as JSON.
func (r *Reconciler) stateJSON(tb testing.TB) (totals, chains []byte) {
	tb.Helper()
	r.mu.Lock()
	st := r.totals.State()
	cs := map[tally.RegionID]tally.Chain{}
	for id, c := range r.chains {
		cs[id] = *c
	}
	r.mu.Unlock()
	return mustMarshal(tb, st), mustMarshal(tb, cs)
}

func mustMarshal(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// lastSeq returns the last sequence of the region's stream.
func (g *region) lastSeq() uint64 {
	g.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := g.js.Stream(ctx, tally.ResultsStream)
	if err != nil {
		g.tb.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// A hub that stops at any point without its final snapshot resumes from
// its last snapshot exactly once: after the restart, its totals, chains and
// checkpoints are those recomputed from the regions' streams, with events
// applied after the snapshot, events stored while it was down and events
// after the restart. The national state it publishes first is not older
// than what it published before it stopped, and each checkpoint is in the
// audit stream once.
func TestCrashResumesExactlyOnce(t *testing.T) {
	e := testElection(t)
	cfg := restartableConfig(t, e)
	h := mustStartHubWith(t, cfg)
	hub1 := h.r
	r1, r2, r3 := h.regions["r1"], h.regions["r2"], h.regions["r3"]
	var votes int64
	seqOf := map[tally.PrecinctID]uint64{}
	// batch publishes a report of every precinct, every third a correction.
	batch := func(complete bool) {
		for _, p := range e.Precincts {
			c := p.Contests[0]
			votes++
			rep := h.regions[p.Region].report(p.ID, c, votes, 2*votes, complete)
			if prev := h.m.latest[p.ID][c]; prev != nil && votes%3 == 0 {
				rep.Correction = &tally.Correction{Supersedes: prev.ID, SupersedesSeq: seqOf[p.ID], Reason: "recount"}
			}
			seqOf[p.ID] = h.publish(rep)
		}
	}
	lastSeqs := func() map[tally.RegionID]uint64 {
		out := map[tally.RegionID]uint64{}
		for _, g := range []*region{r1, r2, r3} {
			out[g.id] = g.lastSeq()
		}
		return out
	}
	checkpoints := func() {
		for _, g := range []*region{r1, r2, r3} {
			g.checkpoint(e, nil)
		}
	}

	// A: applied and snapshotted.
	batch(false)
	r2.publishRaw(tally.ResultsSubject("r2", "p9", "pres-b"), "r2-garbage", []byte("{not json"))
	checkpoints()
	h.waitApplied(t, lastSeqs(), 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hub1.saveSnapshot(ctx); err != nil {
		t.Fatal(err)
	}
	// B: applied, published and audited, not snapshotted.
	batch(false)
	checkpoints()
	lastB := lastSeqs()
	h.waitApplied(t, lastB, 10*time.Second)
	waitFor(t, 5*time.Second, "audit of B", func() error {
		if n := len(auditRecords(t, hub1)); n < 9 {
			return fmt.Errorf("%d audit records", n)
		}
		return nil
	})
	hub1.crash(t)

	// C: stored while the hub is down.
	batch(false)

	hub2 := MustOpenReconciler(t, cfg)
	for id, seq := range lastB {
		if got := hub2.Applied(id); got < seq {
			t.Errorf("after Open, Applied(%s) = %d: behind %d, applied before the crash", id, got, seq)
		}
	}
	h.r, h.gw = hub2, MustConnectGateway(t, hub2)
	restarted := time.Now()

	// D: after the restart, with final checkpoints.
	batch(true)
	checkpoints()
	h.waitApplied(t, lastSeqs(), 60*time.Second)
	t.Logf("caught up %s after the restart", time.Since(restarted).Round(time.Millisecond))

	want := tally.NewTotals(e)
	wantChains := map[tally.RegionID]tally.Chain{}
	for _, g := range []*region{r1, r2, r3} {
		wantChains[g.id], _ = g.recompute(e, want)
	}
	gotTotals, gotChains := hub2.stateJSON(t)
	if w := mustMarshal(t, want.State()); !bytes.Equal(gotTotals, w) {
		t.Errorf("totals after restart:\n got %s\nwant %s", gotTotals, w)
	}
	if w := mustMarshal(t, wantChains); !bytes.Equal(gotChains, w) {
		t.Errorf("chains after restart:\n got %s\nwant %s", gotChains, w)
	}
	for _, g := range []*region{r1, r2, r3} {
		st := h.waitCheckpoint(t, g.id, g.lastSeq())
		if !st.Checkpoint.Matched || st.Alert != nil {
			t.Errorf("region %s: checkpoint %+v, alert %+v: want matched, no alert", g.id, st.Checkpoint, st.Alert)
		}
	}
	h.waitContest(t, "pres-a", true, true)
	h.waitContest(t, tally.NationalContestID("President"), true, true)

	waitFor(t, 5*time.Second, "audit", func() error {
		n := map[string]int{}
		for _, rec := range auditRecords(t, hub2) {
			if rec.cp.Region != "" {
				n[fmt.Sprintf("%s@%d", rec.cp.Region, rec.cp.StreamSeq)]++
			}
		}
		if len(n) != 9 {
			return fmt.Errorf("%d checkpoints audited, want 9: %v", len(n), n)
		}
		for k, c := range n {
			if c != 1 {
				return fmt.Errorf("checkpoint %s audited %d times", k, c)
			}
		}
		return nil
	})
}

// A snapshot of another election is refused, naming it.
func TestSnapshotOfAnotherElection(t *testing.T) {
	e := testElection(t)
	cfg := restartableConfig(t, e)
	r := MustOpenReconciler(t, cfg)
	r.apply("r1", 1, "not.a.report", nil) // something to save
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	other := *e
	other.ID = "other-election"
	cfg.Election = &other
	r2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = r2.Open(ctx)
	if tally.ErrorCode(err) != tally.EINVALID || !strings.Contains(err.Error(), `"test"`) {
		t.Fatalf("Open() = %v, want EINVALID naming election \"test\"", err)
	}
}

// failingReader yields n bytes, then fails, as a Put's source that breaks
// half way.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	k := min(len(p), f.n)
	f.n -= k
	return k, nil
}

// An interrupted snapshot Put leaves the previous snapshot readable: one
// whose source fails half way, and one whose process dies after writing
// chunks but before the object's meta message (its chunks are then purged
// by the next Open).
func TestSnapshotPutInterrupted(t *testing.T) {
	e := testElection(t)
	cfg := restartableConfig(t, e)
	r := MustOpenReconciler(t, cfg)
	r.apply("r1", 7, "not.a.report", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.saveSnapshot(ctx); err != nil {
		t.Fatal(err)
	}
	v1, err := r.obs.GetBytes(ctx, tally.SnapshotObject)
	if err != nil {
		t.Fatal(err)
	}

	// 300 KiB is three chunks: some are stored before the source fails.
	if _, err := r.obs.Put(ctx, jetstream.ObjectMeta{Name: tally.SnapshotObject}, &failingReader{300 << 10}); err == nil {
		t.Fatal("Put with a failing source succeeded")
	}
	if got, err := r.obs.GetBytes(ctx, tally.SnapshotObject); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("after a failed Put: %v, %.60q; want the previous snapshot", err, got)
	}
	// What a Put killed before its meta message leaves behind.
	orphan := "$O." + tally.SnapshotBucket + ".C.killedmidput"
	for range 3 {
		if _, err := r.js.Publish(ctx, orphan, bytes.Repeat([]byte("x"), 128<<10)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := r.obs.GetBytes(ctx, tally.SnapshotObject); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("after a killed Put: %v; want the previous snapshot", err)
	}
	r.crash(t)

	r2 := MustOpenReconciler(t, cfg)
	if got := r2.Applied("r1"); got != 7 {
		t.Errorf("Applied(r1) after restart = %d, want 7 from the snapshot", got)
	}
	s, err := r2.js.Stream(ctx, "OBJ_"+tally.SnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("$O."+tally.SnapshotBucket+".C.>"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info.State.Subjects[orphan]; ok || len(info.State.Subjects) != 1 {
		t.Errorf("chunk subjects after Open = %v, want only the snapshot's", info.State.Subjects)
	}
}

// A save that cannot finish fails, saying how many cells it held and how
// long it tried, and leaves the last snapshot as it was.
func TestSnapshotSaveFails(t *testing.T) {
	e := testElection(t)
	r := MustOpenReconciler(t, restartableConfig(t, e))
	rep := &tally.Report{ID: "r1-1", Region: "r1", Precinct: "p1", Contest: "pres-a",
		Votes: map[tally.CandidateID]int64{"dem": 3, "rep": 4}, ReportedAt: time.Date(2024, 11, 5, 20, 0, 0, 0, time.UTC)}
	b, err := rep.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !r.apply("r1", 1, tally.ResultsSubject("r1", rep.Precinct, rep.Contest), b) {
		t.Fatal("report not applied")
	}
	ctx := context.Background()
	if err := r.saveSnapshot(ctx); err != nil {
		t.Fatal(err)
	}
	v1, err := r.obs.GetBytes(ctx, tally.SnapshotObject)
	if err != nil {
		t.Fatal(err)
	}
	r.apply("r1", 2, "not.a.report", nil) // a change to save
	gone, cancel := context.WithTimeout(ctx, -time.Second)
	defer cancel()
	err = r.saveSnapshot(gone)
	if err == nil || !strings.Contains(err.Error(), "save snapshot of 1 cells after ") {
		t.Fatalf("saveSnapshot past its deadline = %v; want an error naming the 1 cell and the time", err)
	}
	if got, err := r.obs.GetBytes(ctx, tally.SnapshotObject); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("after the failed save: %v, %.60q; want the previous snapshot", err, got)
	}
	if err := r.saveSnapshot(ctx); err != nil {
		t.Fatalf("the next save: %v", err)
	}
}

// Snapshots are saved every SnapshotInterval when something was applied,
// and not otherwise.
func TestSnapshotInterval(t *testing.T) {
	e := testElection(t)
	cfg := testConfig(t, e)
	cfg.SnapshotInterval = 50 * time.Millisecond
	r := MustOpenReconciler(t, cfg)
	g := MustStartRegion(t, "r1", leafURL(r))
	gw := MustConnectGateway(t, r)
	waitStatus(t, r, gw, "r1", tally.StatusLive, 10*time.Second)
	seq := g.publish(g.report("p1", "pres-a", 3, 4, true))
	var nuid string
	waitFor(t, 5*time.Second, "snapshot of seq", func() error {
		b, err := r.obs.GetBytes(context.Background(), tally.SnapshotObject)
		if err != nil {
			return err
		}
		_, totals, err := readSnapshot(bytes.NewReader(b), e)
		if err != nil {
			return err
		}
		if got := totals.LastSeq("r1"); got != seq {
			return fmt.Errorf("snapshot at seq %d", got)
		}
		info, err := r.obs.GetInfo(context.Background(), tally.SnapshotObject)
		if err != nil {
			return err
		}
		nuid = info.NUID
		return nil
	})
	time.Sleep(5 * cfg.SnapshotInterval) // nothing applied: nothing saved
	info, err := r.obs.GetInfo(context.Background(), tally.SnapshotObject)
	if err != nil {
		t.Fatal(err)
	}
	if info.NUID != nuid {
		t.Error("snapshot saved again with nothing applied")
	}
}

// snapshotDue: a large state waits for an event per snapshotCellsPerEvent
// cells, an urgent change, or snapshotMaxWait intervals; a small one saves
// any change.
func TestSnapshotDue(t *testing.T) {
	const iv = 2 * time.Second
	for _, tc := range []struct {
		name    string
		changed bool
		urgent  bool
		unsaved uint64
		cells   int
		waited  time.Duration
		want    bool
	}{
		{"NothingChanged", false, false, 0, 10, time.Hour, false},
		{"NothingChangedLarge", false, false, 0, 5_250_000, time.Hour, false},
		{"SmallStateOneEvent", true, false, 1, snapshotCellsPerEvent - 1, 0, true},
		{"AuditOnlySmallState", true, false, 0, snapshotCellsPerEvent - 1, 0, true},
		{"LargeStateFewEvents", true, false, 82_030, 5_250_000, 59 * iv, false},
		{"LargeStateEnoughEvents", true, false, 82_031, 5_250_000, 0, true},
		{"LargeStateUrgent", true, true, 0, 5_250_000, 0, true},
		{"LargeStateWaitedLongEnough", true, false, 1, 5_250_000, snapshotMaxWait * iv, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := snapshotDue(tc.changed, tc.urgent, tc.unsaved, tc.cells, tc.waited, iv); got != tc.want {
				t.Errorf("snapshotDue(%v, %v, %d, %d, %s) = %v, want %v", tc.changed, tc.urgent, tc.unsaved, tc.cells, tc.waited, got, tc.want)
			}
		})
	}
}

// The snapshot loop saves a state of 256 cells after 4 events, not 3, and
// after snapshotMaxWait intervals with fewer; a region's status change is
// saved at once.
func TestSnapshotWaitsForEvents(t *testing.T) {
	const precincts = 4 * snapshotCellsPerEvent
	cands := []tally.Candidate{{ID: "dem", Name: "Dee", Party: "D"}, {ID: "rep", Name: "Arr", Party: "R"}}
	e := &tally.Election{
		ID: "test", Name: "Test election", Date: "2024-11-05", Test: true,
		Regions:  []tally.Region{{ID: "r1", Name: "Region 1"}},
		Contests: []tally.Contest{{ID: "pres-a", Name: "President, A", Office: "President", State: "A", Candidates: cands}},
	}
	for i := range precincts {
		e.Precincts = append(e.Precincts, tally.Precinct{ID: tally.PrecinctID(fmt.Sprintf("p%d", i)), Name: "P",
			County: "c1", State: "A", Region: "r1", Contests: []tally.ContestID{"pres-a"}})
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, e)
	// snapshotMaxWait intervals (12 s) after a save, the loop saves even a
	// single event: far more than the steps below take between a save
	// and the check that none followed, even on a loaded machine (with 50
	// ms, 3 s, a CI run saw such a save).
	cfg.SnapshotInterval = 200 * time.Millisecond
	// No status change once live, even on a loaded machine: a status
	// record is saved at once, and would be a save this test did not ask.
	cfg.OfflineAfter, cfg.LagThreshold = time.Minute, 1<<40
	r := MustOpenReconciler(t, cfg)
	g := MustStartRegion(t, "r1", leafURL(r))
	gw := MustConnectGateway(t, r)
	waitStatus(t, r, gw, "r1", tally.StatusLive, 10*time.Second)
	due := func(waited time.Duration) bool { return r.saveDue(waited) }

	ctx := context.Background()
	// saved reads the snapshot's last sequence and its NUID; a read
	// during a save may fail.
	saved := func() (uint64, string, error) {
		info, err := r.obs.GetInfo(ctx, tally.SnapshotObject)
		if err != nil {
			return 0, "", err
		}
		b, err := r.obs.GetBytes(ctx, tally.SnapshotObject)
		if err != nil {
			return 0, "", err
		}
		_, totals, err := readSnapshot(bytes.NewReader(b), e)
		if err != nil {
			return 0, "", err
		}
		return totals.LastSeq("r1"), info.NUID, nil
	}
	waitSaved := func(seq uint64, within time.Duration) string {
		t.Helper()
		var nuid string
		waitFor(t, within, fmt.Sprintf("snapshot at seq %d", seq), func() error {
			got, n, err := saved()
			if err != nil {
				return err
			}
			if got != seq {
				return fmt.Errorf("snapshot at seq %d", got)
			}
			nuid = n
			return nil
		})
		return nuid
	}
	waitApplied := func(seq uint64) {
		t.Helper()
		waitFor(t, 10*time.Second, fmt.Sprintf("seq %d applied", seq), func() error {
			if got := r.Applied("r1"); got != seq {
				return fmt.Errorf("applied %d", got)
			}
			return nil
		})
	}

	var seq uint64
	for _, p := range e.Precincts {
		seq = g.publish(g.report(p.ID, "pres-a", 3, 4, false))
	}
	waitSaved(seq, 10*time.Second) // 256 events: due

	// Three events are a 64th of 256 cells less one: not due, for the ten
	// intervals watched (snapshotMaxWait is 60).
	for i := range 3 {
		seq = g.publish(g.report(e.Precincts[i].ID, "pres-a", 5, 6, false))
	}
	waitApplied(seq)
	if due(0) || !due(snapshotMaxWait*cfg.SnapshotInterval) {
		t.Errorf("after 3 events: due at once %v, after %d intervals %v; want false, true", due(0), snapshotMaxWait, due(snapshotMaxWait*cfg.SnapshotInterval))
	}
	time.Sleep(10 * cfg.SnapshotInterval)
	if got, _, err := saved(); err != nil || got != seq-3 {
		t.Fatalf("snapshot at seq %d (%v) after 3 events, want still %d", got, err, seq-3)
	}
	seq = g.publish(g.report(e.Precincts[3].ID, "pres-a", 5, 6, false)) // the fourth
	waitSaved(seq, 10*time.Second)
	waitFor(t, 10*time.Second, "the save's bookkeeping", func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.unsaved != 0 {
			return fmt.Errorf("%d events unsaved", r.unsaved)
		}
		return nil
	})

	// One event: due once snapshotMaxWait intervals (12 s) have passed
	// since the last save, not at once; the loop then saves it.
	seq = g.publish(g.report(e.Precincts[4].ID, "pres-a", 7, 8, true))
	waitApplied(seq)
	if due(0) || !due(snapshotMaxWait*cfg.SnapshotInterval) {
		t.Errorf("after 1 event: due at once %v, after %d intervals %v; want false, true", due(0), snapshotMaxWait, due(snapshotMaxWait*cfg.SnapshotInterval))
	}
	nuid := waitSaved(seq, snapshotMaxWait*cfg.SnapshotInterval+10*time.Second)

	// A status record is not in the mirrors: due at once, and saved.
	r.mu.Lock()
	r.statusEventLocked(0, tally.StatusLagging, 0)
	urgent := r.saveDueLocked(0)
	r.mu.Unlock()
	if !urgent {
		t.Error("a status record is not due at once")
	}
	waitFor(t, 10*time.Second, "snapshot after a status change", func() error {
		_, n, err := saved()
		if err == nil && n == nuid {
			return errors.New("not saved")
		}
		return err
	})
}

// A hub killed again and again while a region keeps reporting ends up with
// every event applied once.
func TestHubKilledRepeatedly(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: restarts the hub several times")
	}
	e := testElection(t)
	cfg := restartableConfig(t, e)
	cfg.SnapshotInterval = 200 * time.Millisecond
	r := MustOpenReconciler(t, cfg)
	g := MustStartRegion(t, "r1", leafURL(r))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			g.publish(g.report([]tally.PrecinctID{"p1", "p2"}[i%2], "pres-a", int64(i), int64(i), false))
		}
	}()
	for _, down := range []time.Duration{500 * time.Millisecond, 3 * time.Second, 1500 * time.Millisecond, 4 * time.Second} {
		time.Sleep(1500 * time.Millisecond)
		r.crash(t)
		time.Sleep(down)
		r = MustOpenReconciler(t, cfg)
	}
	close(stop)
	<-done
	last := g.lastSeq()
	start := time.Now()
	waitFor(t, 60*time.Second, "all applied", func() error {
		if got := r.Applied("r1"); got != last {
			m, _ := mirrorLastSeq(r, "r1")
			return fmt.Errorf("applied %d of %d, mirror at %d", got, last, m)
		}
		return nil
	})
	t.Logf("all %d applied %s after the last restart", last, time.Since(start).Round(time.Millisecond))
	want := tally.NewTotals(e)
	wantChain, _ := g.recompute(e, want)
	gotTotals, gotChains := r.stateJSON(t)
	if !bytes.Equal(gotTotals, mustMarshal(t, want.State())) {
		t.Error("totals differ from the region's stream")
	}
	if !bytes.Equal(gotChains, mustMarshal(t, map[tally.RegionID]tally.Chain{"r1": wantChain, "r2": tally.NewChain("r2"), "r3": tally.NewChain("r3")})) {
		t.Errorf("chains = %s, want r1's %+v", gotChains, wantChain)
	}
}

// readSnapshot reads back what writeSnapshot writes, and what a hub
// wrote before (version 1), and refuses a snapshot it cannot read a field
// at a time, a damaged one and one of another version.
func TestReadSnapshot(t *testing.T) {
	e := testElection(t)
	totals := tally.NewTotals(e)
	rep := &tally.Report{ID: "r1-1", Region: "r1", Precinct: "p1", Contest: "pres-a",
		Votes: map[tally.CandidateID]int64{"dem": 30, "rep": 20}, Complete: true,
		ReportedAt: time.Date(2026, 11, 3, 21, 0, 0, 0, time.UTC)}
	if err := rep.Validate(e); err != nil {
		t.Fatal(err)
	}
	totals.Apply(1, rep)
	s := &snapshot{Version: snapshotVersion, Election: e.ID, Taken: time.Date(2026, 11, 3, 21, 0, 1, 0, time.UTC),
		Regions: []regionSnapshot{{ID: "r1", Chain: tally.Chain{Seq: 1}}},
		Audit:   []auditMsg{{Subject: "tally.audit.checkpoint.r1", Data: json.RawMessage(`{}`)}}}
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, s, totals.Copy()); err != nil {
		t.Fatal(err)
	}
	good := buf.String()
	got, gotTotals, err := readSnapshot(strings.NewReader(good), e)
	if err != nil {
		t.Fatalf("readSnapshot: %v", err)
	}
	if got.Version != s.Version || got.Election != s.Election || !got.Taken.Equal(s.Taken) ||
		len(got.Regions) != 1 || got.Regions[0].Chain.Seq != 1 || len(got.Audit) != 1 {
		t.Errorf("readSnapshot() = %+v, want %+v", got, s)
	}
	if g, w := mustMarshal(t, gotTotals.State()), mustMarshal(t, totals.State()); !bytes.Equal(g, w) {
		t.Errorf("totals read:\n%s\nwant\n%s", g, w)
	}

	// Version 1, whose totals are a TotalsState in JSON, is read too.
	var tj bytes.Buffer
	if err := totals.Copy().WriteJSON(&tj); err != nil {
		t.Fatal(err)
	}
	old := *s
	old.Version, old.Totals = 1, tj.Bytes()
	v1 := string(mustMarshal(t, &old))
	got1, got1Totals, err := readSnapshot(strings.NewReader(v1), e)
	if err != nil {
		t.Fatalf("readSnapshot(version 1): %v", err)
	}
	if got1.Version != 1 || len(got1.Regions) != 1 {
		t.Errorf("readSnapshot(version 1) = %+v", got1)
	}
	if g, w := mustMarshal(t, got1Totals.State()), mustMarshal(t, totals.State()); !bytes.Equal(g, w) {
		t.Errorf("version 1 totals read:\n%s\nwant\n%s", g, w)
	}

	for _, tc := range []struct{ name, in, want string }{
		{"Truncated", good[:len(good)/2], "snapshot"},
		{"DataAfter", good + `{}`, "data after the object"},
		{"NotJSON", "garbage", "invalid character"},
		{"UnknownField", strings.Replace(good, `"taken"`, `"took"`, 1), `unknown field "took"`},
		{"TotalsFirst", `{"totals":{},"version":1}`, "totals before the version and election fields"},
		{"OtherVersion", strings.Replace(good, `"version":2`, `"version":9`, 1), "version 9"},
		{"V1TotalsInV2", strings.Replace(v1, `"version":1`, `"version":2`, 1), `unknown field "cells"`},
		{"OtherElection", strings.Replace(good, `"election":"`+e.ID+`"`, `"election":"other"`, 1), `is of election "other"`},
		{"TotalsTampered", strings.Replace(good, `"dem":30`, `"dem":31`, 1), "its cells make"},
		{"NoTotals", `{"version":1,"election":"` + e.ID + `"}`, "no totals"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readSnapshot(strings.NewReader(tc.in), e)
			if tally.ErrorCode(err) != tally.EINVALID || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("readSnapshot() error = %v, want EINVALID containing %q", err, tc.want)
			}
		})
	}
}
