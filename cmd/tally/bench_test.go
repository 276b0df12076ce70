package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// benchBatch is how many reports one intake request carries in BenchmarkIngest.
const benchBatch = 500

// benchReports builds n reports per region, cycling over the region's
// precincts with growing counts, as cumulative reports arrive on the night.
func benchReports(e *tally.Election, n int, round int) map[tally.RegionID][]*tally.Report {
	out := map[tally.RegionID][]*tally.Report{}
	for _, reg := range e.Regions {
		ps := e.RegionPrecincts(reg.ID)
		reps := make([]*tally.Report, n)
		for i := range reps {
			p := e.Precinct(ps[i%len(ps)])
			c := e.Contest(p.Contests[0])
			votes := make(map[tally.CandidateID]int64, len(c.Candidates))
			for j, cand := range c.Candidates {
				votes[cand.ID] = int64(round*n+i) + int64(j)
			}
			reps[i] = &tally.Report{
				ID:     tally.EventID(fmt.Sprintf("%s-bench-%d-%d", reg.ID, round, i)),
				Region: reg.ID, Precinct: p.ID, Contest: c.ID, Votes: votes,
				ReportedAt: time.Date(2020, 11, 3, 20, 0, 0, 0, time.UTC),
			}
		}
		out[reg.ID] = reps
	}
	return out
}

// rawStream starts an embedded JetStream server with one file-backed
// stream, name, of the subjects tally.>, and returns a client of it and a
// func that stops both.
func rawStream(tb testing.TB, name string) (jetstream.JetStream, func()) {
	tb.Helper()
	ns, err := embeddedJS(tb.TempDir(), "", nil)
	if err != nil {
		tb.Fatal(err)
	}
	stop := func() { ns.Shutdown(); ns.WaitForShutdown() }
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		stop()
		tb.Fatal(err)
	}
	stop = func() { nc.Close(); ns.Shutdown(); ns.WaitForShutdown() }
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err == nil {
		_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: name, Subjects: []string{"tally.>"}, Storage: jetstream.FileStorage})
	}
	if err != nil {
		stop()
		tb.Fatal(err)
	}
	return js, stop
}

// rawPublishRate measures the baseline: JetStream async publish of the same
// canonical event bytes, with their Nats-Msg-Id, into one file-backed stream
// on an embedded server, waiting for every ack. It returns events per second.
func rawPublishRate(b *testing.B, reports map[tally.RegionID][]*tally.Report) float64 {
	b.Helper()
	js, stop := rawStream(b, "RAW")
	defer stop()
	var msgs []*nats.Msg
	for _, reps := range reports {
		for _, r := range reps {
			body, err := r.Encode()
			if err != nil {
				b.Fatal(err)
			}
			m := nats.NewMsg(tally.ResultsSubject(r.Region, r.Precinct, r.Contest))
			m.Data = body
			m.Header.Set(jetstream.MsgIDHeader, string(r.ID))
			msgs = append(msgs, m)
		}
	}
	start := time.Now()
	for _, m := range msgs {
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("raw publish did not complete")
	}
	return float64(len(msgs)) / time.Since(start).Seconds()
}

// BenchmarkIngest measures the ingest path, intake to national totals: each
// region's reports are posted over HTTP in batches of benchBatch (one client
// per region, all regions at once), and the clock stops when the hub has
// applied every one of them. It reports events/s, the raw JetStream async
// publish rate of the same event bytes measured in the same run, and their
// ratio. One iteration is one batch per region.
func BenchmarkIngest(b *testing.B) {
	le, err := loadElection(ElectionSource{Results: "bundled", Regions: 2})
	if err != nil {
		b.Fatal(err)
	}
	e := le.Election
	f := MustRunFederation(b, e, false)
	reports := benchReports(e, b.N*benchBatch, 0)
	raw := rawPublishRate(b, reports)

	bodies := map[tally.RegionID][][]byte{}
	total := 0
	for reg, reps := range reports {
		for i := 0; i < len(reps); i += benchBatch {
			body, err := json.Marshal(reps[i:min(i+benchBatch, len(reps))])
			if err != nil {
				b.Fatal(err)
			}
			bodies[reg] = append(bodies[reg], body)
		}
		total += len(reps)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	lastSeq := map[tally.RegionID]uint64{}
	var mu sync.Mutex
	for reg, bs := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := f.intake(reg) + "/api/v1/reports"
			for _, body := range bs {
				seq, err := postBatch(client, url, body)
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				lastSeq[reg] = max(lastSeq[reg], seq)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for reg, seq := range lastSeq {
		deadline := time.Now().Add(2 * time.Minute)
		for f.rec.Applied(reg) < seq {
			if time.Now().After(deadline) {
				b.Fatalf("region %s: hub applied %d of %d", reg, f.rec.Applied(reg), seq)
			}
			time.Sleep(time.Millisecond) // polling the hub's progress
		}
	}
	el := time.Since(start)
	b.StopTimer()
	rate := float64(total) / el.Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(raw, "raw_events/s")
	b.ReportMetric(rate/raw, "ratio")
}

func postBatch(c *http.Client, url string, body []byte) (uint64, error) {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Seq uint64 `json:"seq"`
		} `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("POST %s: %s %v", url, resp.Status, err)
	}
	var last uint64
	for _, r := range out.Results {
		last = max(last, r.Seq)
	}
	return last, nil
}

// BenchmarkStreamSubjects measures what a file-backed JetStream stream
// holds in memory per distinct subject: the same number of events stored
// once under one subject per precinct and contest (as Tally's regions and
// the hub's mirrors store them) and once under a single subject, the live
// heap of this process (the server's) after each, and the difference per
// subject. A national night has some 5 million subjects.
//
//	go test -run '^$' -bench StreamSubjects -benchtime 1x ./cmd/tally
func BenchmarkStreamSubjects(b *testing.B) {
	const n = 200_000
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	stored := func(distinct bool) uint64 {
		ctx := context.Background()
		js, stop := rawStream(b, tally.ResultsStream)
		defer stop()
		before := heap()
		_, err := asyncPublish(ctx, js, func(fn func(*tally.Report) error) error {
			for i := range n {
				p := tally.PrecinctID("p1")
				if distinct {
					p = tally.PrecinctID(fmt.Sprintf("p%06d", i))
				}
				rep := &tally.Report{ID: tally.EventID(fmt.Sprintf("r1-%d", i)), Region: "r1", Precinct: p, Contest: "c1",
					Votes: map[tally.CandidateID]int64{"a": int64(i)}, ReportedAt: time.Date(2026, 11, 3, 21, 0, 0, 0, time.UTC)}
				if err := fn(rep); err != nil {
					return err
				}
			}
			return nil
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		after := heap()
		return after - min(before, after)
	}
	var one, many uint64
	for b.Loop() {
		one, many = stored(false), stored(true)
	}
	b.ReportMetric(float64(one)/n, "heap_bytes/event_one_subject")
	b.ReportMetric(float64(many)/n, "heap_bytes/event_own_subject")
	b.ReportMetric((float64(many)-float64(one))/n, "heap_bytes/subject")
}

var (
	floorPrecincts = flag.Int("floor.precincts", 10_000, "BenchmarkHubMemoryFloor: precincts of the synthetic election")
	floorContests  = flag.Int("floor.contests", 5, "BenchmarkHubMemoryFloor: contests per precinct")
)

// BenchmarkHubMemoryFloor measures the memory the hub cannot do without for
// the night of tally bench's synthetic election (its default shape: 4
// regions, 2 reports per precinct and contest, 1% corrected), with none of
// its other work, in this process (measureMemoryFloor): the live heap the
// election, the totals' cells and JetStream holding the events each add,
// JetStream's again after 30 s idle (the least of a sample every 2 s, as
// its message block caches expire), floor_MiB the rested sum, and
// peak_rss_MiB this process's peak resident set under the collector it
// runs with (GOGC=100 and no memory limit unless GOGC or GOMEMLIMIT say).
//
//	go test -run '^$' -bench HubMemoryFloor -benchtime 1x ./cmd/tally -floor.precincts 175000 -floor.contests 30
func BenchmarkHubMemoryFloor(b *testing.B) {
	o := defaultBenchOptions()
	o.Precincts, o.Contests = *floorPrecincts, *floorContests
	mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
	var f memoryFloor
	for b.Loop() {
		var err error
		if f, err = measureMemoryFloor(context.Background(), b.TempDir(), o, 30*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(f.Events), "events")
	b.ReportMetric(mib(f.Election), "election_MiB")
	b.ReportMetric(mib(f.Cells), "cells_MiB")
	b.ReportMetric(mib(f.JetStream), "jetstream_MiB")
	b.ReportMetric(mib(f.JetStreamRested), "jetstream_rested_MiB")
	b.ReportMetric(float64(f.JetStreamRested)/float64(o.Precincts*o.Contests), "jetstream_rested_bytes/subject")
	b.ReportMetric(mib(f.Election+f.Cells+f.JetStreamRested), "floor_MiB")
	b.ReportMetric(float64(f.PeakRSS)/(1<<20), "peak_rss_MiB")
}
