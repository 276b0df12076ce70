package reconciler

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

func TestNewConfig(t *testing.T) {
	e := testElection(t)
	tests := []struct {
		name     string
		edit     func(*Config)
		wantCode string
	}{
		{"Defaults", func(*Config) {}, ""},
		{"NoElection", func(c *Config) { c.Election = nil }, tally.EINVALID},
		{"NoStoreDir", func(c *Config) { c.NATS.StoreDir = "" }, tally.EINVALID},
		{"ExternalNeedsNoStoreDir", func(c *Config) { c.NATS.StoreDir, c.NATS.URL = "", "nats://x:4222" }, ""},
		{"OfflineAfterBelowHeartbeats", func(c *Config) { c.OfflineAfter = time.Second }, tally.EINVALID},
		{"BadReplicas", func(c *Config) { c.NATS.Replicas = 7 }, tally.EINVALID},
		{"NegativeSnapshotInterval", func(c *Config) { c.SnapshotInterval = -time.Second }, tally.EINVALID},
		{"NegativeCatchUpTimeout", func(c *Config) { c.CatchUpTimeout = -time.Second }, tally.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Election: e, NATS: NATSConfig{StoreDir: t.TempDir()}}
			tt.edit(&cfg)
			r, err := New(cfg)
			if got := tally.ErrorCode(err); got != tt.wantCode {
				t.Fatalf("New() error = %v, want code %q", err, tt.wantCode)
			}
			if err == nil {
				if r.cfg.OfflineAfter != DefaultOfflineAfter || r.cfg.PublishInterval != DefaultPublishInterval ||
					r.cfg.HealthInterval != DefaultHealthInterval || r.cfg.LagThreshold != DefaultLagThreshold || r.cfg.NATS.Replicas != 1 ||
					r.cfg.SnapshotInterval != DefaultSnapshotInterval || r.cfg.CatchUpTimeout != DefaultCatchUpTimeout {
					t.Errorf("defaults not applied: %+v", r.cfg)
				}
			}
		})
	}
}

// hub is a hub with three linked regions, a gateway's view of its bucket
// and the model of what it must show.
type hub struct {
	r       *Reconciler
	gw      *gateway
	regions map[tally.RegionID]*region
	m       *model
}

func mustStartHub(t *testing.T) *hub {
	t.Helper()
	return mustStartHubWith(t, testConfig(t, testElection(t)))
}

// mustStartHubWith opens a reconciler with cfg and starts every region of
// its election, linked and live.
func mustStartHubWith(t *testing.T, cfg Config) *hub {
	t.Helper()
	e := cfg.Election
	r := MustOpenReconciler(t, cfg)
	h := &hub{r: r, gw: MustConnectGateway(t, r), regions: map[tally.RegionID]*region{}, m: newModel(e)}
	for _, reg := range e.Regions {
		h.regions[reg.ID] = MustStartRegion(t, reg.ID, leafURL(r))
	}
	for _, reg := range e.Regions {
		waitStatus(t, r, h.gw, reg.ID, tally.StatusLive, 15*time.Second)
	}
	return h
}

// publish publishes rep in its region and records it in the model.
func (h *hub) publish(rep *tally.Report) uint64 {
	seq := h.regions[rep.Region].publish(rep)
	h.m.add(rep)
	return seq
}

// waitApplied waits until the hub has applied region id up to seq and the
// totals, in memory and in the bucket, match the model.
func (h *hub) waitApplied(t *testing.T, want map[tally.RegionID]uint64, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "totals converge", func() error {
		for id, seq := range want {
			if got := h.r.Applied(id); got != seq {
				return fmt.Errorf("Applied(%s) = %d, want %d", id, got, seq)
			}
		}
		return checkAll(h.r, h.gw, h.m)
	})
}

func TestOpenPublishesEveryContest(t *testing.T) {
	e := testElection(t)
	r := MustOpenReconciler(t, testConfig(t, e))
	gw := MustConnectGateway(t, r)
	// Open returns after the first publish: no waiting needed.
	for _, id := range []tally.ContestID{"pres-a", "pres-b", tally.NationalContestID("President")} {
		res, err := gw.contest(id)
		if err != nil {
			t.Fatal(err)
		}
		if res.ID != id || res.TotalVotes != 0 || len(res.Candidates) != 2 {
			t.Errorf("contest %s = %+v, want zeros for 2 candidates", id, res)
		}
		if !res.Partial {
			t.Errorf("contest %s partial = false with no region connected", id)
		}
	}
	sts, err := gw.regions()
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 3 {
		t.Fatalf("regions = %+v, want 3", sts)
	}
	for _, st := range sts {
		if st.Status != tally.StatusOffline || st.Leaf {
			t.Errorf("region %s = %+v, want offline without leaf", st.ID, st)
		}
	}
	if _, ok := r.Result("nope"); ok {
		t.Error("Result(nope) found")
	}
	if r.Server() == nil || r.LeafURL() == "" || r.ClientURL() == "" {
		t.Errorf("Server/LeafURL/ClientURL empty: %v %q %q", r.Server(), r.LeafURL(), r.ClientURL())
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestReconcile(t *testing.T) {
	h := mustStartHub(t)
	r1, r2, r3 := h.regions["r1"], h.regions["r2"], h.regions["r3"]

	h.publish(r1.report("p1", "pres-a", 10, 20, false))
	h.publish(r1.report("p2", "pres-a", 5, 5, true))
	s3 := h.publish(r2.report("p3", "pres-a", 7, 1, false))
	h.publish(r2.report("p4", "pres-b", 100, 50, false))
	h.publish(r3.report("p5", "pres-b", 30, 70, false))
	// A later cumulative report replaces the earlier one.
	last1 := h.publish(r1.report("p1", "pres-a", 40, 60, true))
	// A correction supersedes the latest report of its precinct.
	corr := r2.report("p3", "pres-a", 6, 1, true)
	corr.Correction = &tally.Correction{Supersedes: h.m.latest["p3"]["pres-a"].ID, SupersedesSeq: s3, Reason: "transposed digits"}
	h.publish(corr)
	// A duplicate (same Nats-Msg-Id) is dropped by the region stream.
	dup := *h.m.latest["p5"]["pres-b"]
	last3 := r3.publish(&dup)
	// An invalid event is skipped and does not block later ones.
	bad := r2.report("p4", "pres-b", 1, 1, false)
	bad.Votes["nobody"] = 3
	b, _ := bad.Encode()
	r2.publishRaw(tally.ResultsSubject("r2", "p4", "pres-b"), string(bad.ID), b)
	r2.publishRaw(tally.ResultsSubject("r2", "p4", "pres-b"), "r2-garbage", []byte("{not json"))
	// A valid report stored under another precinct's subject is invalid.
	misfiled := r2.report("p3", "pres-a", 999, 999, true)
	mb, _ := misfiled.Encode()
	r2.publishRaw(tally.ResultsSubject("r2", "p4", "pres-b"), string(misfiled.ID), mb)
	last2 := h.publish(r2.report("p4", "pres-b", 120, 55, true))

	h.waitApplied(t, map[tally.RegionID]uint64{"r1": last1, "r2": last2, "r3": last3}, 10*time.Second)

	nat, _ := h.r.Result(tally.NationalContestID("President"))
	if nat.TotalVotes != 40+60+5+5+6+1+120+55+30+70 {
		t.Errorf("national total = %d, want %d", nat.TotalVotes, 40+60+5+5+6+1+120+55+30+70)
	}
	if len(nat.Components) != 2 || nat.Candidates[0].ID != "dem" || nat.Candidates[0].Votes != 40+5+6+120+30 {
		t.Errorf("national = %+v", nat)
	}
	want := map[tally.RegionID]uint64{"r1": last1, "r2": last2, "r3": last3}
	waitFor(t, 2*time.Second, "statuses caught up", func() error {
		for _, st := range h.r.Statuses() {
			if st.Status != tally.StatusLive || st.Applied != want[st.ID] || st.LastSeq != want[st.ID] ||
				!st.Leaf || st.Lag != 0 || st.LastUpdate.IsZero() || st.LastActive.IsZero() {
				return fmt.Errorf("status %s = %+v, want live, leaf, applied and last seq %d", st.ID, st, want[st.ID])
			}
		}
		return nil
	})
}

func TestReplayIsIdempotent(t *testing.T) {
	h := mustStartHub(t)
	r1 := h.regions["r1"]
	var msgs []struct {
		seq  uint64
		subj string
		data []byte
	}
	for i, p := range []tally.PrecinctID{"p1", "p2", "p1"} {
		rep := r1.report(p, "pres-a", int64(10*(i+1)), 3, false)
		b, _ := rep.Encode()
		seq := h.publish(rep)
		msgs = append(msgs, struct {
			seq  uint64
			subj string
			data []byte
		}{seq, tally.ResultsSubject("r1", p, "pres-a"), b})
	}
	h.waitApplied(t, map[tally.RegionID]uint64{"r1": msgs[2].seq}, 10*time.Second)

	// The same sequence applied again changes nothing.
	for _, m := range msgs {
		if h.r.apply("r1", m.seq, m.subj, m.data) {
			t.Errorf("apply(seq %d) again changed the totals", m.seq)
		}
	}
	// A consumer restarted from the start redelivers everything; the totals
	// stay exact. A report published afterwards shows the replay is done.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.r.startConsumer(ctx, "r1", 1); err != nil {
		t.Fatal(err)
	}
	last := h.publish(r1.report("p2", "pres-a", 1, 2, true))
	h.waitApplied(t, map[tally.RegionID]uint64{"r1": last}, 10*time.Second)
	if got := h.r.totals.Events(); got != 4 {
		t.Errorf("events applied = %d, want 4", got)
	}
}

func TestRegionOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: waits for the hub to re-source a restarted region")
	}
	h := mustStartHub(t)
	r2, r3 := h.regions["r2"], h.regions["r3"]
	h.publish(r2.report("p4", "pres-b", 100, 50, false))
	s5 := h.publish(r3.report("p5", "pres-b", 30, 70, false))
	h.waitApplied(t, map[tally.RegionID]uint64{"r3": s5}, 10*time.Second)

	// Cut r3 off: it goes offline within OfflineAfter (plus a health check
	// and a publish), and pres-b shows partial with r3's last-known totals.
	cut := time.Now()
	r3.stop()
	waitStatus(t, h.r, h.gw, "r3", tally.StatusOffline, h.r.cfg.OfflineAfter+2*time.Second)
	t.Logf("r3 offline after %s", time.Since(cut).Round(time.Millisecond))
	if st := statusOf(h.r.Statuses(), "r3"); st.Leaf || st.Applied != s5 || st.Since.Before(cut) {
		t.Errorf("r3 status = %+v, want leaf down, applied %d, since after %s", st, s5, cut)
	}
	waitFor(t, 2*time.Second, "pres-b partial", func() error {
		for _, src := range []string{"memory", "bucket"} {
			res, _ := h.r.Result("pres-b")
			if src == "bucket" {
				var err error
				if res, err = h.gw.contest("pres-b"); err != nil {
					return err
				}
			}
			if !res.Partial {
				return fmt.Errorf("%s: pres-b not partial", src)
			}
			for _, rr := range res.Regions {
				if rr.ID == "r3" && (rr.Status != tally.StatusOffline || rr.Votes["dem"] != 30 || rr.Votes["rep"] != 70) {
					return fmt.Errorf("%s: r3 part = %+v, want offline with 30/70", src, rr)
				}
				if rr.ID == "r2" && rr.Status != tally.StatusLive {
					return fmt.Errorf("%s: r2 part = %+v, want live", src, rr)
				}
			}
			if err := h.m.check(res); err != nil {
				return err
			}
		}
		nat, err := h.gw.contest(tally.NationalContestID("President"))
		if err != nil {
			return err
		}
		if !nat.Partial {
			return errors.New("national view not partial")
		}
		res, _ := h.r.Result("pres-a")
		if res.Partial {
			return errors.New("pres-a partial, but r3 has no precinct in it")
		}
		return nil
	})

	// While cut off, r3 keeps taking reports (restarted without its link).
	r3.start("")
	rep := r3.report("p5", "pres-b", 35, 80, false)
	seqA := r3.publish(rep)
	corr := r3.report("p5", "pres-b", 36, 80, true)
	corr.Correction = &tally.Correction{Supersedes: rep.ID, SupersedesSeq: seqA, Reason: "recount"}
	last3 := r3.publish(corr)
	h.m.add(rep)
	h.m.add(corr)
	r3.stop()
	if got := h.r.Applied("r3"); got != s5 {
		t.Fatalf("Applied(r3) = %d while cut off, want %d", got, s5)
	}

	// Back on the link: the mirror resumes, the backlog is applied exactly
	// once and r3 is live again.
	back := time.Now()
	r3.start(leafURL(h.r))
	last2 := h.publish(r2.report("p4", "pres-b", 110, 60, true))
	h.waitApplied(t, map[tally.RegionID]uint64{"r2": last2, "r3": last3}, 30*time.Second)
	waitStatus(t, h.r, h.gw, "r3", tally.StatusLive, 5*time.Second)
	t.Logf("r3 caught up and live after %s", time.Since(back).Round(time.Millisecond))
	res, _ := h.gw.contest("pres-b")
	if res.Partial {
		t.Errorf("pres-b still partial: %+v", res)
	}
	// The status's sequences are those of the latest health check (every
	// second), which may have run just before the backlog was applied.
	waitFor(t, 5*time.Second, "r3 status up to date", func() error {
		if st := statusOf(h.r.Statuses(), "r3"); !st.Leaf || st.Applied != last3 || st.LastSeq != last3 {
			return fmt.Errorf("r3 status = %+v, want leaf up, applied and last seq %d", st, last3)
		}
		return nil
	})
}
