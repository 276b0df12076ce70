package gateway

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
)

const (
	pingInterval      = 15 * time.Second
	streamWriteWindow = 10 * time.Second // a viewer that takes longer to accept a write is dropped
	// A stream's write deadline is moved at most this often, to
	// streamWriteWindow+deadlineRefresh ahead: every write still has at
	// least streamWriteWindow, and most batches cost no deadline update
	// (a timer change in the runtime's poller, per viewer).
	deadlineRefresh = 5 * time.Second
	// A viewer is sent the events waiting for the hub together, up to
	// this many, or until they reach this many bytes.
	maxCoalesce      = 256
	maxCoalesceBytes = 256 << 10
)

// event is one change of the national bucket, formatted once for every viewer.
type event struct {
	rev     uint64 // the bucket revision, the event's SSE id
	key     string
	frame   []byte // the complete SSE frame; shared, never modified
	removed bool   // the key was deleted
	reset   bool   // the bucket was recreated: forget everything
	// transient events (the feed) are sent and kept for resuming, but
	// are not part of the snapshot a new viewer gets.
	transient bool
}

// client is one connected viewer. Each send on ch is the frames of one
// or more events, in order. The hub closes ch when it drops the viewer
// (too slow) or stops.
type client struct {
	ch chan []byte
}

type subscribeReq struct {
	last   uint64
	resume bool
	reply  chan subscribeResp
}

type subscribeResp struct {
	c      *client
	frames [][]byte
}

// hub fans bucket changes out to the viewers. One goroutine (run) owns all
// its state; sends to viewers never block: a viewer whose queue is full is
// disconnected and resumes with Last-Event-ID.
type hub struct {
	in        chan event
	sub       chan subscribeReq
	unsub     chan *client
	done      chan struct{} // closed when run returns
	bufSize   int
	clientBuf int
	log       zerolog.Logger
	clients   atomic.Int64 // connected viewers
	dropped   atomic.Int64 // viewers disconnected as too slow
}

func newHub(bufSize, clientBuf int, log zerolog.Logger) *hub {
	return &hub{
		in:        make(chan event, 1024),
		sub:       make(chan subscribeReq),
		unsub:     make(chan *client),
		done:      make(chan struct{}),
		bufSize:   bufSize,
		clientBuf: clientBuf,
		log:       log,
	}
}

// publish hands an event to the hub.
func (h *hub) publish(ctx context.Context, ev event) error {
	select {
	case h.in <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-h.done:
		return tally.Errorf(tally.EUNAVAILABLE, "gateway is closing")
	}
}

// subscribe connects a viewer. frames is what it must be sent first: the
// events after last when resume is set and the buffer still holds them,
// else a snapshot of every key. Errors have code EUNAVAILABLE.
func (h *hub) subscribe(ctx context.Context, last uint64, resume bool) (*client, [][]byte, error) {
	req := subscribeReq{last: last, resume: resume, reply: make(chan subscribeResp, 1)}
	select {
	case h.sub <- req:
	case <-h.done:
		return nil, nil, tally.Errorf(tally.EUNAVAILABLE, "gateway is closing")
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	r := <-req.reply // run replies to every request it takes
	return r.c, r.frames, nil
}

// unsubscribe disconnects a viewer.
func (h *hub) unsubscribe(c *client) {
	select {
	case h.unsub <- c:
	case <-h.done:
	}
}

// run is the hub's goroutine. It returns when ctx is done, after closing
// every viewer's channel.
func (h *hub) run(ctx context.Context) {
	var (
		current = map[string]event{} // latest event per live key
		ring    = make([]event, 0, min(h.bufSize, 1024))
		start   int    // index of the oldest event in ring once it is full
		floor   uint64 // ring holds every event with a revision above floor
		lastRev uint64
		snap    [][]byte // cached snapshot; nil after a change
		clients = map[*client]struct{}{}
	)
	defer func() {
		for c := range clients {
			close(c.ch)
		}
		h.clients.Store(0)
		close(h.done)
	}()
	add := func(ev event) {
		if ev.reset {
			clear(current)
			ring, start, floor, lastRev = ring[:0], 0, 0, 0
		} else {
			if ev.transient {
				// not in the snapshot
			} else if ev.removed {
				delete(current, ev.key)
			} else {
				current[ev.key] = ev
			}
			if len(ring) < h.bufSize {
				ring = append(ring, ev)
			} else {
				floor = ring[start].rev
				ring[start] = ev
				start = (start + 1) % len(ring)
			}
			lastRev = max(lastRev, ev.rev)
		}
		snap = nil
	}
	drop := func(c *client) {
		delete(clients, c)
		close(c.ch)
		h.clients.Store(int64(len(clients)))
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-h.in:
			if len(clients) == 0 {
				add(ev) // no viewer: the snapshot and the ring only
				continue
			}
			frame := gather(ev, h.in, add)
			for c := range clients {
				select {
				case c.ch <- frame:
				default:
					drop(c)
					h.dropped.Add(1)
					h.log.Info().Int("clients", len(clients)).Msg("slow viewer disconnected")
				}
			}
		case req := <-h.sub:
			var frames [][]byte
			if req.resume && req.last >= floor && req.last <= lastRev {
				// Walk back from the newest event to the first one after last.
				n := len(ring)
				i := n
				for i > 0 && ring[(start+i-1)%n].rev > req.last {
					i--
				}
				frames = make([][]byte, 0, n-i)
				for ; i < n; i++ {
					frames = append(frames, ring[(start+i)%n].frame)
				}
			} else {
				if snap == nil {
					evs := make([]event, 0, len(current))
					for _, ev := range current {
						evs = append(evs, ev)
					}
					slices.SortFunc(evs, func(a, b event) int { return cmpUint(a.rev, b.rev) })
					snap = make([][]byte, len(evs))
					for i, ev := range evs {
						snap[i] = ev.frame
					}
				}
				frames = snap
			}
			c := &client{ch: make(chan []byte, h.clientBuf)}
			clients[c] = struct{}{}
			h.clients.Store(int64(len(clients)))
			req.reply <- subscribeResp{c: c, frames: frames}
		case c := <-h.unsub:
			if _, ok := clients[c]; ok {
				drop(c)
			}
		}
	}
}

// gather returns ev's frame followed by the frames of the events already
// waiting in in, up to maxCoalesce events in all or until the frames reach
// maxCoalesceBytes, and calls add for each event, ev first. The hub sends
// them to a viewer as one: a burst (a region's checkpoint changes every
// contest of the region) sent event by event would cost every viewer a
// wake-up and a write per event.
func gather(ev event, in <-chan event, add func(event)) []byte {
	add(ev)
	frame := ev.frame
	for n := 1; n < maxCoalesce && len(frame) < maxCoalesceBytes; n++ {
		var next event
		select {
		case next = <-in:
		default:
			return frame
		}
		add(next)
		if n == 1 { // ev.frame is shared: a copy takes the others
			frame = append(make([]byte, 0, 2*(len(frame)+len(next.frame))), frame...)
		}
		frame = append(frame, next.frame...)
	}
	return frame
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// stream serves GET /api/v1/stream: Server-Sent Events, one per bucket
// change, with the bucket revision as id. A viewer without Last-Event-ID
// (header, or the last_event_id query parameter) gets a snapshot of every
// key first; one with it gets the events it missed when the buffer still
// holds them, else the snapshot.
func (g *Gateway) stream(c echo.Context) error {
	if !g.isOpen() {
		return tally.Errorf(tally.EUNAVAILABLE, "live stream not started")
	}
	req := c.Request()
	ctx := req.Context()
	lastText := req.Header.Get("Last-Event-ID")
	if lastText == "" {
		lastText = c.QueryParam("last_event_id")
	}
	last, err := strconv.ParseUint(lastText, 10, 64)
	resume := err == nil
	cl, frames, err := g.hub.subscribe(ctx, last, resume)
	if err != nil {
		return err
	}
	defer g.hub.unsubscribe(cl)

	resp := c.Response()
	h := resp.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // ask reverse proxies not to buffer
	// Over HTTP/1.1, no chunked encoding: the stream ends when the
	// connection closes (as the SSE specification suggests), and a write
	// of frames larger than net/http's buffers is one write to the
	// socket, not one per buffer plus the chunk's framing. HTTP/2 drops
	// the header.
	h.Set("Transfer-Encoding", "identity")
	resp.WriteHeader(http.StatusOK)
	// Frames go straight to the server's writer, without echo's wrapper
	// (which would only count them), and are flushed once per batch.
	w := resp.Writer
	rc := http.NewResponseController(w)
	// The server's read and write timeouts suit short requests; a stream
	// lives on, with a write deadline kept ahead of its writes instead.
	_ = rc.SetReadDeadline(time.Time{}) // best effort: not every writer supports deadlines
	var refreshAt time.Time             // when to move the write deadline next

	write := func(frames ...[]byte) error {
		if now := time.Now(); !now.Before(refreshAt) {
			_ = rc.SetWriteDeadline(now.Add(streamWriteWindow + deadlineRefresh))
			refreshAt = now.Add(deadlineRefresh)
		}
		for _, f := range frames {
			if _, err := w.Write(f); err != nil {
				return err
			}
		}
		return rc.Flush()
	}
	if err := write(append([][]byte{[]byte("retry: 2000\n\n")}, frames...)...); err != nil {
		return nil // the viewer went away; nothing to report
	}
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	batch := make([][]byte, 0, 64)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ping.C:
			if err := write([]byte(": ping\n\n")); err != nil {
				return nil
			}
		case f, ok := <-cl.ch:
			if !ok {
				return nil // dropped as too slow, or the gateway is closing
			}
			batch = append(batch[:0], f)
			for more := true; more && len(batch) < cap(batch); {
				select {
				case f, ok = <-cl.ch:
					if ok {
						batch = append(batch, f)
					} else {
						more = false
					}
				default:
					more = false
				}
			}
			if err := write(batch...); err != nil {
				return nil
			}
			if !ok {
				return nil
			}
		}
	}
}

// isOpen reports whether Open has run and Close has not.
func (g *Gateway) isOpen() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.opened && !g.closed
}
