package main

// The hub's memory floor: what the hub must hold for the bench's night with
// none of its other work, measured in a process of its own (tally bench
// --memory-floor DIR) so that its peak resident set is its own.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// memoryFloor is what measureMemoryFloor found: the growth of the live
// heap (after a collection) for each part, and the process's peak RSS.
type memoryFloor struct {
	Events int `json:"events"`
	// Election: the election and its index.
	Election uint64 `json:"election_bytes"`
	// Cells: the national totals with every event applied.
	Cells uint64 `json:"cells_bytes"`
	// JetStream: the server holding every event, right after the last
	// acknowledgement; JetStreamRested: the least over the rest that
	// followed (0 without one), as its message block caches expire.
	JetStream       uint64 `json:"jetstream_bytes"`
	JetStreamRested uint64 `json:"jetstream_rested_bytes,omitempty"`
	// PeakRSS: this process's VmHWM at the end, under the collector it ran
	// with (GOGC=100 and no memory limit unless its environment says).
	PeakRSS int64 `json:"peak_rss_bytes"`
}

// liveHeap collects garbage and returns the live heap.
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// grown returns how much the live heap grew from before to after; 0 when it
// shrank.
func grown(before, after uint64) uint64 { return after - min(before, after) }

// measureMemoryFloor measures, in this process, what the hub cannot do
// without for the night of a synthetic election of size o (its ingest's
// events, corrections included; retries are duplicates and not stored): the
// election and its index; the national totals (tally.Totals) with every
// event applied, their cells; and JetStream holding the events in one
// file-backed stream per region under dir, every precinct and contest its
// own subject, as in the hub's mirrors (published without Nats-Msg-Id: a
// mirror keeps no duplicate window). With rest > 0 it then samples the live
// heap every 2 s for rest and keeps the least.
func measureMemoryFloor(ctx context.Context, dir string, o benchOptions, rest time.Duration) (memoryFloor, error) {
	var f memoryFloor
	start := liveHeap()
	be, err := newBenchElection(o.Precincts, o.Contests, o.Regions, o.Reports, o.Corrections)
	if err != nil {
		return f, err
	}
	atElection := liveHeap()

	// The events in the order the ingest's clients make them, each region's
	// numbered from 1 as its stream stores them; a correction names its
	// final report's sequence.
	seq := map[tally.RegionID]uint64{}
	finalSeq := map[cell]uint64{}
	night := func(fn func(seq uint64, r *tally.Report) error) error {
		clear(seq)
		return be.events(o.Clients, finalSeq, func(r *tally.Report) error {
			seq[r.Region]++
			if r.Complete && r.Correction == nil {
				if c := cellOf(r); be.corrected(c) {
					finalSeq[c] = seq[r.Region]
				}
			}
			return fn(seq[r.Region], r)
		})
	}
	tt := tally.NewTotals(be.e)
	if err := night(func(seq uint64, r *tally.Report) error {
		tt.Apply(seq, r)
		return nil
	}); err != nil {
		return f, err
	}
	withCells := liveHeap()

	ns, err := embeddedJS(dir, "", nil)
	if err != nil {
		return f, err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return f, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return f, err
	}
	for _, r := range be.regions {
		cfg := jetstream.StreamConfig{Name: "FLOOR_" + string(r), Subjects: []string{tally.ResultsSubjects(r)}, Storage: jetstream.FileStorage}
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			return f, err
		}
	}
	f.Events, err = publishReports(ctx, js, func(fn func(*tally.Report) error) error {
		return night(func(_ uint64, r *tally.Report) error { return fn(r) })
	}, nil, false)
	if err != nil {
		return f, fmt.Errorf("memory floor: %w", err)
	}
	stored := liveHeap()
	if rest > 0 {
		rested := stored
		for end := time.Now().Add(rest); time.Now().Before(end); {
			select {
			case <-ctx.Done():
				return f, ctx.Err()
			case <-time.After(2 * time.Second):
			}
			rested = min(rested, liveHeap())
		}
		f.JetStreamRested = grown(withCells, rested)
	}
	if f.PeakRSS, err = procStatusBytes(os.Getpid(), "VmHWM:"); err != nil {
		return f, err
	}
	runtime.KeepAlive(tt)
	f.Election, f.Cells, f.JetStream = grown(start, atElection), grown(atElection, withCells), grown(withCells, stored)
	return f, nil
}

// memoryFloorLine prefixes the line with which tally bench --memory-floor
// prints its result, as JSON.
const memoryFloorLine = "memory-floor "

// runMemoryFloor measures the memory floor of the night of size o in a child
// process (tally bench --memory-floor DIR), its store under dir, under Go's
// default collector.
func runMemoryFloor(ctx context.Context, exe, dir string, o benchOptions) (memoryFloor, error) {
	var f memoryFloor
	args := []string{"bench", "--memory-floor", filepath.Join(dir, "memory-floor"),
		"--precincts", strconv.Itoa(o.Precincts), "--contests", strconv.Itoa(o.Contests), "--regions", strconv.Itoa(o.Regions),
		"--reports", strconv.Itoa(o.Reports), "--corrections", strconv.FormatFloat(o.Corrections, 'g', -1, 64), "--clients", strconv.Itoa(o.Clients)}
	c, line, err := startChild(ctx, "memory floor", exe, args, filepath.Join(dir, "memory-floor.log"), true,
		func(line []byte) bool { return bytes.HasPrefix(line, []byte(memoryFloorLine)) }, 30*time.Minute,
		"GOGC=100", "GOMEMLIMIT=off") // Go's default collector, whatever the bench runs with
	if err != nil {
		return f, err
	}
	if err := c.stop(time.Minute); err != nil {
		return f, err
	}
	if err := json.Unmarshal(bytes.TrimPrefix(line, []byte(memoryFloorLine)), &f); err != nil {
		return f, fmt.Errorf("memory floor: %w", err)
	}
	return f, nil
}
