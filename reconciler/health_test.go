package reconciler

import (
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

func TestRegionStatus(t *testing.T) {
	now := time.Now()
	const after = 5 * time.Second
	tests := []struct {
		name       string
		ms         mirrorState
		applied    uint64
		want       string
		wantBehind uint64
	}{
		{"Live", mirrorState{active: time.Second, leaf: true, lastSeq: 10}, 10, tally.StatusLive, 0},
		{"NeverHeard", mirrorState{active: -1, leaf: true}, 0, tally.StatusOffline, 0},
		{"LinkDown", mirrorState{active: 100 * time.Millisecond, leaf: false, lastSeq: 10}, 10, tally.StatusOffline, 0},
		{"SilentTooLong", mirrorState{active: after + time.Millisecond, leaf: true, lastSeq: 10}, 10, tally.StatusOffline, 0},
		{"NotHeardSinceLinkCameBack", mirrorState{active: time.Second, leaf: true, linkUp: now.Add(-500 * time.Millisecond)}, 0, tally.StatusOffline, 0},
		{"HeardSinceLinkCameBack", mirrorState{active: 100 * time.Millisecond, leaf: true, linkUp: now.Add(-500 * time.Millisecond)}, 0, tally.StatusLive, 0},
		{"MirrorLag", mirrorState{active: 0, leaf: true, lag: 2000, lastSeq: 10}, 10, tally.StatusLagging, 2000},
		{"UnappliedBacklog", mirrorState{active: 0, leaf: true, lag: 600, lastSeq: 1000}, 500, tally.StatusLagging, 1100},
		{"AtThreshold", mirrorState{active: 0, leaf: true, lag: 500, lastSeq: 1000}, 500, tally.StatusLive, 1000},
		{"OfflineWinsOverLag", mirrorState{active: -1, leaf: false, lag: 5000}, 0, tally.StatusOffline, 5000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, behind := regionStatus(tt.ms, tt.applied, now, after, 1000)
			if got != tt.want || behind != tt.wantBehind {
				t.Errorf("regionStatus() = %q, %d, want %q, %d", got, behind, tt.want, tt.wantBehind)
			}
		})
	}
}

// A region node's link is recognised by its JetStream domain, whatever its
// server is called.
func TestLeafMatchedByDomain(t *testing.T) {
	e := testElection(t)
	r := MustOpenReconciler(t, testConfig(t, e))
	gw := MustConnectGateway(t, r)
	g := &region{id: "r2", name: "elections-office-7", dir: t.TempDir(), tb: t}
	g.start(leafURL(r))
	t.Cleanup(g.stop)
	waitStatus(t, r, gw, "r2", tally.StatusLive, 10*time.Second)
	if st := statusOf(r.Statuses(), "r2"); !st.Leaf {
		t.Errorf("r2 = %+v, want leaf up", st)
	}
	for _, id := range []tally.RegionID{"r1", "r3"} {
		if st := statusOf(r.Statuses(), id); st.Leaf || st.Status != tally.StatusOffline {
			t.Errorf("%s = %+v, want offline without leaf", id, st)
		}
	}
}
