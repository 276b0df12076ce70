package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// TestBenchEncoding checks that the bench's hand-written report encoding is
// the canonical one, so that the raw baseline publishes the bytes the
// regions store.
func TestBenchEncoding(t *testing.T) {
	b, err := newBenchElection(20, 3, 2, 2, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []cell{{r: 0, p: 0, j: 0}, {r: 1, p: 15, j: 2}} {
		for _, r := range []*tally.Report{b.report(c, 0), b.report(c, 1), b.correction(c, 42)} {
			want, err := r.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if got := appendReport(nil, r); !bytes.Equal(got, want) {
				t.Errorf("appendReport = %s, want %s", got, want)
			}
		}
	}
}

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{"3GiB": 3 << 30, "512MiB": 512 << 20, "64KiB": 64 << 10, "1TiB": 1 << 40, "1000B": 1000, "1000": 1000} {
		if got, err := parseMemoryLimit(in); err != nil || got != want {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1GiB", "3GB", "3 GiB", "1.5GiB", "GiB", "off", "99999999999TiB"} {
		if got, err := parseMemoryLimit(in); err == nil {
			t.Errorf("parseMemoryLimit(%q) = %d; want an error", in, got)
		}
	}
	m := NewBenchMain(io.Discard, io.Discard)
	if err := m.ParseFlags([]string{"--hub-memory-limit", "3GB"}, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "--hub-memory-limit") {
		t.Errorf("--hub-memory-limit 3GB: %v; want an error naming the flag", err)
	}
}

// TestQuantiles: p50 and p99 by nearest rank, so that p99 of 100 samples is
// the 99th and not the largest.
func TestQuantiles(t *testing.T) {
	ms := func(n int) []time.Duration {
		ds := make([]time.Duration, n)
		for i := range ds {
			ds[i] = time.Duration(n-i) * time.Millisecond // descending: quantiles sorts
		}
		return ds
	}
	for _, c := range []struct {
		n             int
		p50, p99, max time.Duration
	}{
		{0, 0, 0, 0},
		{1, time.Millisecond, time.Millisecond, time.Millisecond},
		{10, 5 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},
		{100, 50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond},
		{1000, 500 * time.Millisecond, 990 * time.Millisecond, 1000 * time.Millisecond},
	} {
		p50, p99, mx := quantiles(ms(c.n))
		if p50 != c.p50 || p99 != c.p99 || mx != c.max {
			t.Errorf("%d samples: p50 %v p99 %v max %v; want %v %v %v", c.n, p50, p99, mx, c.p50, c.p99, c.max)
		}
	}
}

// TestBenchCommand runs `tally bench --quick` (the hub, the regions and the
// baseline server as child processes of the built binary) and checks that
// every row of the table has positive figures, and that --json parses.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and two regions")
	}
	exe := MustBuildTally(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, logs bytes.Buffer
	m := NewBenchMain(&out, &logs)
	m.Exe = exe
	profiles := t.TempDir()
	if err := m.ParseFlags([]string{"--quick", "--json", "--viewers", "100", "--backlog", "2000", "--profile", profiles, "--hub-memory-limit", "1GiB"}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatalf("bench: %v\nprogress:\n%s", err, logs.String())
	}
	var rep benchReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out.String())
	}
	if !rep.Completed {
		t.Errorf("completed = false")
	}
	want := []string{"ingest", "ingest floor", "CPU per event", "freshness p50", "freshness p99", "fan-out p50", "fan-out p99", "reads", "reads CPU/req", "catch-up", "catch-up floor", "hub peak RSS", "hub memory floor", "region peak RSS"}
	got := map[string]benchRow{}
	for _, r := range rep.Rows {
		got[r.Name] = r
	}
	for _, name := range want {
		r, ok := got[name]
		if !ok {
			t.Errorf("no row %q", name)
			continue
		}
		if r.Value <= 0 || r.Baseline <= 0 || r.Ratio <= 0 {
			t.Errorf("row %q: value %v, baseline %v, ratio %v; want all positive", name, r.Value, r.Baseline, r.Ratio)
		}
	}
	if rep.Machine.Cores <= 0 || rep.Machine.Go == "" {
		t.Errorf("machine = %+v", rep.Machine)
	}
	// --hub-memory-limit reaches the hub: it logs the limit it runs with.
	if notes := strings.Join(rep.Notes, "\n"); !strings.Contains(notes, "GOMEMLIMIT=1GiB") || !strings.Contains(notes, "memory_limit 1073741824") {
		t.Errorf("notes do not say the hub ran with a 1 GiB limit:\n%s", notes)
	}
	if rep.Setup.HubMemoryLimit != "1GiB" {
		t.Errorf("setup.hub_memory_limit = %q, want 1GiB", rep.Setup.HubMemoryLimit)
	}
	if !strings.Contains(logs.String(), "[ingest") {
		t.Errorf("no progress line for the ingest:\n%s", logs.String())
	}

	// --profile: a CPU profile per phase (gzipped protobuf) of the hub and
	// of each region, and a heap profile at the end.
	for _, role := range []string{"hub", "r1"} {
		for _, name := range []string{"cpu.*-start", "cpu.*-ingest", "cpu.*-reads", "cpu.*-catch-up", "heap"} {
			files, _ := filepath.Glob(filepath.Join(profiles, role+"."+name+".pprof"))
			if len(files) != 1 {
				t.Errorf("profiles %s.%s.pprof: %v; want one", role, name, files)
				continue
			}
			b, err := os.ReadFile(files[0])
			if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
				t.Errorf("profile %s: %d bytes, %v; want a gzipped profile", files[0], len(b), err)
			}
		}
	}

	// The table form prints the same rows.
	var table bytes.Buffer
	rep.print(&table)
	for _, name := range want {
		if !strings.Contains(table.String(), name+" ") {
			t.Errorf("table has no row %q:\n%s", name, table.String())
		}
	}
}
