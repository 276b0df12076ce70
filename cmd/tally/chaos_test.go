package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/regional"
)

var (
	chaosSeeds = flag.Int("chaos.seeds", 3, "how many seeds TestChaos runs (seeds 1..N)")
	chaosSeed  = flag.Uint64("chaos.seed", 0, "run TestChaos with this seed only")
)

// TestChaos runs a replay through three or more regions and a hub while
// links are cut, region nodes restarted and the hub, a separate OS process
// of the built binary, killed with SIGKILL and restarted, in an order drawn
// from a seed. At the end every contest's national totals must equal the
// totals recomputed from the regions' streams, every checkpoint must have
// matched, and every acknowledged report must be in its region's stream at
// its sequence. Rerun one seed with -chaos.seed=N; run more with
// -chaos.seeds=N.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	bin := MustBuildTally(t)
	seeds := make([]uint64, 0, *chaosSeeds)
	if *chaosSeed != 0 {
		seeds = append(seeds, *chaosSeed)
	} else {
		for s := 1; s <= *chaosSeeds; s++ {
			seeds = append(seeds, uint64(s))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			runChaos(t, bin, seed)
		})
	}
}

// chaosAction is one disruption at offset at of the replay.
type chaosAction struct {
	at     time.Duration
	kind   string // "cut", "restart-region", "kill-hub"
	region tally.RegionID
	span   time.Duration // how long a link stays cut or the hub stays down
}

func (a chaosAction) String() string {
	switch a.kind {
	case "kill-hub":
		return fmt.Sprintf("%s: kill -9 the hub, down %s", a.at, a.span)
	case "cut":
		return fmt.Sprintf("%s: cut %s's link for %s", a.at, a.region, a.span)
	}
	return fmt.Sprintf("%s: restart region %s", a.at, a.region)
}

// chaosPlan draws the disruptions of a replay lasting about d: at least one
// of each kind, then a few more.
func chaosPlan(rng *rand.Rand, e *tally.Election, d time.Duration) []chaosAction {
	kinds := []string{"cut", "restart-region", "kill-hub"}
	for n := 2 + rng.IntN(3); n > 0; n-- {
		kinds = append(kinds, []string{"cut", "restart-region", "kill-hub"}[rng.IntN(3)])
	}
	var plan []chaosAction
	for _, k := range kinds {
		a := chaosAction{
			at:     time.Duration(float64(d) * (0.05 + 0.85*rng.Float64())),
			kind:   k,
			region: e.Regions[rng.IntN(len(e.Regions))].ID,
			span:   time.Duration(500+rng.IntN(4000)) * time.Millisecond,
		}
		plan = append(plan, a)
	}
	sort.Slice(plan, func(i, j int) bool { return plan[i].at < plan[j].at })
	return plan
}

func runChaos(t *testing.T, bin string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0xc4a05))
	le, err := loadElection(ElectionSource{Results: "bundled", Regions: 2})
	if err != nil {
		t.Fatal(err)
	}
	e := le.Election
	const replayFor = 15 * time.Second
	plan := chaosPlan(rng, e, replayFor)
	var lines []string
	for _, a := range plan {
		lines = append(lines, a.String())
	}
	t.Logf("seed %d (rerun with -run 'TestChaos' -chaos.seed=%d):\n  %s", seed, seed, strings.Join(lines, "\n  "))
	failed := true
	defer func() {
		if failed || t.Failed() {
			t.Logf("seed %d failed; rerun with: go test ./cmd/tally -run TestChaos -chaos.seed=%d -v", seed, seed)
		}
	}()

	dir := t.TempDir()
	hub := &hubProcess{
		bin: bin, dir: dir,
		natsPort: freePort(t), leafPort: freePort(t), http: "127.0.0.1:" + strconv.Itoa(freePort(t)),
		password: "hub-" + strconv.FormatUint(seed, 10), leafPassword: "leaf-" + strconv.FormatUint(seed, 10),
	}
	hub.start(t)
	t.Cleanup(hub.kill)

	// Regions in this process, each linked to the hub through a proxy the
	// test can cut, each with a fixed intake address so that a restarted
	// node takes the replay's next request.
	l := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)
	regions := &chaosRegions{nodes: map[tally.RegionID]*regional.Node{}, cfgs: map[tally.RegionID]regional.Config{}, links: map[tally.RegionID]*linkProxy{}}
	intake := map[tally.RegionID]string{}
	for _, r := range e.Regions {
		p, err := newLinkProxy("127.0.0.1:" + strconv.Itoa(hub.leafPort))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		regions.links[r.ID] = p
		cfg := regional.Config{
			Region:   r.ID,
			Election: e,
			NATS: regional.NATSConfig{
				StoreDir: filepath.Join(dir, "region-"+string(r.ID)),
				HubURL:   "nats-leaf://" + p.Addr(), HubUser: "leaf", HubPassword: hub.leafPassword,
			},
			HTTP:               regional.HTTPConfig{Addr: "127.0.0.1:" + strconv.Itoa(freePort(t))},
			CheckpointInterval: 500 * time.Millisecond,
			Logger:             l.With().Str("region", string(r.ID)).Logger(),
		}
		regions.cfgs[r.ID] = cfg
		regions.open(t, r.ID)
		intake[r.ID] = "http://" + cfg.HTTP.Addr
	}
	t.Cleanup(regions.closeAll)

	// The replay: partial counts, finals, corrections, batches sent twice.
	var ackMu sync.Mutex
	acked := map[tally.EventID]ack{}
	cfg := DefaultReplayConfig()
	cfg.Speed = strconv.FormatFloat(float64(cfg.Night)/float64(replayFor), 'f', 1, 64)
	cfg.Seed = int64(seed)
	cfg.Batch = 50
	cfg.Corrections = 0.05
	cfg.Retries = 0.1
	rp := &Replayer{Election: e, Counts: le.Counts, Intake: intake, Config: cfg,
		Accepted: func(rep *tally.Report, seq uint64) {
			ackMu.Lock()
			defer ackMu.Unlock()
			acked[rep.ID] = ack{region: rep.Region, seq: seq}
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	replayDone := make(chan error, 1)
	var stats ReplayStats
	go func() {
		var err error
		stats, err = rp.Run(ctx)
		replayDone <- err
	}()

	start := time.Now()
	var chaosWG sync.WaitGroup
	for _, a := range plan {
		if d := time.Until(start.Add(a.at)); d > 0 {
			time.Sleep(d)
		}
		switch a.kind {
		case "cut":
			regions.links[a.region].SetUp(false)
			chaosWG.Add(1)
			time.AfterFunc(a.span, func() { regions.links[a.region].SetUp(true); chaosWG.Done() })
		case "restart-region":
			regions.restart(t, a.region)
		case "kill-hub":
			hub.kill()
			time.Sleep(a.span)
			hub.start(t)
		}
	}
	chaosWG.Wait()
	if err := <-replayDone; err != nil {
		t.Fatalf("replay: %v", err)
	}
	t.Logf("replay: %d reports (%d corrections, %d duplicates answered) in %s", stats.Reports, stats.Corrections, stats.Duplicates, stats.Elapsed.Round(time.Millisecond))

	// Everything back: wait until the hub has applied every region's whole
	// stream and the last checkpoint of each matched.
	api := "http://" + hub.http
	last := map[tally.RegionID]uint64{}
	waitFor(t, 90*time.Second, func() string {
		var regs []tally.RegionStatus
		if st := getJSONQuiet(api+"/api/v1/regions", &regs); st != http.StatusOK {
			return fmt.Sprintf("GET /api/v1/regions: %d", st)
		}
		for _, rs := range regs {
			n := regions.node(rs.ID)
			want := n.AppliedSeq()
			last[rs.ID] = want
			switch {
			case rs.Alert != nil:
				t.Fatalf("region %s: checkpoint alert: %+v", rs.ID, *rs.Alert)
			case rs.Status != tally.StatusLive || rs.Applied != want || !rs.Reconciled:
				return fmt.Sprintf("region %s: %s, applied %d of %d, reconciled %v", rs.ID, rs.Status, rs.Applied, want, rs.Reconciled)
			}
		}
		return ""
	})

	// The reference: totals recomputed from the regions' streams alone.
	streams := map[tally.RegionID][]*jetstream.RawStreamMsg{}
	for _, r := range e.Regions {
		streams[r.ID] = readStream(t, regions.node(r.ID))
		if uint64(len(streams[r.ID])) != last[r.ID] {
			t.Errorf("region %s: %d messages in the stream, last sequence %d", r.ID, len(streams[r.ID]), last[r.ID])
		}
	}
	ackMu.Lock()
	checkAgainstStreams(t, e, le.Counts, api, streams, acked, stats.Reports)
	ackMu.Unlock()
	// Every checkpoint the hub compared matched, and it compared some of
	// each region.
	cps := hub.auditCheckpoints(t)
	for _, r := range e.Regions {
		if cps[r.ID].matched == 0 || cps[r.ID].mismatched > 0 {
			t.Errorf("region %s: checkpoints matched %d, mismatched %d", r.ID, cps[r.ID].matched, cps[r.ID].mismatched)
		}
	}
	t.Logf("checkpoints compared: %v", cps)
	failed = t.Failed()
}

func votesOf(c tally.ContestResult) map[tally.CandidateID]int64 {
	m := map[tally.CandidateID]int64{}
	for _, cr := range c.Candidates {
		m[cr.ID] = cr.Votes
	}
	return m
}

// chaosRegions holds the in-process region nodes, which the chaos restarts.
type chaosRegions struct {
	mu    sync.Mutex
	nodes map[tally.RegionID]*regional.Node
	cfgs  map[tally.RegionID]regional.Config
	links map[tally.RegionID]*linkProxy
}

func (c *chaosRegions) node(r tally.RegionID) *regional.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[r]
}

func (c *chaosRegions) open(t *testing.T, r tally.RegionID) {
	t.Helper()
	n, err := regional.New(c.cfgs[r])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Open(ctx); err != nil {
		t.Fatalf("open region %s: %v", r, err)
	}
	c.mu.Lock()
	c.nodes[r] = n
	c.mu.Unlock()
}

func (c *chaosRegions) restart(t *testing.T, r tally.RegionID) {
	t.Helper()
	if err := c.node(r).Close(); err != nil {
		t.Errorf("close region %s: %v", r, err)
	}
	c.open(t, r)
}

func (c *chaosRegions) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		n.Close()
	}
}

// readStream reads every message of a region node's RESULTS stream, in
// order.
func readStream(t *testing.T, n *regional.Node) []*jetstream.RawStreamMsg {
	t.Helper()
	js := mustRegionJS(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, tally.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

// hubProcess is `tally hub` running as a separate OS process, on fixed ports
// and one store, so that it can be killed and started again.
type hubProcess struct {
	bin, dir               string
	regions                int // per state; 0 means 2
	natsPort, leafPort     int
	http                   string
	password, leafPassword string
	mu                     sync.Mutex
	cmd                    *exec.Cmd
	exited                 chan struct{}
	starts                 int
}

func (h *hubProcess) start(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.starts++
	logPath := filepath.Join(h.dir, fmt.Sprintf("hub-%d.log", h.starts))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	regions := h.regions
	if regions == 0 {
		regions = 2
	}
	cmd := exec.Command(h.bin, "hub", "--results", "bundled", "--regions", strconv.Itoa(regions),
		"--nats-port", strconv.Itoa(h.natsPort), "--leaf-port", strconv.Itoa(h.leafPort),
		"--store", filepath.Join(h.dir, "hub"), "--http", h.http, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "TALLY_NATS_PASSWORD="+h.password, "TALLY_NATS_LEAF_PASSWORD="+h.leafPassword)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.cmd = cmd
	exited := make(chan struct{})
	h.exited = exited
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get("http://" + h.http + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("hub exited at start:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("hub not up after 60s:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (h *hubProcess) kill() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.exited
	h.cmd = nil
}

type checkpointCount struct{ matched, mismatched int }

// auditCheckpoints reads the hub's audit stream and counts the checkpoint
// comparisons per region.
func (h *hubProcess) auditCheckpoints(t *testing.T) map[tally.RegionID]checkpointCount {
	t.Helper()
	nc, err := nats.Connect("nats://127.0.0.1:"+strconv.Itoa(h.natsPort), nats.UserInfo("hub", h.password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, tally.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{tally.AuditCheckpointSubject("*")}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[tally.RegionID]checkpointCount{}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var ev tally.CheckpointEvent
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		c := out[ev.Region]
		if ev.Matched {
			c.matched++
		} else {
			c.mismatched++
			t.Errorf("checkpoint mismatch: %+v", ev)
		}
		out[ev.Region] = c
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// getJSONQuiet GETs url into v and returns the status, 0 on a network error
// (the hub may be restarting).
func getJSONQuiet(url string, v any) int {
	res, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		if err := json.NewDecoder(res.Body).Decode(v); err != nil {
			return 0
		}
	}
	return res.StatusCode
}
