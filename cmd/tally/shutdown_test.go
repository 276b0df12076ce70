package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/regional"
)

// stop sends SIGTERM and waits, at most within, for the process to exit;
// it fails the test unless the process exited by itself with status 0.
func (h *hubProcess) stop(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	start := time.Now()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.exited:
	case <-time.After(within):
		_ = h.cmd.Process.Signal(syscall.SIGKILL)
		<-h.exited
		t.Fatalf("hub still running %s after SIGTERM", within)
	}
	took := time.Since(start)
	if !h.cmd.ProcessState.Success() {
		b, _ := os.ReadFile(filepath.Join(h.dir, fmt.Sprintf("hub-%d.log", h.starts)))
		t.Fatalf("hub exited with %v after SIGTERM:\n%s", h.cmd.ProcessState, b)
	}
	h.cmd = nil
	return took
}

// TestHubSIGTERM stops `tally hub`, a separate process of the built binary,
// with SIGTERM in the middle of a replay and again once it has applied
// everything. Each time it must exit by itself, with status 0, within the
// shutdown bound; after the first restart it must converge to the exact
// totals, and after the second it must hold them at once, before its
// mirrors are back: its last snapshot, taken at the stop, lost nothing.
// (The region's SIGTERM is tested by TestRegionCrash.)
func TestHubSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts processes")
	}
	bin := MustBuildTally(t)
	le, err := loadElection(ElectionSource{Results: "bundled", Regions: 1})
	if err != nil {
		t.Fatal(err)
	}
	e := le.Election
	dir := t.TempDir()
	hub := &hubProcess{
		bin: bin, dir: dir, regions: 1,
		natsPort: freePort(t), leafPort: freePort(t), http: "127.0.0.1:" + strconv.Itoa(freePort(t)),
		password: "hub-sigterm", leafPassword: "leaf-sigterm",
	}
	hub.start(t)
	t.Cleanup(hub.kill)

	l := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)
	nodes := map[tally.RegionID]*regional.Node{}
	intake := map[tally.RegionID]string{}
	for _, r := range e.Regions {
		n, err := regional.New(regional.Config{
			Region:   r.ID,
			Election: e,
			NATS: regional.NATSConfig{
				StoreDir: filepath.Join(dir, "region-"+string(r.ID)),
				HubURL:   "nats-leaf://127.0.0.1:" + strconv.Itoa(hub.leafPort), HubUser: "leaf", HubPassword: hub.leafPassword,
				Sync: time.Minute,
			},
			HTTP:               regional.HTTPConfig{Addr: "127.0.0.1:0"},
			CheckpointInterval: 500 * time.Millisecond,
			Logger:             l.With().Str("region", string(r.ID)).Logger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = n.Open(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes[r.ID] = n
		intake[r.ID] = "http://" + n.HTTPAddr()
	}

	cfg := DefaultReplayConfig()
	const replayFor = 8 * time.Second
	cfg.Speed = strconv.FormatFloat(float64(cfg.Night)/float64(replayFor), 'f', 1, 64)
	cfg.Batch = 50
	cfg.Corrections = 0.05
	rp := &Replayer{Election: e, Counts: le.Counts, Intake: intake, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stats ReplayStats
	var replayErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		stats, replayErr = rp.Run(ctx)
	}()

	time.Sleep(replayFor / 3)
	took := hub.stop(t, shutdownTimeout+5*time.Second)
	t.Logf("hub stopped %s after SIGTERM, mid-replay", took.Round(time.Millisecond))
	hub.start(t)
	wg.Wait()
	if replayErr != nil {
		t.Fatalf("replay: %v", replayErr)
	}
	t.Logf("replay: %d reports, %d corrections", stats.Reports, stats.Corrections)

	api := "http://" + hub.http
	applied := func() string {
		var regs []tally.RegionStatus
		if st := getJSONQuiet(api+"/api/v1/regions", &regs); st != http.StatusOK {
			return fmt.Sprintf("GET /api/v1/regions: %d", st)
		}
		for _, rs := range regs {
			if want := nodes[rs.ID].AppliedSeq(); rs.Applied != want {
				return fmt.Sprintf("region %s: %s, applied %d of %d", rs.ID, rs.Status, rs.Applied, want)
			}
		}
		return ""
	}
	waitFor(t, 90*time.Second, applied)
	want := expectedTotals(e, le.Counts)
	if msg := checkTotals(t, api, want, true); msg != "" {
		t.Fatalf("after the restart: %s", msg)
	}

	// Stopped once everything is applied, the hub restarts on its last
	// snapshot: every region applied to its last sequence and the exact
	// totals, before any mirror has resumed.
	took = hub.stop(t, shutdownTimeout+5*time.Second)
	t.Logf("hub stopped %s after SIGTERM, all applied", took.Round(time.Millisecond))
	hub.start(t)
	waitFor(t, 10*time.Second, applied)
	if msg := checkTotals(t, api, want, true); msg != "" {
		t.Errorf("after the second restart: %s", msg)
	}
}
