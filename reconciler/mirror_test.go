package reconciler

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// mirrorLastSeq returns the last sequence in the hub's mirror of reg.
func mirrorLastSeq(r *Reconciler, reg tally.RegionID) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, tally.MirrorStream(reg))
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.LastSeq, nil
}

// waitMirror waits until the hub's mirror of reg holds seq and returns how
// long after since that was.
func waitMirror(tb testing.TB, r *Reconciler, reg tally.RegionID, seq uint64, since time.Time, timeout time.Duration) time.Duration {
	tb.Helper()
	var took time.Duration
	waitFor(tb, timeout, fmt.Sprintf("mirror of %s at seq %d", reg, seq), func() error {
		last, err := mirrorLastSeq(r, reg)
		if err != nil {
			return err
		}
		if last < seq {
			return fmt.Errorf("mirror at %d", last)
		}
		took = time.Since(since)
		return nil
	})
	return took
}

// TestMirrorResume measures how long after its link is back a region's
// mirror takes new events again: after a short region outage, after one
// longer than the server's 10 s source health check, and after a hub
// restart on its store (the hub killed, down for 2 s). The region's leaf
// link retries every second, as a region node's does. It measures the
// plain mirror (the one used) and the durable one (see mirror.go), and
// takes minutes, so it runs only with TALLY_MEASURE_MIRRORS=1:
//
//	TALLY_MEASURE_MIRRORS=1 go test -run TestMirrorResume -v ./reconciler
func TestMirrorResume(t *testing.T) {
	if os.Getenv("TALLY_MEASURE_MIRRORS") != "1" {
		t.Skip("a measurement of minutes: set TALLY_MEASURE_MIRRORS=1")
	}
	for _, plain := range []bool{true, false} {
		name := "Durable"
		if plain {
			name = "Plain"
		}
		t.Run(name, func(t *testing.T) {
			e := testElection(t)
			cfg := restartableConfig(t, e)
			cfg.durableMirrors = !plain
			hub1 := MustOpenReconciler(t, cfg)
			g := &region{id: "r1", dir: t.TempDir(), tb: t, reconnect: time.Second}
			g.start(leafURL(hub1))
			t.Cleanup(g.stop)
			seq := g.publish(g.report("p1", "pres-a", 1, 1, false))
			waitMirror(t, hub1, "r1", seq, time.Now(), 10*time.Second)

			bound := 15 * time.Second // durable: the 5 s reset wait, then a retry
			if plain {
				bound = 90 * time.Second // the 30 s create wait, then a backoff
			}
			for _, down := range []time.Duration{3 * time.Second, 12 * time.Second} {
				g.stop()
				time.Sleep(down) // the outage itself
				g.start(leafURL(hub1))
				back := time.Now()
				seq = g.publish(g.report("p1", "pres-a", 2, 2, false))
				took := waitMirror(t, hub1, "r1", seq, back, bound)
				t.Logf("%s mirror: region down %s: resumed %s after the region came back", name, down, took.Round(10*time.Millisecond))
			}

			// Whether the region's link is back before the recovered mirror
			// asks for its consumer varies: restart five times.
			hub := hub1
			for i := range 5 {
				hub.crash(t)
				seq = g.publish(g.report("p1", "pres-a", int64(4+i), 3, false))
				time.Sleep(2 * time.Second)
				start := time.Now()
				hub = MustOpenReconciler(t, cfg)
				opened := time.Since(start)
				took := waitMirror(t, hub, "r1", seq, start, bound)
				t.Logf("%s mirror: hub restart %d: Open took %s, mirror resumed %s after Open began", name, i+1, opened.Round(10*time.Millisecond), took.Round(10*time.Millisecond))
			}
		})
	}
}

// A hub whose store goes back in time (restored from a backup, or its last
// writes lost with the machine) finds its durable mirror behind the region's
// consumer, and moves the consumer back instead of letting the mirror skip
// the events in between.
func TestDurableMirrorBehindConsumer(t *testing.T) {
	e := testElection(t)
	cfg := restartableConfig(t, e)
	cfg.durableMirrors = true
	hub1 := MustOpenReconciler(t, cfg)
	g := MustStartRegion(t, "r1", leafURL(hub1))
	m := newModel(e)
	publish := func(n int) uint64 {
		var seq uint64
		for i := range n {
			rep := g.report([]tally.PrecinctID{"p1", "p2"}[i%2], "pres-a", int64(10+i), int64(i), false)
			seq = g.publish(rep)
			m.add(rep)
		}
		return seq
	}
	seq := publish(3)
	waitFor(t, 10*time.Second, "applied", func() error {
		if got := hub1.Applied("r1"); got != seq {
			return fmt.Errorf("applied %d", got)
		}
		return nil
	})
	if err := hub1.Close(); err != nil {
		t.Fatal(err)
	}
	backup := t.TempDir()
	if err := os.CopyFS(backup, os.DirFS(cfg.NATS.StoreDir)); err != nil {
		t.Fatal(err)
	}

	hub2 := MustOpenReconciler(t, cfg)
	seq = publish(3)
	waitFor(t, 15*time.Second, "acknowledged", func() error {
		c, err := g.js.PushConsumer(context.Background(), tally.ResultsStream, mirrorConsumer)
		if err != nil {
			return err
		}
		if got := c.CachedInfo().AckFloor.Stream; got != seq {
			return fmt.Errorf("consumer ack floor %d", got)
		}
		return nil
	})
	if err := hub2.Close(); err != nil {
		t.Fatal(err)
	}

	cfg.NATS.StoreDir = backup
	hub3 := MustOpenReconciler(t, cfg)
	seq = publish(1)
	waitFor(t, 20*time.Second, "caught up", func() error {
		if got := hub3.Applied("r1"); got != seq {
			return fmt.Errorf("applied %d", got)
		}
		return nil
	})
	want := tally.NewTotals(e)
	g.recompute(e, want)
	if got, _ := hub3.stateJSON(t); !bytes.Equal(got, mustMarshal(t, want.State())) {
		t.Errorf("totals:\n got %s\nwant %s", got, mustMarshal(t, want.State()))
	}
}
