package main

// The load of `tally bench`: reports posted to the regions' HTTP intake in
// batches, the raw JetStream baselines, and the hub's progress.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// intakeAnswer is the intake's answer to a submission.
type intakeAnswer struct {
	Results []struct {
		ID        tally.EventID `json:"id"`
		Seq       uint64        `json:"seq"`
		Duplicate bool          `json:"duplicate"`
	} `json:"results"`
}

// postReports posts body (a JSON array of reports) to url and decodes the
// answer.
func postReports(ctx context.Context, c *http.Client, url string, body []byte) (*intakeAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST %s: %s: %s", url, resp.Status, bytes.TrimSpace(b))
	}
	var a intakeAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("POST %s: %v", url, err)
	}
	return &a, nil
}

// ingestStats counts what the load sent.
type ingestStats struct {
	sent       atomic.Int64 // events accepted (not retries)
	retried    atomic.Int64 // batches sent twice
	duplicates atomic.Int64 // reports answered as duplicates of a retry
	lastSeq    []atomic.Uint64
	mu         sync.Mutex
	finalSeq   map[cell]uint64 // the sequence of each corrected cell's final report
}

// ingestClient sends region r's share client of the cells: every round of
// reports, in batches, a share of batches twice; then the corrections.
func (b *benchElection) ingestClient(ctx context.Context, hc *http.Client, intake string, r, client, clients, batch int, retries float64, st *ingestStats) error {
	cells := b.regionCells(r, client, clients)
	type item struct {
		c   cell
		rep *tally.Report
	}
	send := func(path string, items []item, retry bool) error {
		body := append(make([]byte, 0, len(items)*200), '[')
		for i, it := range items {
			if i > 0 {
				body = append(body, ',')
			}
			body = appendReport(body, it.rep)
		}
		body = append(body, ']')
		a, err := postReports(ctx, hc, intake+path, body)
		if err != nil {
			return err
		}
		if len(a.Results) != len(items) {
			return fmt.Errorf("POST %s: %d results for %d reports", intake+path, len(a.Results), len(items))
		}
		var last uint64
		for i, res := range a.Results {
			last = max(last, res.Seq)
			it := items[i]
			if it.rep.Complete && it.rep.Correction == nil && b.corrected(it.c) {
				st.mu.Lock()
				st.finalSeq[it.c] = res.Seq
				st.mu.Unlock()
			}
		}
		st.sent.Add(int64(len(items)))
		for {
			cur := st.lastSeq[r].Load()
			if last <= cur || st.lastSeq[r].CompareAndSwap(cur, last) {
				break
			}
		}
		if retry {
			// An office that missed the answer sends the batch again.
			a, err := postReports(ctx, hc, intake+path, body)
			if err != nil {
				return fmt.Errorf("retry: %w", err)
			}
			st.retried.Add(1)
			for _, res := range a.Results {
				if !res.Duplicate {
					return fmt.Errorf("retry of a batch: report %s stored again, not recognised as a duplicate", res.ID)
				}
				st.duplicates.Add(1)
			}
		}
		return nil
	}
	items := make([]item, 0, batch)
	n := 0
	flush := func(path string) error {
		if len(items) == 0 {
			return nil
		}
		n++
		retry := float64(cell{p: n, j: client, r: r}.hash(-2)%100000) < retries*100000
		err := send(path, items, retry)
		items = items[:0]
		return err
	}
	for k := range b.reports {
		for _, c := range cells {
			items = append(items, item{c, b.report(c, k)})
			if len(items) == batch {
				if err := flush("/api/v1/reports"); err != nil {
					return err
				}
			}
		}
	}
	if err := flush("/api/v1/reports"); err != nil {
		return err
	}
	for _, c := range cells {
		if !b.corrected(c) {
			continue
		}
		st.mu.Lock()
		seq := st.finalSeq[c]
		st.mu.Unlock()
		items = append(items, item{c, b.correction(c, seq)})
		if len(items) == batch {
			if err := flush("/api/v1/corrections"); err != nil {
				return err
			}
		}
	}
	return flush("/api/v1/corrections")
}

// events returns every event the ingest stores, reports then corrections,
// as the load sends them, calling fn with each. finalSeq gives the
// corrections' superseded sequences.
func (b *benchElection) events(clients int, finalSeq map[cell]uint64, fn func(*tally.Report) error) error {
	for r := range b.regions {
		for client := range clients {
			cells := b.regionCells(r, client, clients)
			for k := range b.reports {
				for _, c := range cells {
					if err := fn(b.report(c, k)); err != nil {
						return err
					}
				}
			}
			for _, c := range cells {
				if b.corrected(c) {
					if err := fn(b.correction(c, finalSeq[c])); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// embeddedJS starts an embedded JetStream server with file storage in dir.
func embeddedJS(dir, domain string, mod func(*server.Options)) (*server.Server, error) {
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, JetStreamDomain: domain, NoLog: true, NoSigs: true}
	if mod != nil {
		mod(opts)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats server not ready")
	}
	return ns, nil
}

// asyncPublish publishes the events gen yields into js, each with its id as
// Nats-Msg-Id, asynchronously, and waits for every acknowledgement. It
// returns how many it published.
func asyncPublish(ctx context.Context, js jetstream.JetStream, gen func(func(*tally.Report) error) error, done *atomic.Int64) (int, error) {
	return publishReports(ctx, js, gen, done, true)
}

// publishReports is asyncPublish, with each event's id as Nats-Msg-Id only
// when msgIDs.
func publishReports(ctx context.Context, js jetstream.JetStream, gen func(func(*tally.Report) error) error, done *atomic.Int64, msgIDs bool) (int, error) {
	n := 0
	buf := make([]byte, 0, 512)
	err := gen(func(r *tally.Report) error {
		buf = appendReport(buf[:0], r)
		m := nats.NewMsg(tally.ResultsSubject(r.Region, r.Precinct, r.Contest))
		m.Data = bytes.Clone(buf)
		if msgIDs {
			m.Header.Set(jetstream.MsgIDHeader, string(r.ID))
		}
		// A store slower than the publisher (a large run on a loaded
		// machine) stalls it: it waits, up to a bound far above any pause.
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
			return err
		}
		n++
		if done != nil {
			done.Add(1)
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return n, ctx.Err()
	case <-time.After(5 * time.Minute):
		return n, fmt.Errorf("async publish: acknowledgements missing after 5 minutes")
	}
	return n, nil
}

// rawPublish measures the ingest baseline: JetStream async publish of the
// same event bytes, with their Nats-Msg-Id, into one file-backed stream on
// an embedded server in this process. It returns events per second.
func rawPublish(ctx context.Context, dir string, gen func(func(*tally.Report) error) error, done *atomic.Int64) (int, time.Duration, error) {
	ns, err := embeddedJS(dir, "", nil)
	if err != nil {
		return 0, 0, err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return 0, 0, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"tally.>"}, Storage: jetstream.FileStorage}); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	n, err := asyncPublish(ctx, js, gen, done)
	return n, time.Since(start), err
}

// hubApplied returns the last sequence of each region's stream the hub
// applied to the national totals, from its /metrics
// (tally_region_applied_seq), or from /api/v1/regions when the metric is
// not there (that one is refreshed once a second).
func hubApplied(ctx context.Context, c *http.Client, api string) (map[tally.RegionID]uint64, error) {
	out := map[tally.RegionID]uint64{}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	const prefix = `tally_region_applied_seq{region="`
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		reg, rest, ok := strings.Cut(line[len(prefix):], `"} `)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err == nil {
			out[tally.RegionID(reg)] = uint64(v)
		}
	}
	resp.Body.Close()
	if len(out) > 0 {
		return out, nil
	}
	var sts []tally.RegionStatus
	if err := getJSONCtx(ctx, c, api+"/api/v1/regions", &sts); err != nil {
		return nil, err
	}
	for _, s := range sts {
		out[s.ID] = s.Applied
	}
	return out, nil
}

// getJSONCtx fetches url into v.
func getJSONCtx(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.Unmarshal(b, v)
}

// waitApplied polls the hub until it applied at least want[r] of every
// region, or the timeout passes. It returns when it saw that.
func waitApplied(ctx context.Context, c *http.Client, api string, want map[tally.RegionID]uint64, timeout time.Duration, applied *atomic.Int64) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		got, err := hubApplied(ctx, c, api)
		now := time.Now()
		if err == nil {
			done := true
			var sum uint64
			for r, w := range want {
				sum += min(got[r], w)
				if got[r] < w {
					done = false
				}
			}
			if applied != nil {
				applied.Store(int64(sum))
			}
			if done {
				return now, nil
			}
		}
		if now.After(deadline) {
			return now, fmt.Errorf("hub applied %v after %s, want %v (last error: %v)", got, timeout, want, err)
		}
		if ctx.Err() != nil {
			return now, ctx.Err()
		}
		time.Sleep(20 * time.Millisecond) // polling the hub's progress
	}
}

// waitReady polls the gateway's /readyz until it answers 200.
func waitReady(ctx context.Context, c *http.Client, api string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hub not ready after %s", timeout)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(100 * time.Millisecond) // polling readiness
	}
}

// regionJS connects to a region node's NATS as its own user.
func regionJS(natsURL, password string) (*nats.Conn, jetstream.JetStream, error) {
	u, err := url.Parse(natsURL)
	if err != nil {
		return nil, nil, err
	}
	u.User = nil
	nc, err := nats.Connect(u.String(), nats.UserInfo("tally-node", password), nats.Name("tally-bench"))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
