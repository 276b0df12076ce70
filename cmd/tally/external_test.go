package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// TestExternalNATS runs Tally on the NATS clusters that configs/nats
// describes, every server a separate nats-server process built from the
// module: the hub as a three-node cluster (domain hub), region nh-1 as the
// shipped three-node cluster, and region nm-1 as a second three-node cluster
// made from nh-1's files the way the README says to add a region. Only the
// loopback ports are replaced, by free ones. tally region (one per region)
// and tally hub run as processes of the built binary with the shipped tally
// configs (three replicas). A signed replay goes through the intakes, and
// midway the hub node that the reconciler is connected to is killed with
// SIGKILL and stays down. At the end the hub's national totals must equal
// those recomputed from the regions' streams and the results file's sums,
// every region must be reconciled, and every acknowledged report must be in
// its region's stream at its sequence.
func TestExternalNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 12 processes")
	}
	start := time.Now()
	bin := MustBuildTally(t)
	work := t.TempDir()
	natsBin := mustBuildNATSServer(t, work)
	t.Logf("built tally and nats-server in %s", time.Since(start).Round(time.Millisecond))

	cl := renderNATSConfigs(t, work)
	le, err := loadElection(ElectionSource{Results: "bundled", Regions: 1})
	if err != nil {
		t.Fatal(err)
	}
	e := le.Election
	if got := regionList(e); got != "nh-1, nm-1" {
		t.Fatalf("election regions %s, want nh-1, nm-1 (the clusters configured)", got)
	}

	// Keys, as the README makes them: the offices' (the regions require
	// signed reports) and the leaf links' nkey pair.
	keys := filepath.Join(work, "keys")
	runTally(t, bin, work, "keys", "--counties", "--results", "bundled", "--regions", "1", "--out", keys)
	runTally(t, bin, work, "keys", "--name", "leaf", "--out", keys)
	leafPub, err := os.ReadFile(filepath.Join(keys, "leaf.pub"))
	if err != nil {
		t.Fatal(err)
	}
	leafSeed, err := os.ReadFile(filepath.Join(keys, "leaf.nk"))
	if err != nil {
		t.Fatal(err)
	}
	passwords := map[string]string{"hub": "hub-secret", "nh-1": "nh-1-secret", "nm-1": "nm-1-secret"}
	env := func(role string) []string {
		return []string{
			"TALLY_NATS_PASSWORD=" + passwords[role],
			"TALLY_NATS_LEAF_NKEY=" + strings.TrimSpace(string(leafPub)),
			"TALLY_NATS_LEAF_SEED=" + strings.TrimSpace(string(leafSeed)),
		}
	}

	procs := &processes{dir: work}
	t.Cleanup(func() { procs.killAll(t) })
	// Every cluster's servers, then wait until each answers /healthz
	// (JetStream current, meta leader known) and every region node has its
	// leaf link to the hub.
	for _, c := range cl.clusters {
		for _, n := range c.nodes {
			procs.start(t, n.name, env(c.role), natsBin, "-c", n.conf)
		}
	}
	for _, c := range cl.clusters {
		for _, n := range c.nodes {
			waitFor(t, 30*time.Second, func() string {
				if st := getJSONQuiet(n.monitor+"/healthz", &map[string]any{}); st != http.StatusOK {
					return fmt.Sprintf("%s: /healthz %d", n.name, st)
				}
				if c.role == "hub" {
					return ""
				}
				var lz struct {
					Leafs int `json:"leafnodes"`
				}
				if st := getJSONQuiet(n.monitor+"/leafz", &lz); st != http.StatusOK || lz.Leafs != 1 {
					return fmt.Sprintf("%s: %d leaf links (status %d), want 1", n.name, lz.Leafs, st)
				}
				return ""
			})
		}
	}
	t.Logf("9 nats-servers up, regions linked to the hub, at %s", time.Since(start).Round(time.Millisecond))

	intake := map[tally.RegionID]string{}
	for _, r := range e.Regions {
		cfg := cl.tallyConfig["region-"+string(r.ID)]
		procs.start(t, "tally-"+string(r.ID), env(string(r.ID)), bin, "region", "-config", cfg.path, "--log-level", "info")
		intake[r.ID] = "http://" + cfg.http
	}
	hubCfg := cl.tallyConfig["hub"]
	procs.start(t, "tally-hub", env("hub"), bin, "hub", "-config", hubCfg.path, "--log-level", "info")
	api := "http://" + hubCfg.http
	waitFor(t, 60*time.Second, func() string {
		for r, u := range intake {
			if st := getJSONQuiet(u+"/healthz", &map[string]any{}); st != http.StatusOK {
				return fmt.Sprintf("region %s intake: /healthz %d", r, st)
			}
		}
		if st := getJSONQuiet(api+"/readyz", &map[string]any{}); st != http.StatusOK {
			return fmt.Sprintf("hub gateway: /readyz %d", st)
		}
		return ""
	})
	t.Logf("tally regions and hub up at %s", time.Since(start).Round(time.Millisecond))

	// The replay: signed partial counts, finals, corrections and retried
	// batches, over about replayFor.
	ok, err := loadOfficeKeys(e, keys)
	if err != nil {
		t.Fatal(err)
	}
	const replayFor = 12 * time.Second
	var ackMu sync.Mutex
	acked := map[tally.EventID]ack{}
	rcfg := DefaultReplayConfig()
	rcfg.Speed = strconv.FormatFloat(float64(rcfg.Night)/float64(replayFor), 'f', 1, 64)
	rcfg.Batch = 50
	rcfg.Corrections = 0.05
	rcfg.Retries = 0.05
	rp := &Replayer{Election: e, Counts: le.Counts, Intake: intake, Config: rcfg, Signers: ok.signers,
		Accepted: func(rep *tally.Report, seq uint64) {
			ackMu.Lock()
			defer ackMu.Unlock()
			acked[rep.ID] = ack{region: rep.Region, seq: seq}
		}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	replayDone := make(chan error, 1)
	var stats ReplayStats
	go func() {
		var err error
		stats, err = rp.Run(ctx)
		replayDone <- err
	}()

	// Midway, SIGKILL the hub node the reconciler is connected to: its
	// client must move to another node, the R3 streams elect new leaders,
	// and the regions' leaf links to it move too.
	select {
	case err := <-replayDone:
		t.Fatalf("replay ended before the hub node was killed: %v", err)
	case <-time.After(replayFor * 2 / 5):
	}
	victim := cl.clusters[0].connectedTo(t, "tally-reconciler")
	procs.kill(t, victim)
	t.Logf("killed hub node %s (the reconciler's) with SIGKILL at %s", victim, time.Since(start).Round(time.Millisecond))

	if err := <-replayDone; err != nil {
		t.Fatalf("replay: %v", err)
	}
	t.Logf("replay: %d reports (%d corrections, %d duplicates answered) in %s", stats.Reports, stats.Corrections, stats.Duplicates, stats.Elapsed.Round(time.Millisecond))

	// Each region's stream, on its cluster.
	regionJS := map[tally.RegionID]jetstream.JetStream{}
	for _, r := range e.Regions {
		regionJS[r.ID] = mustClusterJS(t, cl.tallyConfig["region-"+string(r.ID)].natsURL, passwords[string(r.ID)], r.ID)
	}
	// The hub has applied every region's whole stream, and each region's
	// last checkpoint matched.
	t.Cleanup(func() {
		if t.Failed() {
			logMirrors(t, cl.tallyConfig["hub"].natsURL, passwords["hub"], e)
		}
	})
	waitFor(t, 60*time.Second, func() string {
		var regs []tally.RegionStatus
		if st := getJSONQuiet(api+"/api/v1/regions", &regs); st != http.StatusOK {
			return fmt.Sprintf("GET /api/v1/regions: %d", st)
		}
		for _, rs := range regs {
			want, err := lastSeq(regionJS[rs.ID])
			if err != nil {
				return fmt.Sprintf("region %s: %v", rs.ID, err)
			}
			switch {
			case rs.Alert != nil:
				t.Fatalf("region %s: checkpoint alert: %+v", rs.ID, *rs.Alert)
			case rs.Status != tally.StatusLive || rs.Applied != want || !rs.Reconciled:
				return fmt.Sprintf("region %s: %s, mirror at %d, applied %d of %d, reconciled %v", rs.ID, rs.Status, rs.LastSeq, rs.Applied, want, rs.Reconciled)
			}
		}
		return ""
	})
	t.Logf("hub applied and reconciled every region at %s", time.Since(start).Round(time.Millisecond))

	// The reference: totals recomputed from the regions' streams alone.
	streams := map[tally.RegionID][]*jetstream.RawStreamMsg{}
	for _, r := range e.Regions {
		streams[r.ID] = readClusterStream(t, regionJS[r.ID], r.ID)
	}
	for _, r := range e.Regions {
		for i, m := range streams[r.ID] {
			if m.Sequence != uint64(i+1) {
				t.Fatalf("region %s: message %d has sequence %d", r.ID, i+1, m.Sequence)
			}
		}
	}
	ackMu.Lock()
	checkAgainstStreams(t, e, le.Counts, api, streams, acked, stats.Reports)
	ackMu.Unlock()
	t.Logf("national totals equal the regions' streams and the file; done at %s", time.Since(start).Round(time.Millisecond))
	if b, err := os.ReadFile(filepath.Join(work, "tally-hub.log")); err == nil {
		if n := strings.Count(string(b), "consumer stalled"); n > 0 {
			t.Logf("the hub replaced %d stalled consumer(s) (see reconciler/stall.go)", n)
		}
	}
}

// natsCluster is one NATS cluster of the rendered configuration.
type natsCluster struct {
	role  string // "hub" or the region id
	nodes []natsNode
}

// natsNode is one nats-server of a cluster.
type natsNode struct {
	name    string // the config file's name without .conf: the server name
	conf    string // the rendered config file
	monitor string // its monitoring base URL
}

// connectedTo returns the name of the node of c that has a client
// connection named name, from the nodes' /connz.
func (c natsCluster) connectedTo(t *testing.T, name string) string {
	t.Helper()
	for _, n := range c.nodes {
		var cz struct {
			Conns []struct {
				Name string `json:"name"`
			} `json:"connections"`
		}
		if st := getJSONQuiet(n.monitor+"/connz?limit=1000", &cz); st != http.StatusOK {
			continue
		}
		for _, cn := range cz.Conns {
			if cn.Name == name {
				return n.name
			}
		}
	}
	t.Fatalf("no node of cluster %s has a connection named %s", c.role, name)
	return ""
}

// tallyConfig is a rendered tally config file and the addresses in it.
type tallyConfig struct {
	path    string
	http    string // http.addr
	natsURL string // nats.url
}

// renderedConfigs is configs/nats rendered into a test directory.
type renderedConfigs struct {
	clusters    []natsCluster          // the hub first
	tallyConfig map[string]tallyConfig // by directory: "hub", "region-nh-1"
}

var (
	loopbackPort = regexp.MustCompile(`127\.0\.0\.1:(\d+)`)
	regionPorts  = regexp.MustCompile(`127\.0\.0\.1:([468])31`)
	yamlField    = func(name string) *regexp.Regexp { return regexp.MustCompile(`(?m)^  ` + name + `: (\S+)`) }
)

// renderNATSConfigs copies the shipped configs/nats into dir/configs/nats,
// adds region nm-1 made from region-nh-1 as the README says (the region id
// and the ports' 31 replaced by nm-1 and 32), then replaces every loopback
// port, in every file, by a free one.
func renderNATSConfigs(t *testing.T, dir string) *renderedConfigs {
	t.Helper()
	src := filepath.Join("..", "..", "configs", "nats")
	files := map[string]string{} // path relative to configs/nats → content
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		files[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Another region, as in the README: copy, rename, replace.
	for rel, b := range files {
		d, f := filepath.Split(rel)
		if d != "region-nh-1"+string(filepath.Separator) {
			continue
		}
		if rest, ok := strings.CutPrefix(f, "nh-1-"); ok {
			f = "nm-1-" + rest
		}
		b = regionPorts.ReplaceAllString(strings.ReplaceAll(b, "nh-1", "nm-1"), "127.0.0.1:${1}32")
		files[filepath.Join("region-nm-1", f)] = b
	}
	// Free ports for every loopback address, the same in every file.
	ports := map[string]string{}
	taken := map[int]bool{}
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		for _, m := range loopbackPort.FindAllStringSubmatch(files[rel], -1) {
			if _, ok := ports[m[1]]; ok {
				continue
			}
			p := freePort(t)
			for taken[p] {
				p = freePort(t)
			}
			taken[p] = true
			ports[m[1]] = strconv.Itoa(p)
		}
	}
	// In order: "hub/..." before "region-...", so the hub cluster comes first.
	out := &renderedConfigs{tallyConfig: map[string]tallyConfig{}}
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		b := loopbackPort.ReplaceAllStringFunc(files[rel], func(s string) string {
			return "127.0.0.1:" + ports[strings.TrimPrefix(s, "127.0.0.1:")]
		})
		p := filepath.Join(dir, "configs", "nats", rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
		d, f := filepath.Split(rel)
		d = strings.TrimSuffix(d, string(filepath.Separator))
		switch {
		case strings.HasSuffix(f, ".yaml"):
			tc := tallyConfig{path: p}
			if m := yamlField("addr").FindStringSubmatch(b); m != nil {
				tc.http = m[1]
			}
			if m := yamlField("url").FindStringSubmatch(b); m != nil {
				tc.natsURL = m[1]
			}
			if tc.http == "" || tc.natsURL == "" {
				t.Fatalf("%s: no http.addr or nats.url", rel)
			}
			out.tallyConfig[d] = tc
		case f != "accounts.conf" && strings.HasSuffix(f, ".conf"):
			m := regexp.MustCompile(`(?m)^http: (\S+)`).FindStringSubmatch(b)
			if m == nil {
				t.Fatalf("%s: no monitoring address (http: ...)", rel)
			}
			role := strings.TrimPrefix(d, "region-")
			var c *natsCluster
			for i := range out.clusters {
				if out.clusters[i].role == role {
					c = &out.clusters[i]
				}
			}
			if c == nil {
				out.clusters = append(out.clusters, natsCluster{role: role})
				c = &out.clusters[len(out.clusters)-1]
			}
			c.nodes = append(c.nodes, natsNode{name: strings.TrimSuffix(f, ".conf"), conf: p, monitor: "http://" + m[1]})
		}
	}
	if len(out.clusters) != 3 || out.clusters[0].role != "hub" {
		t.Fatalf("clusters %+v, want hub, nh-1 and nm-1", out.clusters)
	}
	for _, c := range out.clusters {
		if len(c.nodes) != 3 {
			t.Fatalf("cluster %s has %d nodes, want 3", c.role, len(c.nodes))
		}
	}
	return out
}

// mustBuildNATSServer builds nats-server, at the version go.mod requires,
// into dir and returns its path.
func mustBuildNATSServer(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "nats-server")
	out, err := exec.Command("go", "build", "-o", p, "github.com/nats-io/nats-server/v2").CombinedOutput()
	if err != nil {
		t.Fatalf("go build nats-server: %v\n%s", err, out)
	}
	return p
}

// runTally runs the tally binary with args in dir and fails on error.
func runTally(t *testing.T, bin, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tally %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// mustClusterJS connects to region r's cluster at url as the node's user
// and returns its JetStream, in the region's domain.
func mustClusterJS(t *testing.T, url, password string, r tally.RegionID) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.UserInfo("tally-node", password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.NewWithDomain(nc, string(r))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// lastSeq returns the last sequence of the RESULTS stream of js.
func lastSeq(js jetstream.JetStream) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, tally.ResultsStream)
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.LastSeq, nil
}

// readClusterStream reads every message of region r's RESULTS stream, in
// order, and checks that it has three replicas.
func readClusterStream(t *testing.T, js jetstream.JetStream, r tally.RegionID) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, tally.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().Config.Replicas; n != 3 {
		t.Errorf("region %s: %s has %d replicas, want 3", r, tally.ResultsStream, n)
	}
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); seq <= s.CachedInfo().State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("region %s: %s seq %d: %v", r, tally.ResultsStream, seq, err)
		}
		out = append(out, m)
	}
	return out
}

// logMirrors logs the state of the hub's mirrors and their consumers.
func logMirrors(t *testing.T, url, password string, e *tally.Election) {
	nc, err := nats.Connect(url, nats.UserInfo("hub", password))
	if err != nil {
		t.Log(err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Log(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range e.Regions {
		s, err := js.Stream(ctx, tally.MirrorStream(r.ID))
		if err != nil {
			t.Logf("mirror of %s: %v", r.ID, err)
			continue
		}
		info := s.CachedInfo()
		b, _ := json.Marshal(struct {
			State   jetstream.StreamState
			Mirror  *jetstream.StreamSourceInfo
			Cluster *jetstream.ClusterInfo
		}{info.State, info.Mirror, info.Cluster})
		t.Logf("mirror of %s: %s", r.ID, b)
		for ci := range s.ListConsumers(ctx).Info() {
			b, _ := json.Marshal(struct {
				Name      string
				Delivered jetstream.SequenceInfo
				Pending   uint64
				Waiting   int
				Cluster   *jetstream.ClusterInfo
			}{ci.Name, ci.Delivered, ci.NumPending, ci.NumWaiting, ci.Cluster})
			t.Logf("  consumer %s", b)
		}
	}
}

// processes are the test's child processes, each logging to dir/<name>.log.
type processes struct {
	dir  string
	mu   sync.Mutex
	byID map[string]*exec.Cmd
	done map[string]chan struct{}
	logs []string
}

// start starts bin with args in p.dir, with the environment of the test
// (but no TALLY_ variable) plus env.
func (p *processes) start(t *testing.T, name string, env []string, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(p.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = p.dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TALLY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // killed at the end: its exit status says nothing
		logf.Close()
		close(done)
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byID == nil {
		p.byID, p.done = map[string]*exec.Cmd{}, map[string]chan struct{}{}
	}
	p.byID[name], p.done[name] = cmd, done
	p.logs = append(p.logs, name)
}

// kill sends SIGKILL to the process named name and waits until it is gone.
func (p *processes) kill(t *testing.T, name string) {
	t.Helper()
	p.mu.Lock()
	cmd, done := p.byID[name], p.done[name]
	p.mu.Unlock()
	if cmd == nil {
		t.Fatalf("no process %s", name)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL) // gone already: nothing to do
	<-done
}

// killAll kills every process, newest first, and on failure shows the end
// of each log.
func (p *processes) killAll(t *testing.T) {
	p.mu.Lock()
	names := append([]string(nil), p.logs...)
	p.mu.Unlock()
	for i := len(names) - 1; i >= 0; i-- {
		p.kill(t, names[i])
	}
	if !t.Failed() {
		return
	}
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(p.dir, name+".log"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Log(err)
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		t.Logf("--- %s.log (last lines):\n%s", name, strings.Join(lines, "\n"))
	}
}
