package main

// `tally bench`: a whole-system benchmark on a synthetic election. It starts
// the hub and the region nodes as child processes of this binary, drives
// reports through the regions' HTTP intake, and measures ingest, freshness,
// fan-out, reads, catch-up and memory, each against a baseline measured in
// the same run.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tallyvote/tally"
)

// benchOptions are the flags of tally bench.
type benchOptions struct {
	Precincts, Contests, Regions, Reports int
	Corrections, Retries                  float64
	Viewers, Backlog                      int
	Batch, Clients                        int
	Load                                  float64       // freshness: share of the ingest rate as background load
	Freshness                             time.Duration // freshness: how long probes run
	Updates                               int           // fan-out: updates timed
	ReadFor                               time.Duration
	ReadClients                           int
	Sync                                  string // the regions' nats.sync
	JSON, Quick, Postgres, Keep           bool
	Profile                               string // directory for the hub's and regions' CPU and heap profiles
	HubMemoryLimit                        string // GOMEMLIMIT of the hub process; empty = none
}

func defaultBenchOptions() benchOptions {
	return benchOptions{Precincts: 10000, Contests: 5, Regions: 4, Reports: 2, Corrections: 0.01, Retries: 0.02,
		Viewers: 10000, Backlog: 200000, Batch: 500, Clients: 2, Load: 0.5, Freshness: 10 * time.Second, Updates: 100,
		ReadFor: 5 * time.Second, ReadClients: 32, Sync: "1s"}
}

// quickBenchOptions is --quick: a few seconds, for CI.
func quickBenchOptions() benchOptions {
	o := defaultBenchOptions()
	o.Precincts, o.Contests, o.Regions, o.Viewers, o.Backlog = 400, 2, 2, 200, 5000
	o.Freshness, o.Updates, o.ReadFor, o.ReadClients = 2*time.Second, 3, time.Second, 8
	return o
}

// BenchMain runs `tally bench`. The same command, with hidden flags, also
// serves the minimal HTTP baselines in a child process (--serve-baseline),
// measures the hub's memory floor in one (--memory-floor DIR), and wraps
// tally hub or tally region with CPU and heap profiling (--profile-child,
// used by --profile).
type BenchMain struct {
	// Exe is the tally binary the children run; empty = this executable.
	Exe string
	// Report is the outcome, once Run has returned.
	Report *benchReport

	out, logOut io.Writer
	opts        benchOptions
	done        chan struct{}

	serve       bool
	floorDir    string
	srv         *http.Server
	profileRole string
	profileOut  string
	innerArgs   []string
	inner       command
	profMu      sync.Mutex
	profiling   *os.File // the CPU profile being written
	profiles    int      // CPU profiles started
	profDone    bool     // closed: no more profiles
}

// NewBenchMain returns a BenchMain printing its table to out and its
// progress to logOut.
func NewBenchMain(out, logOut io.Writer) *BenchMain {
	return &BenchMain{out: out, logOut: logOut, opts: defaultBenchOptions(), done: make(chan struct{})}
}

// ParseFlags reads the flags.
func (m *BenchMain) ParseFlags(args []string, _ func(string) string) error {
	fs := flagSet("bench", m.logOut)
	o := &m.opts
	d := defaultBenchOptions()
	fs.IntVar(&o.Precincts, "precincts", d.Precincts, "precincts in all")
	fs.IntVar(&o.Contests, "contests", d.Contests, "contests on each precinct's ballot")
	fs.IntVar(&o.Regions, "regions", d.Regions, "regions (each a child process)")
	fs.IntVar(&o.Reports, "reports", d.Reports, "reports per precinct and contest, cumulative, the last final")
	fs.Float64Var(&o.Corrections, "corrections", d.Corrections, "share of precincts and contests whose final report is corrected")
	fs.Float64Var(&o.Retries, "retries", d.Retries, "share of batches sent twice")
	fs.IntVar(&o.Viewers, "viewers", d.Viewers, "SSE viewers for the fan-out (capped by the open files limit)")
	fs.IntVar(&o.Backlog, "backlog", d.Backlog, "catch-up backlog, events (1,000,000 at full size when not set)")
	fs.IntVar(&o.Batch, "batch", d.Batch, "reports per intake request")
	fs.IntVar(&o.Clients, "clients", d.Clients, "intake clients per region")
	fs.Float64Var(&o.Load, "load", d.Load, "freshness: background load, as a share of the measured ingest rate")
	fs.DurationVar(&o.Freshness, "freshness", d.Freshness, "freshness: how long probes run")
	fs.IntVar(&o.Updates, "updates", d.Updates, "fan-out: updates timed (p99 is the largest with fewer than 100)")
	fs.DurationVar(&o.ReadFor, "read-for", d.ReadFor, "reads: how long each of the two read loads runs, in all (they take turns)")
	fs.IntVar(&o.ReadClients, "read-clients", d.ReadClients, "reads: concurrent keep-alive clients")
	fs.StringVar(&o.Sync, "sync", d.Sync, "the regions' nats.sync: \"always\" or an interval")
	fs.BoolVar(&o.JSON, "json", false, "print the results as JSON")
	fs.BoolVar(&o.Quick, "quick", false, "a small election that runs in seconds (CI); size flags still apply")
	fs.BoolVar(&o.Postgres, "postgres", false, "also run the PostgreSQL comparison on the same reports")
	fs.BoolVar(&o.Keep, "keep", false, "keep the stores and logs (the temporary directory is printed)")
	fs.StringVar(&o.HubMemoryLimit, "hub-memory-limit", "", "run the hub with this GOMEMLIMIT (Go's soft memory limit, for example 3GiB); none when empty")
	fs.StringVar(&o.Profile, "profile", "", "write CPU profiles (one per phase: <role>.cpu.<n>-<phase>.pprof) and heap profiles of the hub and the regions into this directory")
	fs.BoolVar(&m.serve, "serve-baseline", false, "(internal) serve the minimal HTTP baselines")
	fs.StringVar(&m.floorDir, "memory-floor", "", "(internal) measure the hub's memory floor, its store in this directory, and print it")
	fs.StringVar(&m.profileRole, "profile-child", "", "(internal) run hub or region with profiling")
	fs.StringVar(&m.profileOut, "profile-out", "", "(internal) profile file prefix")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m.innerArgs = fs.Args()
	if o.Quick {
		q := quickBenchOptions()
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, p := range map[string]*int{"precincts": &o.Precincts, "contests": &o.Contests, "regions": &o.Regions,
			"viewers": &o.Viewers, "backlog": &o.Backlog, "updates": &o.Updates, "read-clients": &o.ReadClients} {
			if !set[name] {
				*p = *map[string]*int{"precincts": &q.Precincts, "contests": &q.Contests, "regions": &q.Regions,
					"viewers": &q.Viewers, "backlog": &q.Backlog, "updates": &q.Updates, "read-clients": &q.ReadClients}[name]
			}
		}
		if !set["freshness"] {
			o.Freshness = q.Freshness
		}
		if !set["read-for"] {
			o.ReadFor = q.ReadFor
		}
	} else {
		backlogSet := false
		fs.Visit(func(f *flag.Flag) { backlogSet = backlogSet || f.Name == "backlog" })
		if !backlogSet && o.Precincts*o.Contests*o.Reports >= 5_000_000 {
			o.Backlog = 1_000_000
		}
	}
	switch {
	case m.profileRole != "" && m.profileRole != "hub" && m.profileRole != "region":
		return fmt.Errorf("--profile-child: want hub or region")
	case o.Regions < 1 || o.Precincts < o.Regions || o.Contests < 1 || o.Reports < 1:
		return fmt.Errorf("want at least one region, contest and report, and a precinct per region")
	case o.Corrections < 0 || o.Corrections > 1 || o.Retries < 0 || o.Retries > 1 || o.Load <= 0:
		return fmt.Errorf("--corrections and --retries: between 0 and 1; --load: positive")
	case o.Viewers < 1 || o.Backlog < 1 || o.Batch < 1 || o.Clients < 1 || o.Updates < 1 || o.ReadClients < 1:
		return fmt.Errorf("--viewers, --backlog, --batch, --clients, --updates, --read-clients: must be positive")
	}
	if _, err := parseSync(o.Sync); err != nil {
		return fmt.Errorf("--sync: %v", err)
	}
	if o.HubMemoryLimit != "" {
		if _, err := parseMemoryLimit(o.HubMemoryLimit); err != nil {
			return fmt.Errorf("--hub-memory-limit: %v", err)
		}
	}
	return nil
}

// Done is closed when the bench, or the memory floor's measurement, has
// finished (never, when serving the baselines or wrapping a role: those
// wait for a signal).
func (m *BenchMain) Done() <-chan struct{} { return m.done }

// Run runs the bench to the end, or starts the baseline server or the
// profiled role.
func (m *BenchMain) Run(ctx context.Context) error {
	switch {
	case m.floorDir != "":
		defer close(m.done)
		f, err := measureMemoryFloor(ctx, m.floorDir, m.opts, 0)
		if err != nil {
			return err
		}
		b, err := json.Marshal(f)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(m.out, "%s%s\n", memoryFloorLine, b)
		return err
	case m.serve:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		m.srv = &http.Server{Handler: &baselineServer{clients: map[chan []byte]struct{}{}}}
		go func() { _ = m.srv.Serve(ln) }() // ends with Close
		fmt.Fprintf(m.out, "listening http://%s\n", ln.Addr())
		return nil
	case m.profileRole != "":
		if err := m.startCPUProfile("start"); err != nil {
			return err
		}
		go heapOnSignal(ctx, m.profileOut)
		go m.phasesOnSignal(ctx)
		if m.profileRole == "hub" {
			m.inner = NewHubMain(m.logOut)
		} else {
			m.inner = NewRegionMain(m.logOut)
		}
		if err := m.inner.ParseFlags(m.innerArgs, os.Getenv); err != nil {
			return err
		}
		return m.inner.Run(ctx)
	}
	defer close(m.done)
	rep, err := m.run(ctx)
	m.Report = rep
	if rep != nil {
		if m.opts.JSON {
			enc := json.NewEncoder(m.out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return err
			}
		} else {
			rep.print(m.out)
		}
	}
	return err
}

// heapOnSignal writes a heap profile to out.heap.<n>.pprof each time the
// process gets SIGUSR1, until ctx ends: a profile of a run that cannot
// finish (one that would run out of memory, say).
func heapOnSignal(ctx context.Context, out string) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	defer signal.Stop(sig)
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-sig:
		}
		if f, err := os.Create(fmt.Sprintf("%s.heap.%d.pprof", out, n)); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0) // best effort: a profile of a profile run
			f.Close()
		}
	}
}

// startCPUProfile stops the profiled role's CPU profile, if any, and
// starts the next, <out>.cpu.<n>-<phase>.pprof.
func (m *BenchMain) startCPUProfile(phase string) error {
	m.profMu.Lock()
	defer m.profMu.Unlock()
	if m.profDone {
		return nil
	}
	if m.profiling != nil {
		pprof.StopCPUProfile()
		if err := m.profiling.Close(); err != nil {
			return err
		}
		m.profiling = nil
	}
	f, err := os.Create(fmt.Sprintf("%s.cpu.%d-%s.pprof", m.profileOut, m.profiles, phase))
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	m.profiling, m.profiles = f, m.profiles+1
	return nil
}

// phaseFile is the file, in the profile directory, where the bench writes
// the name of the phase it starts before it sends SIGUSR2 to the profiled
// roles.
const phaseFile = "phase"

// phasesOnSignal starts a new CPU profile, named after the phase in the
// phase file, each time the profiled role gets SIGUSR2, until ctx ends:
// one profile per phase of the bench, which go tool pprof merges when
// given them all.
func (m *BenchMain) phasesOnSignal(ctx context.Context) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR2)
	defer signal.Stop(sig)
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
		}
		b, err := os.ReadFile(filepath.Join(filepath.Dir(m.profileOut), phaseFile))
		if err != nil || !validPhase(string(b)) {
			b = []byte("unknown")
		}
		_ = m.startCPUProfile(string(b)) // best effort: a profile of a profile run
	}
}

// validPhase reports whether a phase name is safe in a file name.
func validPhase(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// signalPhase tells the profiled roles (pids) that phase starts: it
// writes the phase file in dir and sends each SIGUSR2.
func signalPhase(dir, phase string, pids []int) {
	name := strings.ReplaceAll(phase, " ", "-")
	tmp := filepath.Join(dir, phaseFile+".tmp")
	if os.WriteFile(tmp, []byte(name), 0o644) != nil || os.Rename(tmp, filepath.Join(dir, phaseFile)) != nil {
		return
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGUSR2)
	}
}

// Close stops the baseline server or the profiled role.
func (m *BenchMain) Close() error {
	var errs []error
	if m.srv != nil {
		errs = append(errs, m.srv.Close())
	}
	if m.inner != nil {
		errs = append(errs, m.inner.Close())
		m.inner = nil
	}
	m.profMu.Lock()
	defer m.profMu.Unlock()
	m.profDone = true
	if m.profiling != nil {
		pprof.StopCPUProfile()
		errs = append(errs, m.profiling.Close())
		m.profiling = nil
		if f, err := os.Create(m.profileOut + ".heap.pprof"); err == nil {
			errs = append(errs, pprof.Lookup("heap").WriteTo(f, 0), f.Close())
		} else {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// benchReport is the outcome of a bench.
type benchReport struct {
	Machine   machine    `json:"machine"`
	Setup     benchSetup `json:"setup"`
	Rows      []benchRow `json:"results"`
	Notes     []string   `json:"notes"`
	Elapsed   string     `json:"elapsed"`
	Completed bool       `json:"completed"`
}

type benchSetup struct {
	Precincts   int     `json:"precincts"`
	Contests    int     `json:"contests_per_precinct"`
	Regions     int     `json:"regions"`
	Reports     int     `json:"reports_per_cell"`
	Corrections float64 `json:"corrections"`
	Retries     float64 `json:"retries"`
	Events      int     `json:"events"`
	Viewers     int     `json:"viewers"`
	Backlog     int     `json:"backlog"`
	FileLimit   uint64  `json:"open_files_limit"`
	RegionSync  string  `json:"region_sync"`
	// HubMemoryLimit is the hub's GOMEMLIMIT, when --hub-memory-limit set one.
	HubMemoryLimit string `json:"hub_memory_limit,omitempty"`
	Processes      string `json:"processes"`
}

// benchRow is one measurement: Tally's figure, the baseline's, and their
// ratio, with the target when there is one.
type benchRow struct {
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Baseline float64 `json:"baseline"`
	BaseName string  `json:"baseline_name"`
	Ratio    float64 `json:"ratio"`
	Target   string  `json:"target,omitempty"`
	Met      *bool   `json:"met,omitempty"`
	Detail   string  `json:"detail,omitempty"`
}

func (r *benchReport) add(name string, value float64, unit string, base float64, baseName string, ratio float64, target string, met *bool, detail string) {
	r.Rows = append(r.Rows, benchRow{Name: name, Value: value, Unit: unit, Baseline: base, BaseName: baseName, Ratio: ratio,
		Target: target, Met: met, Detail: detail})
}

func ptr(b bool) *bool { return &b }

func (r *benchReport) print(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "tally bench: %s, %d cores, %.1f GiB, %s, %s\n", m.CPU, m.Cores, m.MemoryGB, m.Go, m.OS)
	s := r.Setup
	fmt.Fprintf(w, "election: %s precincts x %d contests, %d regions, %d reports per precinct and contest, %.1f%% corrected, %.1f%% of batches retried: %s events\n",
		commas(float64(s.Precincts)), s.Contests, s.Regions, s.Reports, s.Corrections*100, s.Retries*100, commas(float64(s.Events)))
	fmt.Fprintf(w, "viewers %s, backlog %s events, open files limit %d, regions' nats.sync %q\n", commas(float64(s.Viewers)), commas(float64(s.Backlog)), s.FileLimit, s.RegionSync)
	fmt.Fprintf(w, "processes: %s\n\n", s.Processes)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measurement\ttally\tbaseline\t\tratio\ttarget\tmet")
	for _, row := range r.Rows {
		met := ""
		if row.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*row.Met]
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s %s\t%s\t%.2f\t%s\t%s\n", row.Name, figure(row.Value), row.Unit, figure(row.Baseline), row.Unit, row.BaseName, row.Ratio, row.Target, met)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, row := range r.Rows {
		if row.Detail != "" {
			fmt.Fprintf(w, "%s: %s\n", row.Name, row.Detail)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "elapsed %s\n", r.Elapsed)
}

// figure formats v with thousands separators, or with decimals when small.
func figure(v float64) string {
	if v != 0 && math.Abs(v) < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return commas(v)
}

// commas writes v rounded as %.0f rounds it, with thousands separators.
func commas(v float64) string { return tally.Thousands(int64(math.RoundToEven(v))) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// progress prints a status line to w about once a second.
type progress struct {
	w      io.Writer
	mu     sync.Mutex
	phase  string
	start  time.Time
	status func() string
	stop   chan struct{}
	wg     sync.WaitGroup

	onPhase func(phase string) // when set, called as each phase starts
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, stop: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.mu.Lock()
				if p.phase != "" {
					s := "running"
					if p.status != nil {
						s = p.status()
					}
					fmt.Fprintf(p.w, "[%s %4.0fs] %s\n", p.phase, time.Since(p.start).Seconds(), s)
				}
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// set starts a phase, with a function describing where it stands.
func (p *progress) set(phase string, status func() string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.phase, p.status, p.start = phase, status, time.Now()
	fmt.Fprintf(p.w, "[%s] started\n", phase)
	if p.onPhase != nil {
		p.onPhase(phase)
	}
}

func (p *progress) close() {
	close(p.stop)
	p.wg.Wait()
}

// run is the bench itself.
func (m *BenchMain) run(ctx context.Context) (*benchReport, error) {
	start := time.Now()
	o := m.opts
	rep := &benchReport{Machine: describeMachine()}
	defer func() { rep.Elapsed = time.Since(start).Round(time.Second).String() }()
	limit, _, err := raiseFileLimit()
	if err != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("could not raise the open files limit: %v", err))
	}
	if maxViewers := int(limit) - 2000; o.Viewers > maxViewers && maxViewers > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("viewers lowered from %d to %d by the open files limit %d", o.Viewers, maxViewers, limit))
		o.Viewers = maxViewers
	}
	exe := m.Exe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	b, err := newBenchElection(o.Precincts, o.Contests, o.Regions, o.Reports, o.Corrections)
	if err != nil {
		return nil, err
	}
	cells := o.Precincts * o.Contests
	events := cells * o.Reports
	for r := range b.regions {
		for c := range o.Clients {
			for _, cl := range b.regionCells(r, c, o.Clients) {
				if b.corrected(cl) {
					events++
				}
			}
		}
	}
	procs := "hub and regions: child processes of this binary (tally hub, tally region; pids in the notes); " +
		"load generator, viewers, raw JetStream baselines and the baseline mirror: this process; minimal HTTP baselines: a child process (tally bench --serve-baseline); the hub's memory floor: a child process (tally bench --memory-floor)"
	if o.Profile != "" {
		procs = strings.Replace(procs, "(tally hub, tally region;", "(tally bench --profile-child hub|region, the same HubMain and RegionMain with pprof;", 1)
	}
	rep.Setup = benchSetup{Precincts: o.Precincts, Contests: o.Contests, Regions: o.Regions, Reports: o.Reports, Corrections: o.Corrections,
		Retries: o.Retries, Events: events, Viewers: o.Viewers, Backlog: o.Backlog, FileLimit: limit, RegionSync: o.Sync, HubMemoryLimit: o.HubMemoryLimit, Processes: procs}
	if o.Sync != "always" {
		rep.Notes = append(rep.Notes, fmt.Sprintf("regions run with nats.sync %q (background fsync), not the default \"always\" (an fsync per report, about 3,000 reports/s per region)", o.Sync))
	}
	if o.Backlog < 1_000_000 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("catch-up backlog is %s events; a full-size measurement uses at least 1,000,000 (--backlog)", commas(float64(o.Backlog))))
	}

	dir, err := os.MkdirTemp("", "tally-bench-")
	if err != nil {
		return rep, err
	}
	if o.Keep {
		rep.Notes = append(rep.Notes, "stores and logs kept in "+dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if o.Profile != "" {
		if err := os.MkdirAll(o.Profile, 0o755); err != nil {
			return rep, err
		}
		if o.Profile, err = filepath.Abs(o.Profile); err != nil {
			return rep, err
		}
	}
	prog := newProgress(m.logOut)
	defer prog.close()
	prog.set("setup", nil)

	electionFile := filepath.Join(dir, "election.json")
	eb, err := json.Marshal(b.e)
	if err != nil {
		return rep, err
	}
	leafPW, natsPW := randomToken(), randomToken()
	leafFile, natsFile := filepath.Join(dir, "leaf.pw"), filepath.Join(dir, "nats.pw")
	for _, f := range []struct{ path, data string }{{electionFile, string(eb)}, {leafFile, leafPW}, {natsFile, natsPW}} {
		if err := os.WriteFile(f.path, []byte(f.data), 0o600); err != nil {
			return rep, err
		}
	}
	hub, err := startHub(ctx, exe, dir, electionFile, leafFile, o.Profile, o.HubMemoryLimit)
	if err != nil {
		return rep, err
	}
	if o.HubMemoryLimit != "" {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the hub runs with GOMEMLIMIT=%s, Go's soft memory limit: its collector runs more often as the heap nears it (the hub logged memory_limit %d)", o.HubMemoryLimit, hub.memoryLimit))
	}
	var regions []*regionProc
	var bl *baselineProc
	defer func() {
		for _, r := range regions {
			_ = r.stop(30 * time.Second) // errors here do not change the figures
			r.proxy.Close()
		}
		_ = hub.stop(30 * time.Second)
		if bl != nil {
			_ = bl.stop(5 * time.Second)
		}
	}()
	for _, id := range b.regions {
		r, err := startRegion(ctx, exe, dir, electionFile, id, hub.leaf, leafFile, natsFile, o.Sync, o.Profile)
		if err != nil {
			return rep, err
		}
		regions = append(regions, r)
	}
	if bl, err = startBaseline(ctx, exe, dir); err != nil {
		return rep, err
	}
	pids := fmt.Sprintf("hub pid %d", hub.cmd.Process.Pid)
	for _, r := range regions {
		pids += fmt.Sprintf(", region %s pid %d", r.id, r.cmd.Process.Pid)
	}
	rep.Notes = append(rep.Notes, pids)
	if o.Profile != "" {
		profiled := []int{hub.cmd.Process.Pid}
		for _, r := range regions {
			profiled = append(profiled, r.cmd.Process.Pid)
		}
		prog.mu.Lock()
		prog.onPhase = func(phase string) { signalPhase(o.Profile, phase, profiled) }
		prog.mu.Unlock()
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4 * o.Clients, DisableCompression: true}}
	if err := waitReady(ctx, hc, hub.api, 2*time.Minute); err != nil {
		return rep, err
	}

	// Ingest: intake to national totals.
	st := &ingestStats{lastSeq: make([]atomic.Uint64, len(b.regions)), finalSeq: map[cell]uint64{}}
	var applied atomic.Int64
	prog.set("ingest", func() string {
		return fmt.Sprintf("%s of %s events accepted by the intake, %s applied by the hub", commas(float64(st.sent.Load())), commas(float64(events)), commas(float64(applied.Load())))
	})
	before, err := hubApplied(ctx, hc, hub.api)
	if err != nil {
		return rep, err
	}
	cpuProcs := map[string]int{"hub": hub.cmd.Process.Pid, "bench": os.Getpid()}
	for _, r := range regions {
		cpuProcs[string(r.id)] = r.cmd.Process.Pid
	}
	ingestCPU, err := newCPUMeter(cpuProcs)
	if err != nil {
		return rep, fmt.Errorf("cpu time: %w", err)
	}
	pollCtx, stopPoll := context.WithCancel(ctx)
	go func() {
		for pollCtx.Err() == nil {
			if got, err := hubApplied(pollCtx, hc, hub.api); err == nil {
				var sum uint64
				for r, v := range got {
					sum += v - min(v, before[r])
				}
				applied.Store(int64(sum))
			}
			time.Sleep(500 * time.Millisecond) // progress only
		}
	}()
	t0 := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, len(regions)*o.Clients)
	for r, rp := range regions {
		for c := range o.Clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := b.ingestClient(ctx, hc, rp.intake, r, c, o.Clients, o.Batch, o.Retries, st); err != nil {
					errc <- fmt.Errorf("region %s: %w", rp.id, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		stopPoll()
		return rep, err
	}
	want := map[tally.RegionID]uint64{}
	for r, id := range b.regions {
		want[id] = st.lastSeq[r].Load()
	}
	tEnd, err := waitApplied(ctx, hc, hub.api, want, 10*time.Minute, nil)
	stopPoll()
	if err != nil {
		return rep, err
	}
	ingestEl := tEnd.Sub(t0)
	ingestRate := float64(events) / ingestEl.Seconds()
	cpu, err := ingestCPU.since()
	if err != nil {
		return rep, fmt.Errorf("cpu time: %w", err)
	}
	if int(st.sent.Load()) != events {
		return rep, fmt.Errorf("ingest: %d events accepted, want %d", st.sent.Load(), events)
	}
	prog.set("verify", nil)
	exp := b.expected()
	if err := verifyTotals(ctx, hc, hub.api, exp); err != nil {
		return rep, err
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("ingest verified: every contest's national totals equal the sum of the final reports and corrections; %d batches retried, %d reports answered as duplicates", st.retried.Load(), st.duplicates.Load()))

	var rawDone atomic.Int64
	prog.set("raw publish", func() string {
		return fmt.Sprintf("%s of %s events published", commas(float64(rawDone.Load())), commas(float64(events)))
	})
	rawCPU, err := newCPUMeter(map[string]int{"bench": os.Getpid()})
	if err != nil {
		return rep, fmt.Errorf("cpu time: %w", err)
	}
	rawN, rawEl, err := rawPublish(ctx, filepath.Join(dir, "raw"), func(fn func(*tally.Report) error) error {
		return b.events(o.Clients, st.finalSeq, fn)
	}, &rawDone)
	if err != nil {
		return rep, fmt.Errorf("raw publish: %w", err)
	}
	rcpu, err := rawCPU.since()
	if err != nil {
		return rep, fmt.Errorf("cpu time: %w", err)
	}
	rawRate := float64(rawN) / rawEl.Seconds()
	rep.add("ingest", ingestRate, "events/s", rawRate, "raw JetStream async publish", ingestRate/rawRate, ">= 0.60", ptr(ingestRate/rawRate >= 0.6),
		fmt.Sprintf("%s events (%d regions x %d clients, batches of %d) in %s, from the first POST until the hub applied the last; raw: %s events in %s into one file-backed stream of an embedded server",
			commas(float64(events)), len(regions), o.Clients, o.Batch, ingestEl.Round(time.Millisecond), commas(float64(rawN)), rawEl.Round(time.Millisecond)))

	prog.set("ingest floor", nil)
	floorN, floorEl, err := pipelineFloor(ctx, filepath.Join(dir, "floor"), func(fn func(*tally.Report) error) error {
		return b.events(o.Clients, st.finalSeq, fn)
	}, 10*time.Minute)
	if err != nil {
		return rep, fmt.Errorf("ingest floor: %w", err)
	}
	floorRate := float64(floorN) / floorEl.Seconds()
	rep.add("ingest floor", floorRate, "events/s", rawRate, "raw JetStream async publish", floorRate/rawRate, "", nil,
		fmt.Sprintf("JetStream alone on the ingest's path, none of Tally's work: the same %s events published with Nats-Msg-Id into a file-backed stream, read back by an ordered consumer on its server (as a region applies its own stream), mirrored over a leaf link to a second server and read there by an ordered consumer (as the hub does); both servers in this process; %s until the second consumer read the last. Tally's ingest is %.2f of it",
			commas(float64(floorN)), floorEl.Round(time.Millisecond), ingestRate/floorRate))

	perEvent := func(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }
	var total, regionsCPU time.Duration
	for name, d := range cpu {
		total += d
		if name != "hub" && name != "bench" {
			regionsCPU += d
		}
	}
	rawPer := perEvent(rcpu["bench"], rawN)
	rep.add("CPU per event", perEvent(total, events), "µs", rawPer, "raw JetStream async publish", perEvent(total, events)/rawPer, "", nil,
		fmt.Sprintf("CPU time (user and system) over the ingest, per event: hub %.1f µs, regions %.1f µs (together), the bench process (load generator, viewers) %.1f µs; %.2f cores busy on average. Raw: the bench process (embedded server and publisher) %.1f µs, %.2f cores busy",
			perEvent(cpu["hub"], events), perEvent(regionsCPU, events), perEvent(cpu["bench"], events), total.Seconds()/ingestEl.Seconds(),
			rawPer, rcpu["bench"].Seconds()/rawEl.Seconds()))

	// Freshness: submit to SSE under load.
	probeContest := benchContest(b.regions[0], o.Contests-1)
	var t0votes int64
	for _, v := range exp[probeContest] {
		t0votes += v
	}
	pr := &prober{b: b, c: cell{r: 0, p: b.first[0], j: o.Contests - 1}, intake: regions[0].intake, hc: hc, base: t0votes,
		prefix: []byte(`{"id":"` + string(probeContest) + `"`)}
	maxProbes := int(o.Freshness/(100*time.Millisecond)) + o.Updates + 10
	fv, err := dialViewer(ctx, hub.api+"/api/v1/stream", pr.prefix, t0votes, maxProbes+1, true)
	if err != nil {
		return rep, err
	}
	if got, _ := (viewers{fv}).wait(ctx, 0, 10*time.Second); got != 1 {
		fv.close()
		return rep, fmt.Errorf("freshness: the viewer got no snapshot of %s", probeContest)
	}
	loadRate := o.Load * ingestRate
	var loadSent atomic.Int64
	var lats []time.Duration
	var probes atomic.Int64
	prog.set("freshness", func() string {
		return fmt.Sprintf("%d probes, background load %s events sent", probes.Load(), commas(float64(loadSent.Load())))
	})
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadErr := make(chan error, 1)
	intakes := make([]string, len(regions))
	for i, r := range regions {
		intakes[i] = r.intake
	}
	loadStart := time.Now()
	go func() { loadErr <- b.backgroundLoad(loadCtx, hc, intakes, loadRate, o.Batch, probeContest, &loadSent) }()
	time.Sleep(min(time.Second, o.Freshness/4)) // let the load settle
	for end := time.Now().Add(o.Freshness); time.Now().Before(end) && ctx.Err() == nil; {
		s := time.Now()
		k, err := pr.send(ctx)
		if err != nil {
			stopLoad()
			fv.close()
			return rep, fmt.Errorf("freshness probe: %w", err)
		}
		if got, _ := (viewers{fv}).wait(ctx, k, 30*time.Second); got != 1 {
			stopLoad()
			fv.close()
			return rep, fmt.Errorf("freshness: probe %d never reached the viewer", k)
		}
		lats = append(lats, time.Unix(0, fv.times[k]).Sub(s))
		probes.Add(1)
		time.Sleep(time.Until(s.Add(100 * time.Millisecond))) // probes 10 a second at most
	}
	stopLoad()
	loadEl := time.Since(loadStart)
	if err := <-loadErr; err != nil {
		fv.close()
		return rep, fmt.Errorf("freshness load: %w", err)
	}
	probeData := fv.last.Load()
	fv.close()
	// Let the hub drain the load before the next measurements.
	if err := drain(ctx, hc, hub.api, regions, natsPW); err != nil {
		return rep, err
	}
	// The baseline: the same frame through the minimal relay.
	bv, err := dialViewer(ctx, bl.url+"/stream", pr.prefix, t0votes, 60, false)
	if err != nil {
		return rep, err
	}
	var blLats []time.Duration
	for k := range int64(51) {
		s := time.Now()
		if err := postBaseline(ctx, hc, http.MethodPost, bl.url+"/broadcast", baselineFrame(*probeData, t0votes+k), ""); err != nil {
			bv.close()
			return rep, err
		}
		if got, _ := (viewers{bv}).wait(ctx, k, 10*time.Second); got != 1 {
			bv.close()
			return rep, fmt.Errorf("baseline relay: frame %d never arrived", k)
		}
		if k > 0 {
			blLats = append(blLats, time.Unix(0, bv.times[k]).Sub(s))
		}
	}
	bv.close()
	p50, p99, mx := quantiles(lats)
	b50, b99, _ := quantiles(blLats)
	rep.add("freshness p50", ms(p50), "ms", ms(b50), "minimal HTTP-in, SSE-out relay", ms(p50)/ms(b50), "", nil, "")
	rep.add("freshness p99", ms(p99), "ms", ms(b99), "minimal HTTP-in, SSE-out relay", ms(p99)/ms(b99), "p99 < 1000 ms", ptr(p99 < time.Second),
		fmt.Sprintf("%d probes (one report POSTed to %s's intake, until a viewer's SSE event of %s shows it), max %.1f ms, under a background load of %s events/s (%.2f of the ingest rate; achieved %s events/s); baseline: idle relay, %d samples",
			len(lats), b.regions[0], probeContest, ms(mx), commas(loadRate), o.Load, commas(float64(loadSent.Load())/loadEl.Seconds()), len(blLats)))

	// Fan-out, once the stream is quiet: the hub applied the load, but
	// publishing its changes (and their projections) takes a few seconds
	// more, and updates timed meanwhile would time that too.
	prog.set("fan-out", func() string { return fmt.Sprintf("%d viewers", o.Viewers) })
	settled, err := settle(ctx, hub.api+"/api/v1/stream", settleQuiet, settleTimeout)
	if err != nil {
		return rep, fmt.Errorf("fan-out: %w", err)
	}
	vs, err := dialViewers(ctx, o.Viewers, hub.api+"/api/v1/stream", pr.prefix, t0votes, maxProbes+1)
	if err != nil {
		return rep, err
	}
	if got, live := vs.wait(ctx, pr.k, time.Minute); got != live || live != len(vs) {
		vs.close()
		return rep, fmt.Errorf("fan-out: %d of %d viewers got the snapshot (%d connected)", got, len(vs), live)
	}
	spreads, ends, missed, err := fanOut(ctx, vs, o.Updates, func(int64) error { _, err := pr.send(ctx); return err }, func() int64 { return pr.k + 1 })
	vs.close()
	if err != nil {
		return rep, fmt.Errorf("fan-out: %w", err)
	}
	bvs, err := dialViewers(ctx, o.Viewers, bl.url+"/stream", pr.prefix, t0votes, o.Updates+1)
	if err != nil {
		return rep, err
	}
	var bk int64
	if err := postBaseline(ctx, hc, http.MethodPost, bl.url+"/broadcast", baselineFrame(*probeData, t0votes), ""); err != nil {
		bvs.close()
		return rep, err
	}
	if got, _ := bvs.wait(ctx, 0, time.Minute); got != len(bvs) {
		bvs.close()
		return rep, fmt.Errorf("baseline fan-out: %d of %d viewers got the first frame", got, len(bvs))
	}
	bSpreads, bEnds, bMissed, err := fanOut(ctx, bvs, o.Updates, func(k int64) error {
		return postBaseline(ctx, hc, http.MethodPost, bl.url+"/broadcast", baselineFrame(*probeData, t0votes+k), "")
	}, func() int64 { bk++; return bk })
	bvs.close()
	if err != nil {
		return rep, fmt.Errorf("baseline fan-out: %w", err)
	}
	f50, f99, fmax := quantiles(spreads)
	g50, g99, gmax := quantiles(bSpreads)
	e50, e99, _ := quantiles(ends)
	be50, be99, _ := quantiles(bEnds)
	rep.add("fan-out p50", ms(f50), "ms", ms(g50), "bare net/http SSE broadcast", ms(f50)/ms(g50), "", nil, "")
	rep.add("fan-out p99", ms(f99), "ms", ms(g99), "bare net/http SSE broadcast", ms(f99)/ms(g99), "<= 1.5", ptr(ms(f99)/ms(g99) <= 1.5),
		fmt.Sprintf("%s viewers, %d updates: time from the first viewer's receipt of an update to the last one's, max %.1f / %.1f ms; from the submit (tally) or the broadcast request (baseline) to the last viewer: p50 %.1f / %.1f ms, p99 %.1f / %.1f ms; viewers that missed an update: %d / %d; started %s after the freshness load, once the stream had no contest event for %s",
			commas(float64(o.Viewers)), o.Updates, ms(fmax), ms(gmax), ms(e50), ms(be50), ms(e99), ms(be99), missed, bMissed, settled.Round(100*time.Millisecond), settleQuiet))

	// Reads.
	prog.set("reads", nil)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hub.api+"/api/v1/contests/"+string(probeContest), nil) // a valid URL
	resp, err := hc.Do(req)
	if err != nil {
		return rep, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("GET contest: %s %v", resp.Status, err)
	}
	if err := postBaseline(ctx, hc, http.MethodPut, bl.url+"/contest", body, resp.Header.Get("ETag")); err != nil {
		return rep, err
	}
	// Tally and the baseline take turns, readRounds each, so that a change
	// in the machine's load during the phase touches both alike. The
	// servers' CPU time says whether a difference in rate is a difference
	// in cost: the hub process's while the gateway serves, the baseline
	// child's and the hub's (its background work) while the baseline does.
	var readRate, blRead float64
	var gw, base readTurn
	var hubIdle, idleFor time.Duration
	hubPid := hub.cmd.Process.Pid
	for range readRounds {
		r, err := readLoad(ctx, hub.api+"/api/v1/contests/"+string(probeContest), o.ReadClients, o.ReadFor/readRounds, hubPid)
		if err != nil {
			return rep, fmt.Errorf("reads: %w", err)
		}
		h0, err := procCPU(hubPid)
		if err != nil {
			return rep, err
		}
		t0 := time.Now()
		b, err := readLoad(ctx, bl.url+"/contest", o.ReadClients, o.ReadFor/readRounds, bl.cmd.Process.Pid)
		if err != nil {
			return rep, fmt.Errorf("baseline reads: %w", err)
		}
		h1, err := procCPU(hubPid)
		if err != nil {
			return rep, err
		}
		readRate, blRead = readRate+r.rate()/readRounds, blRead+b.rate()/readRounds
		gw.add(r)
		base.add(b)
		hubIdle, idleFor = hubIdle+h1-h0, idleFor+time.Since(t0)
	}
	rep.add("reads", readRate, "req/s", blRead, "minimal net/http handler, same bytes", readRate/blRead, ">= 0.95", ptr(readRate/blRead >= 0.95),
		fmt.Sprintf("cached GET /api/v1/contests/%s (%d bytes), %d keep-alive clients in this process, %s each, in %d turns of %s taken in alternation with the baseline", probeContest, len(body), o.ReadClients, o.ReadFor, readRounds, (o.ReadFor/readRounds).Round(time.Millisecond)))
	perReq := func(t readTurn) float64 {
		return float64(t.serverCPU.Nanoseconds()) / 1e3 / float64(max(t.requests, 1))
	}
	rep.add("reads CPU/req", perReq(gw), "µs", perReq(base), "minimal net/http handler, same bytes", perReq(gw)/perReq(base), "", nil,
		fmt.Sprintf("the server's CPU time (user and system) per request during the reads: the hub process (gateway, reconciler, hub JetStream) %.2f cores busy while the gateway served, the baseline child %.2f cores while it served; the hub's background work during the baseline's turns: %.3f cores. CPU times are counted in 10 ms ticks",
			gw.serverCPU.Seconds()/gw.elapsed.Seconds(), base.serverCPU.Seconds()/base.elapsed.Seconds(), hubIdle.Seconds()/idleFor.Seconds()))

	// Catch-up.
	rc := len(regions) - 1
	crp := regions[rc]
	var backlogDone atomic.Int64
	prog.set("catch-up", func() string {
		return fmt.Sprintf("region %s: %s of %s backlog events stored", crp.id, commas(float64(backlogDone.Load())), commas(float64(o.Backlog)))
	})
	gen := func(fn func(*tally.Report) error) error {
		cs := b.regionCells(rc, 0, 1)
		for n := 0; n < o.Backlog; n++ {
			if err := fn(b.report(cs[n%len(cs)], b.reports+1000+n/len(cs))); err != nil {
				return err
			}
		}
		return nil
	}
	cur, err := hubApplied(ctx, hc, hub.api)
	if err != nil {
		return rep, err
	}
	from := cur[crp.id]
	crp.proxy.SetUp(false)
	nc, rjs, err := regionJS(crp.nats, natsPW)
	if err != nil {
		return rep, err
	}
	_, err = asyncPublish(ctx, rjs, gen, &backlogDone)
	nc.Close()
	if err != nil {
		return rep, fmt.Errorf("backlog: %w", err)
	}
	target, err := regionLastSeq(ctx, crp.nats, natsPW)
	if err != nil {
		return rep, err
	}
	restored := time.Now()
	crp.proxy.SetUp(true)
	first, firstN, done, err := catchUpSeries(ctx, from, target, 10*time.Minute, func() (uint64, error) {
		got, err := hubApplied(ctx, hc, hub.api)
		if got != nil {
			applied.Store(int64(got[crp.id]))
		}
		return got[crp.id], err
	})
	if err != nil {
		return rep, fmt.Errorf("catch-up: %w", err)
	}
	cuN := target - firstN
	cuRate := float64(cuN) / done.Sub(first).Seconds()
	prog.set("catch-up baseline", nil)
	mN, mEl, err := mirrorBaseline(ctx, filepath.Join(dir, "mirror"), gen, crp.id, false, 10*time.Minute)
	if err != nil {
		return rep, err
	}
	mRate := float64(mN) / mEl.Seconds()
	prog.set("catch-up floor", nil)
	fN, fEl, err := mirrorBaseline(ctx, filepath.Join(dir, "mirror-floor"), gen, crp.id, true, 10*time.Minute)
	if err != nil {
		return rep, fmt.Errorf("catch-up floor: %w", err)
	}
	fRate := float64(fN) / fEl.Seconds()
	rep.add("catch-up", cuRate, "events/s", mRate, "plain JetStream mirror over a leaf link", cuRate/mRate, ">= 0.80", ptr(cuRate/mRate >= 0.8),
		fmt.Sprintf("region %s's leaf link cut, %s events published straight into its RESULTS stream (JetStream async publish to its server, not the intake), link restored: the first backlog event was applied %.1f s after; then %s events in %s until the national totals applied all; baseline: the same backlog mirrored between two embedded servers in this process over a leaf link through the same TCP proxy, %s events in %s from the first in the mirror",
			crp.id, commas(float64(o.Backlog)), first.Sub(restored).Seconds(), commas(float64(cuN)), done.Sub(first).Round(time.Millisecond), commas(float64(mN)), mEl.Round(time.Millisecond)))
	rep.add("catch-up floor", fRate, "events/s", mRate, "plain JetStream mirror over a leaf link", fRate/mRate, "", nil,
		fmt.Sprintf("JetStream alone on the catch-up's path, none of Tally's work: the same backlog mirrored the same way while an ordered consumer on the mirror's server reads it as it fills (as the reconciler does); %s events in %s from the first read to the last. Tally's catch-up is %.2f of it",
			commas(float64(fN)), fEl.Round(time.Millisecond), cuRate/fRate))

	// Memory.
	prog.set("memory floor", nil)
	mf, err := runMemoryFloor(ctx, exe, dir, o)
	if err != nil {
		return rep, fmt.Errorf("memory floor: %w", err)
	}
	hubRSS, err := hub.peakRSS()
	if err != nil {
		return rep, err
	}
	var regRSS int64
	var regID tally.RegionID
	for _, r := range regions {
		if v, err := r.peakRSS(); err == nil && v > regRSS {
			regRSS, regID = v, r.id
		}
	}
	evBytes := int64(len(appendReport(nil, b.report(cell{p: b.first[0]}, 0))))
	stored := int64(events + int(loadSent.Load()) + o.Backlog)
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	rep.add("hub peak RSS", mib(hubRSS), "MiB", mib(stored*evBytes), "events stored, canonical bytes", float64(hubRSS)/float64(stored*evBytes), "< 2048 MiB", ptr(hubRSS < 2<<30),
		fmt.Sprintf("VmHWM of the hub process over the whole run; it stored %s events (about %d bytes each)", commas(float64(stored)), evBytes))
	floorStored := int64(mf.Events) * evBytes
	rep.add("hub memory floor", mib(mf.PeakRSS), "MiB", mib(floorStored), "events stored, canonical bytes", float64(mf.PeakRSS)/float64(floorStored), "", nil,
		fmt.Sprintf("a process holding only what the hub must hold for the night, none of its other work: the election and its index (%.1f MiB), the national totals with the ingest's %s events applied (their cells, %.1f MiB), and JetStream holding those events in one file-backed stream per region under their precinct-and-contest subjects, as the hub's mirrors (%.1f MiB right after the last acknowledgement); each the growth of the live heap after a collection. The value is that process's VmHWM under Go's default collector (GOGC=100, no memory limit). The hub's peak RSS is %.2f of it; the hub also stored the freshness load and the catch-up backlog (%s events more)",
			mib(int64(mf.Election)), commas(float64(mf.Events)), mib(int64(mf.Cells)), mib(int64(mf.JetStream)), float64(hubRSS)/float64(mf.PeakRSS), commas(float64(stored-int64(mf.Events)))))
	regStored := int64(events/len(regions)) + loadSent.Load()/int64(len(regions))
	if regID == crp.id {
		regStored += int64(o.Backlog)
	}
	rep.add("region peak RSS", mib(regRSS), "MiB", mib(regStored*evBytes), "events stored, canonical bytes", float64(regRSS)/float64(regStored*evBytes), "", nil,
		fmt.Sprintf("VmHWM of the largest region process (%s)", regID))

	if o.Postgres {
		prog.set("postgres", nil)
		var reports []*tally.Report
		_ = b.events(o.Clients, st.finalSeq, func(r *tally.Report) error { reports = append(reports, r); return nil })
		pg, err := runPostgresBench(ctx, m.logOut, b.e, reports, len(regions)*o.Clients)
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("postgres comparison failed: %v", err))
		} else {
			rep.add("ingest vs PostgreSQL", ingestRate, "events/s", pg.EventsPerSec, "PostgreSQL UPSERT per report", ingestRate/pg.EventsPerSec, "", nil,
				fmt.Sprintf("%s events in %s, %d connections; %s", commas(float64(pg.Events)), pg.Elapsed.Round(time.Millisecond), len(regions)*o.Clients, pg.Server))
		}
	}
	rep.Completed = true
	return rep, nil
}

// verifyTotals polls the gateway until every state contest's candidates
// have the expected votes.
func verifyTotals(ctx context.Context, hc *http.Client, api string, exp map[tally.ContestID][]int64) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		bad := ""
		for id, want := range exp {
			var res tally.ContestResult
			if err := getJSONCtx(ctx, hc, api+"/api/v1/contests/"+string(id), &res); err != nil {
				bad = err.Error()
				break
			}
			got := map[tally.CandidateID]int64{}
			for _, c := range res.Candidates {
				got[c.ID] = c.Votes
			}
			for m, cand := range benchCandidates {
				if got[cand] != want[m] {
					bad = fmt.Sprintf("contest %s: %s has %d votes, want %d", id, cand, got[cand], want[m])
					break
				}
			}
			if bad != "" {
				break
			}
		}
		if bad == "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("verify totals: %s", bad)
		}
		time.Sleep(200 * time.Millisecond) // polling the gateway
	}
}

// drain waits until the hub applied everything each region stored.
func drain(ctx context.Context, hc *http.Client, api string, regions []*regionProc, password string) error {
	want := map[tally.RegionID]uint64{}
	for _, r := range regions {
		last, err := regionLastSeq(ctx, r.nats, password)
		if err != nil {
			return err
		}
		want[r.id] = last
	}
	_, err := waitApplied(ctx, hc, api, want, 5*time.Minute, nil)
	return err
}

// regionLastSeq returns the last sequence of a region node's RESULTS stream.
func regionLastSeq(ctx context.Context, natsURL, password string) (uint64, error) {
	nc, js, err := regionJS(natsURL, password)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	s, err := js.Stream(ctx, tally.ResultsStream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// parseMemoryLimit reads a GOMEMLIMIT value as the Go runtime does: a
// positive whole number of bytes with an optional unit (B, KiB, MiB, GiB,
// TiB). The runtime refuses to start on a malformed one, so the bench
// checks it first.
func parseMemoryLimit(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("want a positive size such as 3GiB or 3221225472 (units B, KiB, MiB, GiB, TiB), got %q", s)
	}
	return n * mult, nil
}
