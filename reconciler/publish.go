package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// publisher writes national state to the bucket. It remembers the bytes of
// every key it wrote, so a key is written only when its JSON changed, and
// keeps what it failed to write for the next round. It is used by one
// goroutine at a time (Open, then the publish loop).
type publisher struct {
	kv      jetstream.KeyValue
	last    map[string][]byte // key -> bytes in the bucket
	pending map[string][]byte // key -> bytes still to write
	order   []string          // pending keys, in the order they became pending

	// Precinct results are bigger than the rest and change with every
	// report: they are written at most every PrecinctsInterval.
	precinctsDirty map[tally.ContestID]bool
	precinctsAt    time.Time

	rev uint64 // revision of the last key written; 0 if none
}

// PrecinctsInterval bounds how often a contest's precinct results
// (tally.PrecinctsKey) are rewritten; the contest and county results follow
// every PublishInterval.
const PrecinctsInterval = time.Second

func (p *publisher) init(kv jetstream.KeyValue) {
	p.kv = kv
	p.last = map[string][]byte{}
	p.pending = map[string][]byte{}
	p.precinctsDirty = map[tally.ContestID]bool{}
}

// stage queues b under key unless the bucket already holds it.
func (p *publisher) stage(key string, b []byte) {
	if bytes.Equal(p.last[key], b) {
		delete(p.pending, key)
		return
	}
	if _, ok := p.pending[key]; !ok {
		p.order = append(p.order, key)
	}
	p.pending[key] = b
}

// flush writes every pending key; what fails stays pending.
func (p *publisher) flush(ctx context.Context) (int, error) {
	var errs []error
	n := 0
	keep := p.order[:0]
	for _, key := range p.order {
		b, ok := p.pending[key]
		if !ok {
			continue
		}
		rev, err := p.kv.Put(ctx, key, b)
		if err != nil {
			errs = append(errs, fmt.Errorf("put %s: %w", key, err))
			keep = append(keep, key)
			continue
		}
		p.last[key] = b
		p.rev = rev
		delete(p.pending, key)
		n++
	}
	p.order = keep
	return n, errors.Join(errs...)
}

// publishLoop publishes changed state every PublishInterval, and once more
// when the reconciler closes.
func (r *Reconciler) publishLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.PublishInterval)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := r.publish(ctx); err != nil {
				r.log.Warn().Err(err).Msg("final publish failed")
			}
			cancel()
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
			if err := r.publish(ctx); err != nil && r.ctx.Err() == nil {
				r.log.Error().Err(err).Msg("publish failed")
			}
			cancel()
		}
	}
}

// publish takes the dirty contests and, if they changed, the region
// statuses, and writes to the bucket the keys whose JSON changed: each dirty
// contest and its results by county, the national view of each office with
// a dirty contest, KeyRegions, and, at most every PrecinctsInterval (and on
// the final publish), the precinct results of the contests dirty since.
// Then it publishes the pending audit records.
func (r *Reconciler) publish(ctx context.Context) error {
	start := time.Now()
	final := r.ctx.Err() != nil
	type kv struct {
		key string
		val any
	}
	var out []kv
	r.mu.Lock()
	if len(r.dirty) > 0 || r.regionsDirty {
		sm := r.statusMapLocked()
		offices := map[string]bool{}
		for _, c := range r.e.Contests { // election order
			if !r.dirty[c.ID] {
				continue
			}
			out = append(out, kv{tally.ContestKey(c.ID), r.totals.ContestResult(c.ID, sm)})
			out = append(out, kv{tally.CountiesKey(c.ID), r.totals.CountyResults(c.ID)})
			r.pub.precinctsDirty[c.ID] = true
			if c.Office != "" {
				offices[c.Office] = true
			}
		}
		for _, office := range r.e.Offices() {
			if offices[office] {
				out = append(out, kv{tally.ContestKey(tally.NationalContestID(office)), r.nationalLocked(office, sm)})
			}
		}
		if r.regionsDirty {
			out = append(out, kv{tally.KeyRegions, append([]tally.RegionStatus(nil), r.statuses...)})
		}
		clear(r.dirty)
		r.regionsDirty = false
	}
	if len(r.pub.precinctsDirty) > 0 && (final || start.Sub(r.pub.precinctsAt) >= PrecinctsInterval) {
		for _, c := range r.e.Contests {
			if !r.pub.precinctsDirty[c.ID] {
				continue
			}
			for _, reg := range r.e.ContestRegions(c.ID) {
				out = append(out, kv{tally.PrecinctsKey(c.ID, reg), r.totals.PrecinctResults(c.ID, reg)})
			}
		}
		clear(r.pub.precinctsDirty)
		r.pub.precinctsAt = start
	}
	r.mu.Unlock()

	for _, o := range out {
		b, err := json.Marshal(o.val)
		if err != nil {
			return fmt.Errorf("encode %s: %w", o.key, err)
		}
		r.pub.stage(o.key, b)
	}
	n, err := r.pub.flush(ctx)
	r.metrics.rev.Store(r.pub.rev)
	if n > 0 {
		r.log.Debug().Int("keys", n).Int64("duration_ms", time.Since(start).Milliseconds()).Msg("national state published")
	}
	return errors.Join(err, r.flushAudit(ctx))
}
