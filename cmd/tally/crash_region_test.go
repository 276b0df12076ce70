package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

var crashSeed = flag.Uint64("crash.seed", 0, "run TestRegionCrash with this seed (default: a new one, printed on failure)")

// TestRegionCrash runs `tally region` as its own OS process on a store of
// its own (standalone), has offices submit unsigned reports, batches and
// corrections concurrently, kills the process with SIGKILL at a point drawn
// from a seed, and restarts it on the same store. Every report
// acknowledged before the kill must be in the stream at its sequence, a
// retry of it must be answered as a duplicate of that sequence, and the
// checkpoints in the stream, including the one the node makes at restart,
// must match the chain and totals recomputed from the stream. It runs with
// nats.sync "always" (the default) and with a 2-minute background sync:
// a crash of the process alone must lose nothing with either. Rerun a
// failing seed with -crash.seed=N.
func TestRegionCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and starts processes")
	}
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with go test ./cmd/tally -run TestRegionCrash -crash.seed=%d)", seed, seed)
	bin := MustBuildTally(t)
	le, err := loadElection(ElectionSource{Results: "bundled", Regions: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, sync := range []string{"always", "2m"} {
		t.Run("sync="+sync, func(t *testing.T) {
			t.Logf("seed %d", seed)
			runRegionCrash(t, bin, le.Election, sync, seed)
		})
	}
}

func runRegionCrash(t *testing.T, bin string, e *tally.Election, syncSetting string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	reg := e.Regions[0].ID
	cfgPath := filepath.Join(dir, "region.json")
	cfg, _ := json.Marshal(map[string]any{
		"region":              reg,
		"election":            map[string]any{"results": "bundled", "regions": 2},
		"nats":                map[string]any{"port": 0, "store_dir": filepath.Join(dir, "store"), "sync": syncSetting, "hub": ""},
		"http":                map[string]any{"addr": "127.0.0.1:0"},
		"checkpoint_interval": "50ms",
		"log":                 map[string]any{"level": "debug", "format": "json"},
	})
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	const password = "crash-test-s3cret"

	// The offices: each owns some cells (precinct, contest) of the region,
	// so that its corrections race no one.
	type cell struct {
		p tally.PrecinctID
		c tally.ContestID
	}
	var cells []cell
	for _, p := range e.RegionPrecincts(reg) {
		for _, c := range e.Precinct(p).Contests {
			cells = append(cells, cell{p, c})
		}
	}
	const offices = 4
	if len(cells) < offices*10 {
		t.Fatalf("region %s has %d cells, want %d", reg, len(cells), offices*10)
	}
	rng.Shuffle(len(cells), func(i, j int) { cells[i], cells[j] = cells[j], cells[i] })
	killAfter := 10 + rng.IntN(60)                                // acknowledged requests before the kill
	killDelay := time.Duration(rng.IntN(3000)) * time.Microsecond // then, mid-request
	t.Logf("kill after %d acknowledged requests + %s", killAfter, killDelay)

	p1 := startCrashRegion(t, bin, cfgPath, password, 1)
	type acked struct {
		seq  uint64
		body []byte // the request, to retry
	}
	var mu sync.Mutex
	ackedIDs := map[tally.EventID]acked{}
	requests := 0
	killed := make(chan struct{})
	var killOnce sync.Once
	kill := func() {
		killOnce.Do(func() {
			time.Sleep(killDelay) // lands the kill inside a request
			if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Error(err)
			}
			close(killed)
		})
	}
	client := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for o := range offices {
		mine := cells[o*len(cells)/offices : (o+1)*len(cells)/offices]
		orng := rand.New(rand.NewPCG(seed, uint64(o)+2))
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := map[cell]struct {
				id  tally.EventID
				seq uint64
			}{}
			for k := 0; ; k++ {
				select {
				case <-killed:
					return
				default:
				}
				var reps []*tally.Report
				path := "/api/v1/reports"
				if orng.IntN(4) == 0 && len(last) > 0 {
					// A correction of one of this office's stored reports.
					path = "/api/v1/corrections"
					for c, l := range last {
						reps = append(reps, crashReport(e, reg, c.p, c.c, fmt.Sprintf("%s-o%d-c%d", reg, o, k), orng))
						reps[0].Correction = &tally.Correction{Supersedes: l.id, SupersedesSeq: l.seq, Reason: "recount"}
						break
					}
				} else {
					for i, j := range orng.Perm(len(mine))[:1+orng.IntN(15)] {
						c := mine[j]
						reps = append(reps, crashReport(e, reg, c.p, c.c, fmt.Sprintf("%s-o%d-r%d-%d", reg, o, k, i), orng))
					}
				}
				body, err := json.Marshal(reps)
				if len(reps) == 1 {
					body, err = json.Marshal(reps[0])
				}
				if err != nil {
					t.Error(err)
					return
				}
				res, err := client.Post(p1.intake+path, "application/json", bytes.NewReader(body))
				if err != nil {
					return // the node is gone: this request's fate is unknown
				}
				var v struct {
					Results []struct {
						ID  tally.EventID `json:"id"`
						Seq uint64        `json:"seq"`
					} `json:"results"`
				}
				derr := json.NewDecoder(res.Body).Decode(&v)
				res.Body.Close()
				if res.StatusCode != http.StatusOK || derr != nil || len(v.Results) != len(reps) {
					select {
					case <-killed:
						return // answered as the node died
					default:
					}
					t.Errorf("office %d: POST %s: %s %v (%d results for %d reports)", o, path, res.Status, derr, len(v.Results), len(reps))
					return
				}
				mu.Lock()
				for i, r := range v.Results {
					ackedIDs[r.ID] = acked{r.Seq, body}
					last[cell{reps[i].Precinct, reps[i].Contest}] = struct {
						id  tally.EventID
						seq uint64
					}{r.ID, r.Seq}
				}
				requests++
				if requests == killAfter {
					go kill()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	<-killed
	<-p1.exited
	if len(ackedIDs) == 0 {
		t.Fatal("no report acknowledged before the kill")
	}

	// Restart on the same store.
	p2 := startCrashRegion(t, bin, cfgPath, password, 2)
	nc, err := nats.Connect(p2.nats, nats.UserInfo("tally-node", password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, string(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, tally.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	for id, a := range ackedIDs {
		m, err := s.GetMsg(ctx, a.seq)
		if err != nil {
			t.Fatalf("report %s acknowledged at seq %d: %v", id, a.seq, err)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != string(id) {
			t.Fatalf("seq %d holds %q, but %s was acknowledged there", a.seq, got, id)
		}
	}

	// Recompute chain and totals from the stream; check every checkpoint.
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := info.State.LastSeq
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	totals, chain := tally.NewTotals(e), tally.NewChain(reg)
	var checkpoints []uint64
	lastIsCP := false
	for seq := uint64(0); seq < last; {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("read stream after seq %d of %d: %v", seq, last, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		seq = md.Sequence.Stream
		lastIsCP = false
		if _, _, _, ok := tally.ParseResultsSubject(msg.Subject()); ok {
			chain.Add(seq, msg.Subject(), msg.Data())
			if rep, err := tally.DecodeReport(msg.Data()); err == nil && rep.Validate(e) == nil && rep.Region == reg {
				totals.Apply(seq, rep)
			} else {
				t.Errorf("seq %d: an event the intake should not have stored: %v", seq, err)
			}
			continue
		}
		if r, ok := tally.IsCheckpointSubject(msg.Subject()); !ok || r != reg {
			t.Fatalf("seq %d: unexpected subject %s", seq, msg.Subject())
		}
		cp, err := tally.DecodeCheckpoint(msg.Data())
		if err != nil {
			t.Fatalf("checkpoint at seq %d: %v", seq, err)
		}
		if cp.Seq != seq-1 {
			t.Fatalf("checkpoint stored at seq %d covers %d, want %d", seq, cp.Seq, seq-1)
		}
		if err := cp.Compare(totals.Checkpoint(reg, seq-1, chain, cp.At)); err != nil {
			t.Fatalf("checkpoint at seq %d differs from the recomputation: %v", seq, err)
		}
		checkpoints = append(checkpoints, seq)
		lastIsCP = true
	}
	if !lastIsCP {
		t.Fatalf("after the restart the stream ends at seq %d with an event, not a checkpoint", last)
	}
	t.Logf("%d reports acknowledged in %d requests before the kill; stream of %d messages, %d events, %d checkpoints (the last at %d)",
		len(ackedIDs), requests, last, chain.Events, len(checkpoints), last)

	// Retries after the restart are duplicates of the stored sequences.
	retried := 0
	for id, a := range ackedIDs {
		if retried == 5 {
			break
		}
		path := "/api/v1/reports"
		if bytes.Contains(a.body, []byte(`"correction"`)) {
			path = "/api/v1/corrections"
		}
		st, v := post(t, p2.intake+path, a.body)
		if st != http.StatusOK {
			t.Fatalf("retry of %s after restart: status %d %v", id, st, v)
		}
		for _, r := range v["results"].([]any) {
			r := r.(map[string]any)
			if tally.EventID(r["id"].(string)) == id && (r["duplicate"] != true || uint64(r["seq"].(float64)) != a.seq) {
				t.Errorf("retry of %s after restart = %v, want a duplicate of seq %d", id, r, a.seq)
			}
		}
		retried++
	}

	// A clean stop after the restart stores nothing new (no new event).
	if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p2.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("region did not stop within 15s of SIGTERM")
	}
	if !p2.cmd.ProcessState.Success() {
		t.Errorf("region exited with %v after SIGTERM:\n%s", p2.cmd.ProcessState, p2.logs())
	}
}

// crashReport is a cumulative report of precinct p for contest c with
// random counts.
func crashReport(e *tally.Election, reg tally.RegionID, p tally.PrecinctID, c tally.ContestID, id string, rng *rand.Rand) *tally.Report {
	votes := map[tally.CandidateID]int64{}
	for _, cand := range e.Contest(c).Candidates {
		votes[cand.ID] = int64(rng.IntN(500))
	}
	return &tally.Report{ID: tally.EventID(id), Region: reg, Precinct: p, Contest: c, Votes: votes,
		Complete: rng.IntN(2) == 0, ReportedAt: time.Now().UTC().Truncate(time.Second)}
}

// crashRegion is a `tally region` process.
type crashRegion struct {
	cmd          *exec.Cmd
	intake, nats string
	logPath      string
	exited       chan struct{}
}

func (p *crashRegion) logs() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// startCrashRegion starts `tally region` with config cfgPath and the node
// password, waits until it has opened (its log says where it listens) and
// kills it at test end.
func startCrashRegion(t *testing.T, bin, cfgPath, password string, n int) *crashRegion {
	t.Helper()
	p := &crashRegion{logPath: filepath.Join(filepath.Dir(cfgPath), fmt.Sprintf("region-%d.log", n)), exited: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "region", "--config", cfgPath)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TALLY_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, "TALLY_NATS_PASSWORD="+password)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait() // the test reads the exit status from ProcessState
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill() // already gone, usually
		<-p.exited
		if t.Failed() {
			t.Logf("region process %d log:\n%s", n, p.logs())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		f, err := os.Open(p.logPath)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l struct {
				Message string `json:"message"`
				Intake  string `json:"intake"`
				NATS    string `json:"nats"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == "region node opened" && l.Intake != "" {
				p.intake, p.nats = l.Intake, l.NATS
			}
		}
		f.Close()
		if p.intake != "" {
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("region process %d exited at start:\n%s", n, p.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("region process %d not open after 20s:\n%s", n, p.logs())
		}
		time.Sleep(20 * time.Millisecond) // polling the log file
	}
}

// TestRegionSyncConfig checks nats.sync and checkpoint_interval: their
// defaults, and errors naming the field.
func TestRegionSyncConfig(t *testing.T) {
	c := DefaultRegionConfig()
	if c.NATS.Sync != "always" || time.Duration(c.CheckpointInterval) != 10*time.Second {
		t.Errorf("defaults: sync %q, checkpoint_interval %s; want always, 10s", c.NATS.Sync, time.Duration(c.CheckpointInterval))
	}
	for in, want := range map[string]time.Duration{"always": 0, "1s": time.Second, "2m": 2 * time.Minute} {
		if got, err := parseSync(in); err != nil || got != want {
			t.Errorf("parseSync(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	dir := t.TempDir()
	for _, tt := range []struct{ name, yaml, want string }{
		{"BadSync", "nats: {sync: sometimes}\n", "nats.sync:"},
		{"ZeroSync", "nats: {sync: 0s}\n", "nats.sync:"},
		{"ZeroCheckpoint", "checkpoint_interval: 0s\n", "checkpoint_interval:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name+".yaml")
			if err := os.WriteFile(p, []byte("region: nh-1\nelection: {results: bundled}\n"+tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			err := NewRegionMain(nil).ParseFlags([]string{"-config", p}, func(string) string { return "" })
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("ParseFlags() = %v, want an error starting %q", err, tt.want)
			}
		})
	}
	// The environment overrides the file.
	m := NewRegionMain(nil)
	if err := m.ParseFlags([]string{"--region", "nh-1", "--results", "bundled"}, env(map[string]string{"TALLY_NATS_SYNC": "250ms"})); err != nil || m.Config.NATS.Sync != "250ms" {
		t.Errorf("TALLY_NATS_SYNC: %v, sync %q", err, m.Config.NATS.Sync)
	}
}
