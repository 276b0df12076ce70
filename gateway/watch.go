package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

const (
	minBindBackoff = 50 * time.Millisecond
	maxBindBackoff = 2 * time.Second
	maxBatch       = 1024 // bucket changes applied before the cached view is rebuilt
)

var errWatchEnded = errors.New("watch ended")

// watch binds the national bucket, retrying until it exists, and applies
// every change to the cached view and the event hub. When the watch ends
// (the connection closed, the bucket was deleted) it binds again.
func (g *Gateway) watch(ctx context.Context) {
	st := &watchState{e: g.cfg.Election, contests: map[tally.ContestID]*resource{},
		parts: map[tally.ContestID]*contestParts{}, revs: map[string]uint64{}}
	backoff := minBindBackoff
	failing := false
	for {
		bound, err := g.watchOnce(ctx, st)
		if ctx.Err() != nil {
			return
		}
		switch {
		case bound:
			g.log.Warn().Err(err).Str("bucket", tally.NationalBucket).Msg("national bucket watch ended")
			backoff, failing = minBindBackoff, false
		case !failing:
			g.log.Warn().Err(err).Str("bucket", tally.NationalBucket).Msg("national bucket unavailable")
			failing = true
		default:
			g.log.Debug().Err(err).Str("bucket", tally.NationalBucket).Msg("national bucket still unavailable")
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, maxBindBackoff)
	}
}

// watchOnce binds the bucket and applies its changes until the watch ends.
// bound reports whether the bucket was bound at all.
func (g *Gateway) watchOnce(ctx context.Context, st *watchState) (bound bool, err error) {
	kv, err := g.js.KeyValue(ctx, tally.NationalBucket)
	if err != nil {
		return false, err
	}
	status, err := kv.Status(ctx)
	if err != nil {
		return false, err
	}
	if bs, ok := status.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo() != nil {
		created := bs.StreamInfo().Created
		if !st.created.IsZero() && !created.Equal(st.created) {
			// The bucket was deleted and created again: its revisions
			// start over, so forget everything known.
			g.log.Warn().Str("bucket", tally.NationalBucket).Msg("national bucket recreated")
			st.reset()
			if err := g.hub.publish(ctx, event{reset: true, frame: []byte("event: reset\ndata: {}\n\n")}); err != nil {
				return false, err
			}
		}
		st.created = created
	}
	st.kv = kv
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return false, err
	}
	defer func() {
		if err := w.Stop(); err != nil && !errors.Is(err, nats.ErrBadSubscription) {
			g.log.Debug().Err(err).Msg("watch stop failed")
		}
	}()
	g.log.Info().Str("bucket", tally.NationalBucket).Msg("national bucket bound")
	updates := w.Updates()
	for {
		var entry jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case entry, ok = <-updates:
		}
		for n := 0; ; n++ {
			if !ok {
				g.rebuild(st)
				return true, errWatchEnded
			}
			if err := g.apply(ctx, st, entry); err != nil {
				return true, err
			}
			if n == maxBatch {
				break
			}
			more := false
			select {
			case entry, ok = <-updates:
				more = true
			default:
			}
			if !more {
				break
			}
		}
		g.rebuild(st)
	}
}

// apply applies one watch entry (nil marks the end of the initial values).
func (g *Gateway) apply(ctx context.Context, st *watchState, entry jetstream.KeyValueEntry) error {
	if entry == nil {
		if !st.loaded {
			st.loaded, st.dirty = true, true
			g.log.Info().Int("contests", len(st.contests)).Msg("national state loaded")
		}
		return nil
	}
	ev, ok := st.apply(entry, g)
	if !ok {
		return nil
	}
	return g.hub.publish(ctx, ev)
}

// rebuild publishes the cached view once the initial values are loaded.
func (g *Gateway) rebuild(st *watchState) {
	if st.loaded && st.dirty {
		g.view.Store(st.build())
		st.dirty = false
	}
}

// watchState is the watcher's own copy of the national state.
type watchState struct {
	e        *tally.Election
	contests map[tally.ContestID]*resource // merged: result, projection and call
	parts    map[tally.ContestID]*contestParts
	regions  *resource
	revs     map[string]uint64 // latest revision applied per key
	created  time.Time         // the bucket's creation, to notice it being recreated
	loaded   bool
	dirty    bool
	details  details            // results by county and precinct, and the feed
	kv       jetstream.KeyValue // the bucket, as bound
}

// contestParts are the bucket values a contest's response is merged from,
// each compact JSON; nil when the key does not exist.
type contestParts struct {
	result     []byte // tally.ContestResult
	projection []byte // tally.Projection
	call       []byte // tally.Call
}

func (st *watchState) reset() {
	clear(st.contests)
	clear(st.parts)
	clear(st.revs)
	st.details.reset()
	st.regions = nil
	st.dirty = true
}

// apply applies a bucket entry and returns the event that announces it. ok
// is false for an entry already applied, an unknown key, a bad value, or a
// projection or call of a contest that has no result yet (it is merged in
// when the result comes).
func (st *watchState) apply(entry jetstream.KeyValueEntry, g *Gateway) (ev event, ok bool) {
	key, rev := entry.Key(), entry.Revision()
	if rev <= st.revs[key] {
		return event{}, false // seen before binding again
	}
	removed := entry.Operation() == jetstream.KeyValueDelete || entry.Operation() == jetstream.KeyValuePurge
	if key == tally.KeyRegions {
		st.revs[key] = rev
		st.dirty = true
		if removed {
			st.regions = nil
			return event{rev: rev, key: key, removed: true, frame: sseFrame(rev, "regions", []byte("[]"))}, true
		}
		var rs []tally.RegionStatus
		if err := json.Unmarshal(entry.Value(), &rs); err != nil {
			g.log.Warn().Err(err).Str("key", key).Uint64("seq", rev).Msg("bad value skipped")
			return event{}, false
		}
		if rs == nil {
			rs = []tally.RegionStatus{}
		}
		b, err := json.Marshal(rs)
		if err != nil {
			return event{}, false
		}
		st.regions = resourceOf(b)
		return event{rev: rev, key: key, frame: sseFrame(rev, "regions", b)}, true
	}

	// A contest's result, projection or call: each changes the one merged
	// response, announced as a contest event under the contest's key so
	// that a snapshot holds one event per contest.
	var (
		id     tally.ContestID
		decode func([]byte, tally.ContestID) ([]byte, tally.ContestID, error)
		set    func(*contestParts, []byte)
	)
	switch {
	case strings.HasPrefix(key, tally.KeyContestPrefix):
		id = tally.ContestID(strings.TrimPrefix(key, tally.KeyContestPrefix))
		decode = decodeResult
		set = func(p *contestParts, b []byte) { p.result = b }
	case strings.HasPrefix(key, tally.KeyProjectionPrefix):
		id = tally.ContestID(strings.TrimPrefix(key, tally.KeyProjectionPrefix))
		decode = decodeProjection
		set = func(p *contestParts, b []byte) { p.projection = b }
	case strings.HasPrefix(key, tally.KeyCallPrefix):
		id = tally.ContestID(strings.TrimPrefix(key, tally.KeyCallPrefix))
		decode = decodeCall
		set = func(p *contestParts, b []byte) { p.call = b }
	case strings.HasPrefix(key, tally.KeyCountiesPrefix), strings.HasPrefix(key, tally.KeyPrecinctsPrefix):
		return st.applyDetail(entry, g)
	case key == tally.KeyFeed:
		return st.applyFeed(entry, g)
	default:
		return event{}, false
	}
	var b []byte
	if !removed {
		var (
			named tally.ContestID
			err   error
		)
		if b, named, err = decode(entry.Value(), id); err != nil {
			g.log.Warn().Err(err).Str("key", key).Uint64("seq", rev).Msg("bad value skipped")
			return event{}, false
		}
		if named != id {
			g.log.Warn().Str("key", key).Str("contest", string(named)).Msg("contest id differs from its key")
		}
	}
	st.revs[key] = rev
	st.dirty = true
	p := st.parts[id]
	if p == nil {
		p = &contestParts{}
		st.parts[id] = p
	}
	set(p, b)
	ckey := tally.ContestKey(id)
	if p.result == nil {
		if p.projection == nil && p.call == nil {
			delete(st.parts, id)
		}
		if _, had := st.contests[id]; !had {
			return event{}, false // nothing shown yet, nothing to announce
		}
		delete(st.contests, id)
		b, _ := json.Marshal(map[string]tally.ContestID{"id": id})
		return event{rev: rev, key: ckey, removed: true, frame: sseFrame(rev, "contest-removed", b)}, true
	}
	merged := p.merge()
	st.contests[id] = resourceOf(merged)
	return event{rev: rev, key: ckey, frame: sseFrame(rev, "contest", merged)}, true
}

// merge returns the contest's response: its result with "projection" and
// "call" added, each null when there is none.
func (p *contestParts) merge() []byte {
	orNull := func(b []byte) []byte {
		if b == nil {
			return []byte("null")
		}
		return b
	}
	proj, call := orNull(p.projection), orNull(p.call)
	r := p.result // a JSON object: ends with '}'
	out := make([]byte, 0, len(r)+len(proj)+len(call)+len(`,"projection":,"call":`))
	out = append(out, r[:len(r)-1]...)
	if len(r) > 2 { // not "{}"
		out = append(out, ',')
	}
	out = append(out, `"projection":`...)
	out = append(out, proj...)
	out = append(out, `,"call":`...)
	out = append(out, call...)
	return append(out, '}')
}

// decodeResult, decodeProjection and decodeCall check a bucket value and
// return it re-encoded, compact and without unknown fields, with its
// contest id set to the key's id; named is the id the value itself held.
func decodeResult(v []byte, id tally.ContestID) (b []byte, named tally.ContestID, err error) {
	var cr tally.ContestResult
	if err := json.Unmarshal(v, &cr); err != nil {
		return nil, "", err
	}
	named, cr.ID = cr.ID, id
	b, err = json.Marshal(cr)
	return b, named, err
}

func decodeProjection(v []byte, id tally.ContestID) (b []byte, named tally.ContestID, err error) {
	var p tally.Projection
	if err := json.Unmarshal(v, &p); err != nil {
		return nil, "", err
	}
	named, p.Contest = p.Contest, id
	b, err = json.Marshal(p)
	return b, named, err
}

func decodeCall(v []byte, id tally.ContestID) (b []byte, named tally.ContestID, err error) {
	var c tally.Call
	if err := json.Unmarshal(v, &c); err != nil {
		return nil, "", err
	}
	if c.Status != tally.CallCalled && c.Status != tally.CallRetracted {
		return nil, "", fmt.Errorf("call status %q", c.Status)
	}
	named, c.Contest = c.Contest, id
	b, err = json.Marshal(c)
	return b, named, err
}

// build returns the cached view of the current state.
func (st *watchState) build() *view {
	v := &view{contests: maps.Clone(st.contests), regions: st.regions}
	st.details.snapshot(st.e, v)
	if v.regions == nil {
		v.regions = resourceOf([]byte("[]"))
	}
	n := 2
	for _, r := range st.contests {
		n += len(r.body) + 1
	}
	list := make([]byte, 0, n)
	list = append(list, '[')
	seen := make(map[tally.ContestID]bool, len(st.contests))
	add := func(id tally.ContestID) {
		r := st.contests[id]
		if r == nil || seen[id] {
			return
		}
		seen[id] = true
		if len(list) > 1 {
			list = append(list, ',')
		}
		list = append(list, r.body...)
	}
	for _, c := range st.e.Contests {
		add(c.ID)
	}
	for _, o := range st.e.Offices() {
		add(tally.NationalContestID(o))
	}
	for _, id := range slices.Sorted(maps.Keys(st.contests)) {
		add(id) // contests the election does not name, last
	}
	list = append(list, ']')
	v.list = resourceOf(list)
	return v
}

// sseFrame formats one Server-Sent Event. data must hold no newline
// (compact JSON does not).
func sseFrame(rev uint64, name string, data []byte) []byte {
	b := make([]byte, 0, len(data)+len(name)+40)
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, rev, 10)
	b = append(b, "\nevent: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}
