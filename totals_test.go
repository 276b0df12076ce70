package tally_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// LastContestSeqs gives each region's latest sequence per contest, from
// the cells: a later report of a cell counts, a redelivered one does not.
func TestTotalsLastContestSeqs(t *testing.T) {
	e, _ := MustBuildSmall(t)
	p1, p2 := e.Precinct("xa-north-1"), e.Precinct("xa-north-2")
	tt := tally.NewTotals(e)
	rep := func(p *tally.Precinct, id string) *tally.Report {
		return &tally.Report{ID: tally.EventID(string(p.Region) + "-" + id), Region: p.Region, Precinct: p.ID, Contest: "xa-president",
			Votes: map[tally.CandidateID]int64{"smith": 1, "jones": 2}}
	}
	if got := tt.LastContestSeqs(); len(got) != 0 {
		t.Errorf("LastContestSeqs of no cells = %v", got)
	}
	for i, r := range []*tally.Report{rep(p1, "a"), rep(p2, "b"), rep(p1, "c")} {
		if !tt.Apply(uint64(5+i), r) {
			t.Fatalf("report %d not applied", i)
		}
	}
	tt.Apply(6, rep(p2, "b")) // redelivered
	want := map[tally.RegionID]map[tally.ContestID]uint64{p1.Region: {"xa-president": 7}}
	if p2.Region != p1.Region {
		t.Fatalf("precincts in regions %s and %s; the test wants one", p1.Region, p2.Region)
	}
	if got := tt.LastContestSeqs(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("LastContestSeqs = %v, want %v", got, want)
	}
}

func TestTotalsApply(t *testing.T) {
	e, _ := MustBuildSmall(t)
	p1, p2 := e.Precinct("xa-north-1"), e.Precinct("xa-north-2")
	rep := func(p *tally.Precinct, id string, smith, jones int64, complete bool) *tally.Report {
		return &tally.Report{ID: tally.EventID(string(p.Region) + "-" + id), Region: p.Region, Precinct: p.ID, Contest: "xa-president",
			Votes: map[tally.CandidateID]int64{"smith": smith, "jones": jones}, Complete: complete}
	}
	tt := tally.NewTotals(e)
	steps := []struct {
		seq     uint64
		r       *tally.Report
		applied bool
	}{
		{1, rep(p1, "a", 10, 5, false), true},
		{2, rep(p2, "b", 3, 4, true), true},
		{3, rep(p1, "c", 20, 9, true), true},  // replaces a
		{2, rep(p2, "b", 3, 4, true), false},  // redelivered: ignored
		{3, rep(p1, "c", 20, 9, true), false}, // redelivered: ignored
	}
	for _, s := range steps {
		if got := tt.Apply(s.seq, s.r); got != s.applied {
			t.Fatalf("Apply(%d) = %v, want %v", s.seq, got, s.applied)
		}
	}
	fix := rep(p1, "d", 19, 9, true)
	fix.Correction = &tally.Correction{Supersedes: "c", SupersedesSeq: 3, Reason: "typo"}
	if !tt.Apply(4, fix) {
		t.Fatal("correction not applied")
	}
	ct := tt.Contest("xa-president")
	if ct.Votes["smith"] != 22 || ct.Votes["jones"] != 13 {
		t.Errorf("votes = %v, want smith 22, jones 13", ct.Votes)
	}
	if ct.Reporting != 2 || ct.Complete != 2 || ct.Corrections != 1 {
		t.Errorf("reporting, complete, corrections = %d, %d, %d; want 2, 2, 1", ct.Reporting, ct.Complete, ct.Corrections)
	}
	if got := tt.LastSeq(p1.Region); got != 4 {
		t.Errorf("LastSeq = %d, want 4", got)
	}
	res := tt.ContestResult("xa-president", map[tally.RegionID]tally.RegionStatus{p1.Region: {Status: tally.StatusOffline}})
	if !res.Partial || res.TotalVotes != 35 || res.Candidates[0].ID != "smith" || res.Precincts.Total != 4 {
		t.Errorf("result = %+v, want partial, 35 votes, smith first, 4 precincts", res)
	}
	nat := tally.NationalResult("President", []tally.ContestResult{res, tt.ContestResult("xb-president", nil)})
	if nat.ID != tally.NationalContestID("President") || nat.TotalVotes != 35 || nat.Precincts.Total != 6 || !nat.Partial {
		t.Errorf("national = %+v", nat)
	}
}

// benchCellsElection is the election of BenchmarkTotalsCells: precincts x
// contests cells, 3 candidates each, in two regions.
func benchCellsElection(b *testing.B, precincts, contests int) *tally.Election {
	e := &tally.Election{ID: "bench", Name: "Bench", Date: "2026-11-03",
		Regions: []tally.Region{{ID: "r1", Name: "R1"}, {ID: "r2", Name: "R2"}}}
	var cids []tally.ContestID
	for c := range contests {
		id := tally.ContestID(fmt.Sprintf("c%d", c))
		cids = append(cids, id)
		e.Contests = append(e.Contests, tally.Contest{ID: id, Name: string(id), Office: string(id), Seats: 1,
			Candidates: []tally.Candidate{{ID: "a", Name: "A"}, {ID: "b", Name: "B"}, {ID: "c", Name: "C"}}})
	}
	for p := range precincts {
		e.Precincts = append(e.Precincts, tally.Precinct{ID: tally.PrecinctID(fmt.Sprintf("p%06d", p)), Name: "P",
			County: fmt.Sprintf("county-%d", p/500), Region: e.Regions[p%2].ID, Contests: slices.Clone(cids)})
	}
	if err := e.Validate(); err != nil {
		b.Fatal(err)
	}
	return e
}

// benchReport is a report as decoded, with strings of its own, of precinct
// p in contest c: the seq'th event of p's region.
func benchReport(p *tally.Precinct, c tally.ContestID, seq uint64, at time.Time) *tally.Report {
	return &tally.Report{ID: tally.EventID(fmt.Sprintf("%s-%d", p.Region, seq)), Region: p.Region,
		Precinct: tally.PrecinctID(strings.Clone(string(p.ID))), Contest: tally.ContestID(strings.Clone(string(c))),
		Votes: map[tally.CandidateID]int64{"a": 10, "b": 20, "c": 30}, Complete: true, ReportedAt: at}
}

// BenchmarkTotalsCells applies one report to every precinct and contest of
// an election of 20,000 precincts and 5 contests of 3 candidates (100,000
// cells), and reports the live heap the Totals holds per cell, as measured
// after a collection, with the reports themselves dropped; then the heap a
// Copy of it holds per cell, and how long the Copy took.
//
//	go test -run '^$' -bench TotalsCells -benchtime 3x .
func BenchmarkTotalsCells(b *testing.B) {
	const precincts, contests = 20_000, 5
	e := benchCellsElection(b, precincts, contests)
	at := time.Date(2026, 11, 3, 21, 0, 0, 0, time.UTC)
	var perCell, perCopy float64
	var copyTime time.Duration
	for b.Loop() {
		b.StopTimer()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		tt := tally.NewTotals(e)
		seq := map[tally.RegionID]uint64{}
		b.StartTimer()
		for i := range e.Precincts {
			p := &e.Precincts[i]
			for _, c := range p.Contests {
				seq[p.Region]++
				tt.Apply(seq[p.Region], benchReport(p, c, seq[p.Region], at))
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perCell = float64(after.HeapAlloc-before.HeapAlloc) / (precincts * contests)
		start := time.Now()
		cp := tt.Copy()
		copyTime = time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&before)
		perCopy = float64(before.HeapAlloc-after.HeapAlloc) / (precincts * contests)
		runtime.KeepAlive(tt)
		runtime.KeepAlive(cp)
		b.StartTimer()
	}
	b.ReportMetric(perCell, "heap_bytes/cell")
	b.ReportMetric(perCopy, "copy_heap_bytes/cell")
	b.ReportMetric(float64(copyTime.Nanoseconds())/(precincts*contests), "copy_ns/cell")
}

// BenchmarkTotalsSnapshotJSON measures the totals' part of the
// reconciler's snapshot, JSON as TotalsCopy.WriteJSON writes it, for the
// election of BenchmarkTotalsCells (100,000 cells): its bytes per cell and
// the time to write it; then a restore from the whole state (decoding the
// JSON into a TotalsState, then RestoreTotals): its time per cell, the bytes it
// allocates per cell and the live heap the decoded state holds per cell
// before the Totals is rebuilt from it; then the same restore by
// ReadTotals, a cell at a time: it holds no decoded state; its time and
// the bytes it allocates per cell. Last the compact form (WriteCompact,
// ReadTotalsCompact), which snapshots use: its bytes and times per cell,
// and the bytes reading it allocates per cell.
//
//	go test -run '^$' -bench TotalsSnapshotJSON -benchtime 3x .
func BenchmarkTotalsSnapshotJSON(b *testing.B) {
	const precincts, contests = 20_000, 5
	const cells = precincts * contests
	e := benchCellsElection(b, precincts, contests)
	at := time.Date(2026, 11, 3, 21, 0, 0, 0, time.UTC)
	tt := tally.NewTotals(e)
	seq := map[tally.RegionID]uint64{}
	for i := range e.Precincts {
		p := &e.Precincts[i]
		for _, c := range p.Contests {
			seq[p.Region]++
			tt.Apply(seq[p.Region], benchReport(p, c, seq[p.Region], at))
		}
	}
	var size, writeNS, restoreNS, alloc, stateHeap, readNS, readAlloc float64
	var compactSize, compactWriteNS, compactWriteAlloc, compactReadNS, compactReadAlloc float64
	for b.Loop() {
		var buf bytes.Buffer
		start := time.Now()
		if err := tt.Copy().WriteJSON(&buf); err != nil {
			b.Fatal(err)
		}
		writeNS = float64(time.Since(start).Nanoseconds()) / cells
		size = float64(buf.Len()) / cells

		// The whole state decoded, then restored.
		b.StopTimer()
		runtime.GC()
		var m0, m1, m2 runtime.MemStats
		runtime.ReadMemStats(&m0)
		b.StartTimer()
		start = time.Now()
		var s tally.TotalsState
		if err := json.Unmarshal(buf.Bytes(), &s); err != nil {
			b.Fatal(err)
		}
		decodeTime := time.Since(start)
		b.StopTimer()
		runtime.ReadMemStats(&m1)
		runtime.GC()
		runtime.ReadMemStats(&m2)
		stateHeap = float64(int64(m2.HeapAlloc)-int64(m0.HeapAlloc)) / cells
		b.StartTimer()
		start = time.Now()
		got, err := tally.RestoreTotals(e, &s)
		if err != nil {
			b.Fatal(err)
		}
		restoreNS = float64((decodeTime + time.Since(start)).Nanoseconds()) / cells
		b.StopTimer()
		var m3 runtime.MemStats
		runtime.ReadMemStats(&m3)
		alloc = float64(m1.TotalAlloc-m0.TotalAlloc+m3.TotalAlloc-m2.TotalAlloc) / cells
		if got.Events() != tt.Events() {
			b.Fatalf("restored %d events, want %d", got.Events(), tt.Events())
		}
		runtime.KeepAlive(&s)

		// ReadTotals, a cell at a time: no decoded state.
		runtime.GC()
		runtime.ReadMemStats(&m0)
		b.StartTimer()
		start = time.Now()
		read, err := tally.ReadTotals(e, json.NewDecoder(bytes.NewReader(buf.Bytes())))
		if err != nil {
			b.Fatal(err)
		}
		readNS = float64(time.Since(start).Nanoseconds()) / cells
		b.StopTimer()
		runtime.ReadMemStats(&m1)
		if read.Events() != tt.Events() {
			b.Fatalf("read %d events, want %d", read.Events(), tt.Events())
		}
		readAlloc = float64(m1.TotalAlloc-m0.TotalAlloc) / cells

		// The compact form, written and read a group at a time. The
		// buffer has room for it, so that the bytes the write allocates
		// are the copy's and the encoder's.
		var cbuf bytes.Buffer
		cbuf.Grow(64 * cells)
		runtime.GC()
		runtime.ReadMemStats(&m0)
		b.StartTimer()
		start = time.Now()
		if err := tt.Copy().WriteCompact(&cbuf); err != nil {
			b.Fatal(err)
		}
		compactWriteNS = float64(time.Since(start).Nanoseconds()) / cells
		b.StopTimer()
		runtime.ReadMemStats(&m1)
		compactWriteAlloc = float64(m1.TotalAlloc-m0.TotalAlloc) / cells
		compactSize = float64(cbuf.Len()) / cells
		runtime.GC()
		runtime.ReadMemStats(&m0)
		b.StartTimer()
		start = time.Now()
		cread, err := tally.ReadTotalsCompact(e, json.NewDecoder(&cbuf))
		if err != nil {
			b.Fatal(err)
		}
		compactReadNS = float64(time.Since(start).Nanoseconds()) / cells
		b.StopTimer()
		runtime.ReadMemStats(&m1)
		if cread.Events() != tt.Events() {
			b.Fatalf("read %d events, want %d", cread.Events(), tt.Events())
		}
		compactReadAlloc = float64(m1.TotalAlloc-m0.TotalAlloc) / cells
		b.StartTimer()
	}
	b.ReportMetric(size, "json_bytes/cell")
	b.ReportMetric(writeNS, "write_ns/cell")
	b.ReportMetric(restoreNS, "restore_ns/cell")
	b.ReportMetric(alloc, "restore_alloc_bytes/cell")
	b.ReportMetric(stateHeap, "decoded_state_bytes/cell")
	b.ReportMetric(readNS, "read_ns/cell")
	b.ReportMetric(readAlloc, "read_alloc_bytes/cell")
	b.ReportMetric(compactSize, "compact_bytes/cell")
	b.ReportMetric(compactWriteNS, "compact_write_ns/cell")
	b.ReportMetric(compactWriteAlloc, "compact_write_alloc_bytes/cell")
	b.ReportMetric(compactReadNS, "compact_read_ns/cell")
	b.ReportMetric(compactReadAlloc, "compact_read_alloc_bytes/cell")
}
