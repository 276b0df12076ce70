package main

// The viewers of `tally bench`: Server-Sent Events clients on raw loopback
// connections, cheap enough to run ten thousand of in one process. A viewer
// watches one contest's events and notes when each update arrived; an
// update is recognised by the contest's total_votes, which every probe
// report of the bench raises by one.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// viewer is one SSE connection.
type viewer struct {
	conn   net.Conn
	prefix []byte // the data of the watched contest's events starts with this
	base   int64  // total_votes of update 0
	times  []int64
	seen   atomic.Int64 // the latest update seen; -1 before the first event
	alive  atomic.Bool
	last   atomic.Pointer[[]byte] // the latest data of the contest, when keep is set
	keep   bool
}

// dialViewer opens a viewer of rawURL (an SSE endpoint) watching the events
// whose name is event and whose data starts with prefix; it can note up to
// updates updates, numbered by total_votes - base.
func dialViewer(ctx context.Context, rawURL string, prefix []byte, base int64, updates int, keep bool) (*viewer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nAccept: text/event-stream\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("GET %s: %w", rawURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("GET %s: %s", rawURL, resp.Status)
	}
	_ = conn.SetReadDeadline(time.Time{})
	v := &viewer{conn: conn, prefix: prefix, base: base, times: make([]int64, updates+1), keep: keep}
	v.seen.Store(-1)
	v.alive.Store(true)
	go v.read(bufio.NewReaderSize(resp.Body, 8192))
	return v, nil
}

var (
	sseEvent      = []byte("event: ")
	sseData       = []byte("data: ")
	sseTotalVotes = []byte(`"total_votes":`)
)

// read parses the stream until the connection closes.
func (v *viewer) read(r *bufio.Reader) {
	defer v.alive.Store(false)
	watched := false
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A long data line: its start says all we need.
			v.line(line, &watched)
			for err == bufio.ErrBufferFull {
				_, err = r.ReadSlice('\n')
			}
			if err != nil {
				return
			}
			continue
		}
		if err != nil {
			return
		}
		v.line(line, &watched)
	}
}

// isContestEvent reports whether an SSE line names a contest event.
func isContestEvent(line []byte) bool {
	return bytes.HasPrefix(line, sseEvent) && bytes.Equal(bytes.TrimSpace(line[len(sseEvent):]), []byte("contest"))
}

func (v *viewer) line(line []byte, watched *bool) {
	switch {
	case bytes.HasPrefix(line, sseEvent):
		*watched = isContestEvent(line)
	case *watched && bytes.HasPrefix(line, sseData) && bytes.HasPrefix(line[len(sseData):], v.prefix):
		now := time.Now().UnixNano()
		data := line[len(sseData):]
		if v.keep {
			c := bytes.TrimSpace(bytes.Clone(data))
			v.last.Store(&c)
		}
		i := bytes.Index(data, sseTotalVotes)
		if i < 0 {
			return
		}
		rest := data[i+len(sseTotalVotes):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		total, err := strconv.ParseInt(string(rest[:j]), 10, 64)
		if err != nil {
			return
		}
		k := total - v.base
		prev := v.seen.Load()
		if prev < 0 { // the snapshot: nothing to time
			v.seen.Store(max(k, 0))
			return
		}
		if k <= prev {
			return
		}
		for u := prev + 1; u <= k && u < int64(len(v.times)); u++ {
			v.times[u] = now
		}
		v.seen.Store(k) // after the times: a reader that sees k sees them
	case len(bytes.TrimSpace(line)) == 0:
		*watched = false
	}
}

func (v *viewer) close() { v.conn.Close() }

// viewers is a set of viewers.
type viewers []*viewer

// dialViewers opens n viewers, at most 256 connecting at once.
func dialViewers(ctx context.Context, n int, rawURL string, prefix []byte, base int64, updates int) (viewers, error) {
	vs := make(viewers, n)
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range vs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			v, err := dialViewer(ctx, rawURL, prefix, base, updates, false)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			vs[i] = v
		}()
	}
	wg.Wait()
	if firstErr != nil {
		vs.close()
		return nil, fmt.Errorf("viewers: %w", firstErr)
	}
	return vs, nil
}

func (vs viewers) close() {
	for _, v := range vs {
		if v != nil {
			v.close()
		}
	}
}

// wait polls until every live viewer has seen update k or the timeout
// passes; it returns how many live viewers have, and how many are live.
func (vs viewers) wait(ctx context.Context, k int64, timeout time.Duration) (got, live int) {
	deadline := time.Now().Add(timeout)
	for {
		got, live = 0, 0
		for _, v := range vs {
			if v.alive.Load() {
				live++
				if v.seen.Load() >= k {
					got++
				}
			}
		}
		if got == live || time.Now().After(deadline) || ctx.Err() != nil {
			return got, live
		}
		time.Sleep(time.Millisecond) // polling the viewers' progress
	}
}

// spread returns when the first and the last viewer that saw update k
// received it.
func (vs viewers) spread(k int64) (first, last time.Time, n int) {
	var lo, hi int64
	for _, v := range vs {
		if v.seen.Load() < k || k >= int64(len(v.times)) {
			continue
		}
		t := v.times[k]
		if n == 0 || t < lo {
			lo = t
		}
		if t > hi {
			hi = t
		}
		n++
	}
	return time.Unix(0, lo), time.Unix(0, hi), n
}

// How long the stream must go without a contest event before the fan-out
// starts (settle), and how long the bench waits for that.
const (
	settleQuiet   = time.Second
	settleTimeout = 2 * time.Minute
)

// settle waits until the SSE stream at rawURL has gone quiet for quiet:
// no contest event after the snapshot a new viewer gets. Region and feed
// events may still come. It returns how long it waited, and an error if
// the stream never went quiet within timeout.
func settle(ctx context.Context, rawURL string, quiet, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", rawURL, resp.Status)
	}
	// The snapshot's contest events come at once and count like any
	// other: the stream is quiet once quiet passes without one.
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			if isContestEvent(sc.Bytes()) {
				last.Store(time.Now().UnixNano())
			}
		}
	}()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("the live stream had a contest event at least every %s for %s", quiet, timeout)
		case now := <-t.C:
			if now.Sub(time.Unix(0, last.Load())) >= quiet {
				return time.Since(start), nil
			}
		}
	}
}
