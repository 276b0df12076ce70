package reconciler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
)

// catchUpBacklog is how many events a region stores while cut off in
// BenchmarkCatchUp.
const catchUpBacklog = 100_000

// publishBacklog stores n reports of the region's precincts in pres-a, as
// its intake does (a message id each), and returns the last sequence.
func (g *region) publishBacklog(tb testing.TB, n int) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	precincts := []tally.PrecinctID{"p1", "p2"}
	for i := range n {
		rep := g.report(precincts[i%2], "pres-a", int64(1000+i), int64(900+i), i >= n-2)
		b, err := rep.Encode()
		if err != nil {
			tb.Fatal(err)
		}
		msg := &nats.Msg{Subject: tally.ResultsSubject(g.id, rep.Precinct, rep.Contest), Data: b}
		if _, err := g.js.PublishMsgAsync(msg, jetstream.WithMsgID(string(rep.ID))); err != nil {
			tb.Fatal(err)
		}
		if i%5000 == 4999 {
			select {
			case <-g.js.PublishAsyncComplete():
			case <-ctx.Done():
				tb.Fatal("backlog publish timed out")
			}
		}
	}
	select {
	case <-g.js.PublishAsyncComplete():
	case <-ctx.Done():
		tb.Fatal("backlog publish timed out")
	}
	return g.lastSeq()
}

// BenchmarkCatchUp measures how fast a region's backlog reaches the
// national totals once its link to the hub is back: the region is mirrored,
// cut off, stores catchUpBacklog reports, and comes back. It reports, in the
// same run, how long after the region's restart the mirror took its first
// backlog event (resume_s), then, from that moment, the rate of the mirror
// alone (until it holds the whole backlog) and of the national totals (until
// the reconciler has applied all of it), and their ratio.
//
//	go test -run '^$' -bench CatchUp -benchtime 1x -count 3 ./reconciler
func BenchmarkCatchUp(b *testing.B) {
	for _, plain := range []bool{false, true} {
		name := "DurableMirror"
		if plain {
			name = "PlainMirror"
		}
		b.Run(name, func(b *testing.B) {
			var resume, mirrorRate, nationalRate float64
			for range b.N {
				b.StopTimer()
				e := testElection(b)
				cfg := testConfig(b, e)
				cfg.Logger = zerolog.Nop()
				cfg.durableMirrors = !plain
				r := MustOpenReconciler(b, cfg)
				g := MustStartRegion(b, "r1", leafURL(r))
				first := g.publish(g.report("p1", "pres-a", 1, 1, false))
				waitFor(b, 15*time.Second, "first event", func() error {
					if r.Applied("r1") != first {
						return fmt.Errorf("applied %d", r.Applied("r1"))
					}
					return nil
				})
				g.stop()
				g.start("")
				last := g.publishBacklog(b, catchUpBacklog)
				g.stop()

				b.StartTimer()
				start := time.Now()
				g.start(leafURL(r))
				var resumed, mirrored, applied time.Duration
				waitFor(b, 5*time.Minute, "backlog applied", func() error {
					if resumed == 0 {
						if seq, err := mirrorLastSeq(r, "r1"); err == nil && seq > first {
							resumed = time.Since(start)
						}
					}
					if mirrored == 0 {
						if seq, err := mirrorLastSeq(r, "r1"); err == nil && seq >= last {
							mirrored = time.Since(start)
						}
					}
					if applied == 0 && r.Applied("r1") >= last {
						applied = time.Since(start)
					}
					if mirrored == 0 || applied == 0 {
						return fmt.Errorf("mirrored %s, applied %s", mirrored, applied)
					}
					return nil
				})
				b.StopTimer()
				n := float64(last - first)
				resume += resumed.Seconds()
				mirrorRate += n / (mirrored - resumed).Seconds()
				nationalRate += n / (applied - resumed).Seconds()
				if err := r.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(resume/float64(b.N), "resume_s")
			b.ReportMetric(mirrorRate/float64(b.N), "mirror_events/s")
			b.ReportMetric(nationalRate/float64(b.N), "national_events/s")
			b.ReportMetric(nationalRate/mirrorRate, "national/mirror")
		})
	}
}

// BenchmarkApply measures the reconciler's apply path alone (decode,
// validate, chain, totals), without NATS: the ceiling of the national rate.
func BenchmarkApply(b *testing.B) {
	e := testElection(b)
	r, err := New(Config{Election: e, NATS: NATSConfig{StoreDir: b.TempDir()}, Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	g := &region{id: "r1", tb: b}
	const n = 1000
	subjects, datas := make([]string, n), make([][]byte, n)
	for i := range n {
		rep := g.report([]tally.PrecinctID{"p1", "p2"}[i%2], "pres-a", int64(1000+i), int64(900+i), false)
		datas[i], _ = rep.Encode()
		subjects[i] = tally.ResultsSubject("r1", rep.Precinct, rep.Contest)
	}
	b.ReportAllocs()
	var seq uint64
	for b.Loop() {
		seq++
		i := int(seq % n)
		r.apply("r1", seq, subjects[i], datas[i])
	}
}
