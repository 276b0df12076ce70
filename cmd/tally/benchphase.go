package main

// The measurements of `tally bench` after the ingest: freshness, fan-out,
// reads and catch-up, each with its baseline.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// prober sends the probe reports: each raises candidate a's votes in the
// probe cell by one, so update k of the probe contest has total_votes
// base+k.
type prober struct {
	b      *benchElection
	c      cell
	intake string
	hc     *http.Client
	k      int64
	base   int64 // the contest's total_votes after the ingest
	prefix []byte
}

// send posts probe k+1 as a single report and returns its number.
func (p *prober) send(ctx context.Context) (int64, error) {
	p.k++
	rep := p.b.report(p.c, p.b.reports-1)
	rep.ID = tally.EventID(fmt.Sprintf("%s-probe-%d", rep.Region, p.k))
	for m, cand := range benchCandidates {
		f, fx := p.b.finalVotes(p.c, m)
		if p.b.corrected(p.c) {
			f = fx
		}
		rep.Votes[cand] = f
	}
	rep.Votes[benchCandidates[0]] += p.k
	rep.ReportedAt = benchNight.Add(24 * time.Hour)
	body := appendReport(nil, rep)
	_, err := postReports(ctx, p.hc, p.intake+"/api/v1/reports", body)
	return p.k, err
}

// quantiles returns p50, p99 and max of ds.
func quantiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	// Nearest rank: the smallest sample with at least pct% of them at or
	// below it. With fewer than 100 samples, p99 is the largest.
	q := func(pct int) time.Duration { return s[max(0, (len(s)*pct+99)/100-1)] }
	return q(50), q(99), s[len(s)-1]
}

// backgroundLoad posts further rounds of reports of every cell but the
// probe contest to every region at rate events/s in total, until ctx ends.
// It returns how many events it sent.
func (b *benchElection) backgroundLoad(ctx context.Context, hc *http.Client, intakes []string, rate float64, batch int, skip tally.ContestID, sent *atomic.Int64) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(b.regions))
	per := rate / float64(len(b.regions))
	for r := range b.regions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cells := b.regionCells(r, 0, 1)
			start := time.Now()
			i, n := 0, 0
			round := b.reports + 100
			for ctx.Err() == nil {
				body := []byte{'['}
				cnt := 0
				for cnt < batch {
					if i == len(cells) {
						i, round = 0, round+1
					}
					c := cells[i]
					i++
					if benchContest(b.regions[r], c.j) == skip {
						continue
					}
					if cnt > 0 {
						body = append(body, ',')
					}
					body = appendReport(body, b.report(c, round))
					cnt++
				}
				body = append(body, ']')
				if _, err := postReports(ctx, hc, intakes[r]+"/api/v1/reports", body); err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				n += cnt
				sent.Add(int64(cnt))
				if wait := time.Until(start.Add(time.Duration(float64(n) / per * float64(time.Second)))); wait > 0 {
					select {
					case <-time.After(wait): // pacing the load
					case <-ctx.Done():
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// baselineFrame returns an SSE contest frame of data with total_votes set
// to total.
func baselineFrame(data []byte, total int64) []byte {
	i := bytes.Index(data, sseTotalVotes)
	out := []byte("id: 1\nevent: contest\ndata: ")
	if i < 0 {
		return append(append(out, data...), "\n\n"...)
	}
	j := i + len(sseTotalVotes)
	for j < len(data) && data[j] >= '0' && data[j] <= '9' {
		j++
	}
	out = append(out, data[:i+len(sseTotalVotes)]...)
	out = strconv.AppendInt(out, total, 10)
	out = append(out, data[j:]...)
	return append(out, "\n\n"...)
}

// postBaseline posts body to the baseline server's path.
func postBaseline(ctx context.Context, hc *http.Client, method, u string, body []byte, etag string) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if etag != "" {
		req.Header.Set("X-ETag", etag)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s", method, u, resp.Status)
	}
	return nil
}

// fanOut measures how long one update takes to reach every viewer: from
// the first viewer's receipt to the last one's, over updates updates, each
// started by trigger(k). It also returns trigger to last receipt.
func fanOut(ctx context.Context, vs viewers, updates int, trigger func(k int64) error, next func() int64) (spreads, ends []time.Duration, missed int, err error) {
	for range updates {
		k := next()
		start := time.Now()
		if err := trigger(k); err != nil {
			return nil, nil, 0, err
		}
		got, live := vs.wait(ctx, k, 30*time.Second)
		missed += len(vs) - got
		if got == 0 {
			return nil, nil, missed, fmt.Errorf("no viewer got update %d (%d live)", k, live)
		}
		first, last, _ := vs.spread(k)
		spreads = append(spreads, last.Sub(first))
		ends = append(ends, last.Sub(start))
		time.Sleep(200 * time.Millisecond) // let the stream settle between updates
	}
	return spreads, ends, missed, ctx.Err()
}

// readRounds is how many turns the reads of Tally and of the baseline take.
const readRounds = 3

// readTurn is what one turn of readLoad measured: requests answered, and
// the time and the server process's CPU time (user and system) they took.
type readTurn struct {
	requests  int64
	elapsed   time.Duration
	serverCPU time.Duration
}

// add adds o's counts and times to t.
func (t *readTurn) add(o readTurn) {
	t.requests, t.elapsed, t.serverCPU = t.requests+o.requests, t.elapsed+o.elapsed, t.serverCPU+o.serverCPU
}

// rate is t's requests per second.
func (t readTurn) rate() float64 { return float64(t.requests) / t.elapsed.Seconds() }

// readLoad measures GET requests on u with n keep-alive clients for d, and
// the CPU time process pid (the server) used meanwhile.
func readLoad(ctx context.Context, u string, n int, d time.Duration, pid int) (readTurn, error) {
	tr := &http.Transport{MaxIdleConns: n, MaxIdleConnsPerHost: n, MaxConnsPerHost: n, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var count atomic.Int64
	var failed atomic.Value
	run := func(dur time.Duration, counting bool) {
		end := time.Now().Add(dur)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) && ctx.Err() == nil {
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil) // u is valid
					resp, err := hc.Do(req)
					if err != nil {
						failed.Store(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						failed.Store(fmt.Errorf("GET %s: %s", u, resp.Status))
						return
					}
					if counting {
						count.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	}
	run(d/5, false) // warm up: connections open, caches hot
	cpu0, err := procCPU(pid)
	if err != nil {
		return readTurn{}, err
	}
	start := time.Now()
	run(d, true)
	el := time.Since(start)
	cpu1, err := procCPU(pid)
	if err != nil {
		return readTurn{}, err
	}
	if err, ok := failed.Load().(error); ok {
		return readTurn{}, err
	}
	return readTurn{requests: count.Load(), elapsed: el, serverCPU: cpu1 - cpu0}, nil
}

// catchUpSeries polls applied() until it reaches target and returns when
// the first event past from was applied, the count applied then, and when
// all were.
func catchUpSeries(ctx context.Context, from, target uint64, timeout time.Duration, applied func() (uint64, error)) (first time.Time, firstN uint64, done time.Time, err error) {
	deadline := time.Now().Add(timeout)
	for {
		n, err := applied()
		now := time.Now()
		if err == nil {
			if first.IsZero() && n > from {
				first, firstN = now, n
			}
			if n >= target {
				if first.IsZero() {
					first, firstN = now, n
				}
				return first, firstN, now, nil
			}
		}
		if now.After(deadline) {
			return first, firstN, now, fmt.Errorf("%d of %d applied after %s (last error: %v)", n, target, timeout, err)
		}
		if ctx.Err() != nil {
			return first, firstN, now, ctx.Err()
		}
		time.Sleep(10 * time.Millisecond) // polling progress
	}
}

// leafPair is two embedded JetStream servers in this process: origin
// (domain "origin", a region's place) linked to hub (domain "hubx") by a
// leaf link through the same kind of TCP proxy the regions use.
type leafPair struct {
	origin, hub *server.Server
	proxy       *linkProxy
	ojs, hjs    jetstream.JetStream // clients of origin and hub
	conns       []*nats.Conn
}

func startLeafPair(dir string) (*leafPair, error) {
	var hopts *server.Options
	hub, err := embeddedJS(dir+"/hubx", "hubx", func(o *server.Options) { o.LeafNode.Host, o.LeafNode.Port, hopts = "127.0.0.1", -1, o })
	if err != nil {
		return nil, err
	}
	lp := &leafPair{hub: hub}
	lp.proxy, err = newLinkProxy(net.JoinHostPort("127.0.0.1", strconv.Itoa(hopts.LeafNode.Port)))
	if err != nil {
		lp.close()
		return nil, err
	}
	u, _ := url.Parse("nats-leaf://" + lp.proxy.Addr()) // a valid URL
	lp.origin, err = embeddedJS(dir+"/origin", "origin", func(o *server.Options) {
		o.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}
		o.LeafNode.ReconnectInterval = time.Second
	})
	if err != nil {
		lp.close()
		return nil, err
	}
	// Wait for the leaf link before anything is mirrored.
	for deadline := time.Now().Add(10 * time.Second); lp.origin.NumLeafNodes() == 0; {
		if time.Now().After(deadline) {
			lp.close()
			return nil, fmt.Errorf("no leaf link between the baseline servers")
		}
		time.Sleep(20 * time.Millisecond) // polling the link
	}
	for _, c := range []struct {
		srv *server.Server
		js  *jetstream.JetStream
	}{{lp.origin, &lp.ojs}, {lp.hub, &lp.hjs}} {
		nc, err := nats.Connect(c.srv.ClientURL())
		if err != nil {
			lp.close()
			return nil, err
		}
		lp.conns = append(lp.conns, nc)
		if *c.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
			lp.close()
			return nil, err
		}
	}
	return lp, nil
}

func (lp *leafPair) close() {
	for _, nc := range lp.conns {
		nc.Close()
	}
	for _, s := range []*server.Server{lp.origin, lp.hub} {
		if s != nil {
			s.Shutdown()
			s.WaitForShutdown()
		}
	}
	if lp.proxy != nil {
		lp.proxy.Close()
	}
}

// mirrorBaseline measures the catch-up baseline: a backlog stored in the
// RESULTS stream of a leafPair's origin, mirrored by a plain JetStream
// mirror on its hub; the mirror is created once the backlog is in place. It
// returns the events mirrored, and the time from the first event in the
// mirror to the last.
//
// With read set it measures the catch-up floor instead: an ordered consumer
// on the hub reads the mirror as it fills (the reconciler's part, without
// its work), and the time runs from the first event read to the last.
func mirrorBaseline(ctx context.Context, dir string, gen func(func(*tally.Report) error) error, region tally.RegionID, read bool, timeout time.Duration) (int, time.Duration, error) {
	lp, err := startLeafPair(dir)
	if err != nil {
		return 0, 0, err
	}
	defer lp.close()
	if _, err := lp.ojs.CreateStream(ctx, jetstream.StreamConfig{Name: tally.ResultsStream, Subjects: []string{tally.ResultsSubjects(region)}, Storage: jetstream.FileStorage}); err != nil {
		return 0, 0, err
	}
	n, err := asyncPublish(ctx, lp.ojs, gen, nil)
	if err != nil {
		return 0, 0, err
	}
	s, err := lp.hjs.CreateStream(ctx, jetstream.StreamConfig{Name: "MIRROR_X", Storage: jetstream.FileStorage,
		Mirror: &jetstream.StreamSource{Name: tally.ResultsStream, Domain: "origin"}})
	if err != nil {
		return 0, 0, err
	}
	count := func() (uint64, error) {
		info, err := s.Info(ctx)
		if err != nil {
			return 0, err
		}
		return info.State.Msgs, nil
	}
	if read {
		var got atomic.Int64
		stop, err := countReads(ctx, lp.hjs, "MIRROR_X", &got)
		if err != nil {
			return 0, 0, err
		}
		defer stop()
		count = func() (uint64, error) { return uint64(got.Load()), nil }
	}
	first, firstN, done, err := catchUpSeries(ctx, 0, uint64(n), timeout, count)
	if err != nil {
		return 0, 0, fmt.Errorf("baseline mirror: %w", err)
	}
	return int(uint64(n) - firstN), done.Sub(first), nil
}

// countReads reads stream with an ordered consumer of js, as Tally's
// consumers read theirs, adding one to n per message; stop ends it.
func countReads(ctx context.Context, js jetstream.JetStream, stream string, n *atomic.Int64) (stop func(), err error) {
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	cc, err := c.Consume(func(jetstream.Msg) { n.Add(1) })
	if err != nil {
		return nil, err
	}
	return cc.Stop, nil
}

// pipelineFloor measures what JetStream alone costs on Tally's ingest path,
// without any of Tally's own work (HTTP, JSON, validation, totals,
// publishing): the events are published asynchronously with their
// Nats-Msg-Id into a file-backed stream on a leafPair's origin, read back
// by an ordered consumer there (a region applies its own stream so), and
// mirrored to the hub, where a second ordered consumer reads the mirror
// (the reconciler's part). It returns the events and the time from the
// first publish until the hub's consumer has read the last.
func pipelineFloor(ctx context.Context, dir string, gen func(func(*tally.Report) error) error, timeout time.Duration) (int, time.Duration, error) {
	lp, err := startLeafPair(dir)
	if err != nil {
		return 0, 0, err
	}
	defer lp.close()
	ojs, hjs := lp.ojs, lp.hjs
	if _, err := ojs.CreateStream(ctx, jetstream.StreamConfig{Name: tally.ResultsStream, Subjects: []string{"tally.>"}, Storage: jetstream.FileStorage}); err != nil {
		return 0, 0, err
	}
	if _, err := hjs.CreateStream(ctx, jetstream.StreamConfig{Name: "MIRROR_X", Storage: jetstream.FileStorage,
		Mirror: &jetstream.StreamSource{Name: tally.ResultsStream, Domain: "origin"}}); err != nil {
		return 0, 0, err
	}
	var read [2]atomic.Int64
	for i, js := range []jetstream.JetStream{ojs, hjs} {
		stop, err := countReads(ctx, js, []string{tally.ResultsStream, "MIRROR_X"}[i], &read[i])
		if err != nil {
			return 0, 0, err
		}
		defer stop()
	}
	start := time.Now()
	n, err := asyncPublish(ctx, ojs, gen, nil)
	if err != nil {
		return 0, 0, err
	}
	for deadline := time.Now().Add(timeout); read[0].Load() < int64(n) || read[1].Load() < int64(n); {
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("pipeline floor: %d and %d of %d events read after %s", read[0].Load(), read[1].Load(), n, timeout)
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(5 * time.Millisecond): // polling the counts
		}
	}
	return n, time.Since(start), nil
}
