package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// waitCheckpoint waits until region id's latest compared checkpoint is the
// one stored at seq, in memory and in the bucket, and returns the status.
func (h *hub) waitCheckpoint(t *testing.T, id tally.RegionID, seq uint64) tally.RegionStatus {
	t.Helper()
	var st tally.RegionStatus
	waitFor(t, 10*time.Second, fmt.Sprintf("checkpoint %s@%d", id, seq), func() error {
		st = statusOf(h.r.Statuses(), id)
		if st.Checkpoint == nil || st.Checkpoint.StreamSeq != seq {
			return fmt.Errorf("memory: checkpoint %+v", st.Checkpoint)
		}
		sts, err := h.gw.regions()
		if err != nil {
			return err
		}
		if b := statusOf(sts, id); b.Checkpoint == nil || b.Checkpoint.StreamSeq != seq || b.Reconciled != st.Reconciled {
			return fmt.Errorf("bucket: checkpoint %+v, reconciled %v", b.Checkpoint, b.Reconciled)
		}
		return nil
	})
	return st
}

// waitContest waits until contest c's result in memory and in the bucket
// has complete and reconciled as wanted.
func (h *hub) waitContest(t *testing.T, c tally.ContestID, complete, reconciled bool) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%s complete=%v reconciled=%v", c, complete, reconciled), func() error {
		mem, _ := h.r.Result(c)
		kv, err := h.gw.contest(c)
		if err != nil {
			return err
		}
		for src, res := range map[string]tally.ContestResult{"memory": mem, "bucket": kv} {
			if res.Complete != complete || res.Reconciled != reconciled {
				return fmt.Errorf("%s: complete=%v reconciled=%v", src, res.Complete, res.Reconciled)
			}
		}
		return nil
	})
}

// A contest becomes complete when all its precincts have a complete report,
// and reconciled once every region of it has a matching checkpoint covering
// all its events; an event after the checkpoint undoes that until the next.
func TestCheckpointsReconcile(t *testing.T) {
	h := mustStartHub(t)
	e := h.m.e
	r1, r2 := h.regions["r1"], h.regions["r2"]
	nat := tally.NationalContestID("President")

	h.publish(r1.report("p1", "pres-a", 10, 20, true))
	h.publish(r1.report("p2", "pres-a", 5, 5, false))
	s3 := h.publish(r2.report("p3", "pres-a", 7, 1, true))
	h.waitApplied(t, map[tally.RegionID]uint64{"r2": s3}, 10*time.Second)
	h.waitContest(t, "pres-a", false, false)

	// r1 checks out, but pres-a is not complete, nor r2 checked.
	c1 := r1.checkpoint(e, nil)
	if st := h.waitCheckpoint(t, "r1", c1); !st.Checkpoint.Matched || st.Alert != nil || !st.Reconciled {
		t.Fatalf("r1 = %+v, checkpoint %+v: want matched and reconciled", st, st.Checkpoint)
	}
	h.waitContest(t, "pres-a", false, false)

	// All of pres-a complete: complete, not yet reconciled.
	l1 := h.publish(r1.report("p2", "pres-a", 6, 5, true))
	h.waitApplied(t, map[tally.RegionID]uint64{"r1": l1}, 10*time.Second)
	h.waitContest(t, "pres-a", true, false)
	if st := statusOf(h.r.Statuses(), "r1"); st.Reconciled {
		t.Errorf("r1 reconciled with an event past its checkpoint: %+v", st)
	}

	c1 = r1.checkpoint(e, nil)
	h.waitCheckpoint(t, "r1", c1)
	h.waitContest(t, "pres-a", true, false) // r2 not checked yet
	c2 := r2.checkpoint(e, nil)
	if st := h.waitCheckpoint(t, "r2", c2); !st.Reconciled {
		t.Fatalf("r2 = %+v: want reconciled", st)
	}
	h.waitContest(t, "pres-a", true, true)
	h.waitContest(t, nat, false, false) // pres-b has not reported

	// A correction in r2 reopens it until r2's next checkpoint.
	corr := r2.report("p3", "pres-a", 8, 1, true)
	corr.Correction = &tally.Correction{Supersedes: h.m.latest["p3"]["pres-a"].ID, SupersedesSeq: s3, Reason: "recount"}
	h.publish(corr)
	h.waitContest(t, "pres-a", true, false)
	c2 = r2.checkpoint(e, nil)
	h.waitCheckpoint(t, "r2", c2)
	h.waitContest(t, "pres-a", true, true)
	if err := checkAll(h.r, h.gw, h.m); err != nil {
		t.Fatal(err)
	}

	// A region that is not live is not reconciled.
	r1.stop()
	waitStatus(t, h.r, h.gw, "r1", tally.StatusOffline, 10*time.Second)
	h.waitContest(t, "pres-a", true, false)
	if st := statusOf(h.r.Statuses(), "r1"); st.Reconciled || !st.Checkpoint.Matched {
		t.Errorf("offline r1 = %+v: want its checkpoint matched, not reconciled", st)
	}
}

// waitRegionIn waits until region reg's part of contest c, in memory and
// in the bucket, has reconciled as wanted, and returns the bucket entry's
// revision.
func (h *hub) waitRegionIn(t *testing.T, c tally.ContestID, reg tally.RegionID, reconciled bool) uint64 {
	t.Helper()
	var rev uint64
	waitFor(t, 10*time.Second, fmt.Sprintf("%s in %s reconciled=%v", reg, c, reconciled), func() error {
		mem, _ := h.r.Result(c)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ent, err := h.gw.kv.Get(ctx, tally.ContestKey(c))
		if err != nil {
			return err
		}
		var kv tally.ContestResult
		if err := json.Unmarshal(ent.Value(), &kv); err != nil {
			return err
		}
		for src, res := range map[string]tally.ContestResult{"memory": mem, "bucket": kv} {
			i := slices.IndexFunc(res.Regions, func(rr tally.RegionResult) bool { return rr.ID == reg })
			if i < 0 || res.Regions[i].Reconciled != reconciled {
				return fmt.Errorf("%s: regions %+v", src, res.Regions)
			}
		}
		rev = ent.Revision()
		return nil
	})
	return rev
}

// A region's next report makes it unreconciled in that report's contest
// only, until its next checkpoint covers the report: its other contests
// keep the flag, and their published values do not change.
func TestReconciledPerContest(t *testing.T) {
	h := mustStartHub(t)
	e := h.m.e
	r2 := h.regions["r2"] // p3 in pres-a, p4 in pres-b
	h.publish(r2.report("p3", "pres-a", 7, 1, true))
	s := h.publish(r2.report("p4", "pres-b", 4, 2, true))
	h.waitApplied(t, map[tally.RegionID]uint64{"r2": s}, 10*time.Second)
	if st := h.waitCheckpoint(t, "r2", r2.checkpoint(e, nil)); !st.Reconciled {
		t.Fatalf("r2 = %+v: want reconciled", st)
	}
	h.waitRegionIn(t, "pres-a", "r2", true)
	revB := h.waitRegionIn(t, "pres-b", "r2", true)

	s = h.publish(r2.report("p3", "pres-a", 8, 1, true))
	h.waitApplied(t, map[tally.RegionID]uint64{"r2": s}, 10*time.Second)
	h.waitRegionIn(t, "pres-a", "r2", false)
	if st := statusOf(h.r.Statuses(), "r2"); st.Reconciled {
		t.Errorf("r2 reconciled with an event past its checkpoint: %+v", st)
	}
	time.Sleep(5 * h.r.cfg.PublishInterval) // a change would have been published by now
	if rev := h.waitRegionIn(t, "pres-b", "r2", true); rev != revB {
		t.Errorf("pres-b has a new value (revision %d, was %d) with nothing of it changed", rev, revB)
	}

	if st := h.waitCheckpoint(t, "r2", r2.checkpoint(e, nil)); !st.Reconciled {
		t.Fatalf("r2 = %+v: want reconciled", st)
	}
	h.waitRegionIn(t, "pres-a", "r2", true)
	if err := checkAll(h.r, h.gw, h.m); err != nil {
		t.Fatal(err)
	}
}

// A checkpoint that differs from what the hub derived raises an alert that
// stays, names the difference, and is kept in the audit stream with every
// other checkpoint and status change.
func TestCheckpointMismatch(t *testing.T) {
	h := mustStartHub(t)
	e := h.m.e
	r1, r2, r3 := h.regions["r1"], h.regions["r2"], h.regions["r3"]
	h.publish(r1.report("p1", "pres-a", 10, 20, true))
	h.publish(r2.report("p4", "pres-b", 100, 50, true))
	h.publish(r3.report("p5", "pres-b", 30, 70, true))
	// An invalid event is hashed too: the chain covers what is stored.
	r3.publishRaw(tally.ResultsSubject("r3", "p5", "pres-b"), "r3-garbage", []byte("{not json"))

	tests := []struct {
		name   string
		g      *region
		edit   func(*tally.Checkpoint)
		want   string // in Mismatch; "" = matched
		reconc bool
	}{
		{"Matches", r3, nil, "", true},
		{"Votes", r1, func(cp *tally.Checkpoint) { cp.Contests[0].Votes["dem"]++ }, "candidate dem: region 11 votes, hub 10", false},
		{"LaterMatchKeepsAlert", r1, nil, "", false},
		{"Events", r2, func(cp *tally.Checkpoint) { cp.Events-- }, "events: region counted 0, hub 1", false},
		{"Hash", r3, func(cp *tally.Checkpoint) { cp.Hash = strings.Repeat("0", 64) }, "hash", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq := tt.g.checkpoint(e, tt.edit)
			st := h.waitCheckpoint(t, tt.g.id, seq)
			if tt.want == "" && !st.Checkpoint.Matched {
				t.Errorf("checkpoint %+v: want matched", st.Checkpoint)
			}
			if tt.want != "" && (st.Checkpoint.Matched || !strings.Contains(st.Checkpoint.Mismatch, tt.want)) {
				t.Errorf("checkpoint mismatch %q, want it to contain %q", st.Checkpoint.Mismatch, tt.want)
			}
			if st.Reconciled != tt.reconc {
				t.Errorf("reconciled = %v, want %v", st.Reconciled, tt.reconc)
			}
			if !st.Checkpoint.Matched && (st.Alert == nil || st.Alert.StreamSeq > seq) {
				t.Errorf("alert = %+v, want set", st.Alert)
			}
		})
	}
	// The first alert stays.
	if st := statusOf(h.r.Statuses(), "r1"); st.Alert == nil || !strings.Contains(st.Alert.Mismatch, "candidate dem") {
		t.Errorf("r1 alert = %+v, want the votes mismatch", st.Alert)
	}

	// A checkpoint whose seq is not the one before its own is a mismatch,
	// and so is one that does not decode.
	r2.publish(r2.report("p4", "pres-b", 101, 50, true))
	seq := r2.checkpoint(e, func(cp *tally.Checkpoint) { cp.Seq-- })
	if st := h.waitCheckpoint(t, "r2", seq); st.Checkpoint.Matched || !strings.Contains(st.Checkpoint.Mismatch, "covers seq") {
		t.Errorf("r2 checkpoint = %+v, want a seq mismatch", st.Checkpoint)
	}
	bad := r2.publishRaw(tally.CheckpointSubject("r2"), "r2-bad-checkpoint", []byte(`{"region":"r2"}`))
	if st := h.waitCheckpoint(t, "r2", bad); st.Checkpoint.Matched || st.Checkpoint.Mismatch == "" {
		t.Errorf("r2 checkpoint = %+v, want undecodable", st.Checkpoint)
	}

	// The audit stream holds each checkpoint once, and the regions' status
	// changes.
	waitFor(t, 5*time.Second, "audit records", func() error {
		recs := auditRecords(t, h.r)
		cps, live := map[string]int{}, map[tally.RegionID]bool{}
		for _, rec := range recs {
			switch {
			case rec.cp.Region != "":
				cps[fmt.Sprintf("%s@%d", rec.cp.Region, rec.cp.StreamSeq)]++
			case rec.status.Status == tally.StatusLive && rec.status.Was == tally.StatusOffline:
				live[rec.status.Region] = true
			}
		}
		if len(cps) != len(tests)+2 {
			return fmt.Errorf("%d checkpoints in the audit stream, want %d: %v", len(cps), len(tests)+2, cps)
		}
		for k, n := range cps {
			if n != 1 {
				return fmt.Errorf("checkpoint %s recorded %d times", k, n)
			}
		}
		if len(live) != 3 {
			return errors.New("not every region's offline->live change recorded")
		}
		return nil
	})
}
