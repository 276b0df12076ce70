package reconciler

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// publisher writes national state to the bucket. It remembers a hash of
// the bytes of every key it wrote, so a key is written only when its JSON
// changed, and keeps what it failed to write for the next round. It is used
// by one goroutine at a time (Open, then the publish loop), except for
// markShard, which the caller does under the reconciler's lock as publish
// does when it reads the shards.
type publisher struct {
	js      jetstream.JetStream
	putPre  string // the subject of a key's put is putPre+key
	seed    maphash.Seed
	last    map[string]uint64 // key -> hash of the bytes in the bucket
	pending map[string][]byte // key -> bytes still to write
	order   []string          // pending keys, in the order they became pending

	// Precinct results are written by shard, only for the shards a report
	// changed (all of them after init), at most every PrecinctsInterval
	// and, when writing them takes long, less often (precinctsBudget); at
	// most precinctsPerPublish at a time, taken in key order from where the
	// last publish left off (shardsAfter). The results by county of the
	// contests changed since are written with them.
	shards        map[shardRef]bool
	allShards     bool
	counties      map[tally.ContestID]bool
	precinctsNext time.Time // not before
	shardsAfter   *shardRef

	rev uint64 // revision of the last key written; 0 if none
}

// shardRef names one shard of one contest's precinct results.
type shardRef struct {
	c tally.ContestID
	s tally.Shard
}

// PrecinctsInterval bounds how often a contest's precinct results
// (tally.PrecinctsKey) are rewritten; the contest and county results follow
// every PublishInterval.
const PrecinctsInterval = time.Second

// precinctsBudget bounds the share of time writing precinct shards takes: a
// publish with shards that took d is followed by the next one with shards
// no sooner than d*precinctsBudget after it began. While a backlog drains,
// every shard changes every second; the viewers' precinct tables then lag
// by a few seconds instead of the totals lagging behind the backlog.
const precinctsBudget = 10

// precinctsPerPublish bounds the shards one publish writes. After a
// backlog (every shard of a national night changed: some 40,000 of them
// at 175,000 precincts x 30 contests) a publish of all would encode
// hundreds of megabytes under the reconciler's lock and write them one
// Put at a time past its deadline; the rest wait for the next publishes,
// in turn.
const precinctsPerPublish = 1000

func (p *publisher) init(js jetstream.JetStream, kv jetstream.KeyValue) {
	// A bucket of the hub's own JetStream, not a mirror: its puts are
	// published to $KV.<bucket>.<key>, as KeyValue.Put does.
	p.js, p.putPre = js, "$KV."+kv.Bucket()+"."
	p.seed = maphash.MakeSeed()
	p.last = map[string]uint64{}
	p.pending = map[string][]byte{}
	p.shards = map[shardRef]bool{}
	p.allShards = true
	p.counties = map[tally.ContestID]bool{}
}

// markShard notes that shard s of contest c changed.
func (p *publisher) markShard(c tally.ContestID, s tally.Shard) {
	if p.shards != nil {
		p.shards[shardRef{c, s}] = true
	}
}

// stage queues b under key unless the bucket already holds it.
func (p *publisher) stage(key string, b []byte) {
	if h, ok := p.last[key]; ok && h == maphash.Bytes(p.seed, b) {
		delete(p.pending, key)
		return
	}
	if _, ok := p.pending[key]; !ok {
		p.order = append(p.order, key)
	}
	p.pending[key] = b
}

// compareShards orders shard references as their keys: a viewer sees the
// shards of a contest change together and in precinct order.
func compareShards(a, b shardRef) int {
	return cmp.Or(cmp.Compare(a.c, b.c), cmp.Compare(a.s.N, b.s.N), cmp.Compare(a.s.Region, b.s.Region))
}

// takeShards takes the changed shards to write now, in key order: all of
// them when all is set (the final publish), else at most
// precinctsPerPublish, beginning after the last one taken before and
// going round.
func (p *publisher) takeShards(all bool) []shardRef {
	refs := make([]shardRef, 0, len(p.shards))
	for ref := range p.shards {
		refs = append(refs, ref)
	}
	slices.SortFunc(refs, compareShards)
	if !all && len(refs) > precinctsPerPublish {
		i := 0
		if p.shardsAfter != nil {
			i, _ = slices.BinarySearchFunc(refs, *p.shardsAfter, compareShards)
			if i < len(refs) && compareShards(refs[i], *p.shardsAfter) == 0 {
				i++
			}
		}
		refs = slices.Concat(refs[i:], refs[:i])[:precinctsPerPublish]
		last := refs[len(refs)-1]
		p.shardsAfter = &last
		slices.SortFunc(refs, compareShards)
	}
	for _, ref := range refs {
		delete(p.shards, ref)
	}
	return refs
}

// flush writes every pending key; what fails stays pending. The puts are
// published at once and their acknowledgements awaited after: under load a
// Put at a time waits a round trip each, and a publish of a thousand keys
// ran past its deadline.
func (p *publisher) flush(ctx context.Context) (int, error) {
	type put struct {
		key string
		b   []byte
		ack jetstream.PubAckFuture
	}
	var (
		errs   []error
		failed int
		puts   []put
		keep   []string
	)
	fail := func(key string, err error) {
		if failed++; failed <= 3 { // the first few name the problem
			errs = append(errs, fmt.Errorf("put %s: %w", key, err))
		}
		keep = append(keep, key)
	}
	for _, key := range p.order {
		b, ok := p.pending[key]
		if !ok {
			continue
		}
		ack, err := p.js.PublishAsync(p.putPre+key, b)
		if err != nil {
			fail(key, err)
			continue
		}
		puts = append(puts, put{key, b, ack})
	}
	n := 0
	for _, pt := range puts {
		var err error
		select {
		case pa := <-pt.ack.Ok():
			p.last[pt.key] = maphash.Bytes(p.seed, pt.b)
			p.rev = max(p.rev, pa.Sequence)
			delete(p.pending, pt.key)
			n++
			continue
		case err = <-pt.ack.Err():
		case <-ctx.Done():
			err = ctx.Err()
		}
		fail(pt.key, err)
	}
	if failed > 3 {
		errs = append(errs, fmt.Errorf("and %d more puts failed", failed-3))
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
// contest, the national view of each office with a dirty contest,
// KeyRegions, and, at most every PrecinctsInterval (and on the final
// publish), the results by county of the contests changed since, the
// shards of precinct results changed since and the feed. A contest's
// results by county are as large as its counties are many; written with
// every change of the contest (every PublishInterval), building, encoding
// and (in the gateway) decoding them took more than a tenth of the hub's
// CPU in a US-size run.
// Then it publishes the pending audit records.
func (r *Reconciler) publish(ctx context.Context) error {
	start := time.Now()
	final := r.ctx.Err() != nil
	type kv struct {
		key string
		val any    // encoded after the lock
		raw []byte // or already encoded
	}
	var (
		out     []kv
		encErrs []error
	)
	r.mu.Lock()
	if len(r.dirty) > 0 || r.regionsDirty {
		sm := r.statusMapLocked()
		offices := map[string]bool{}
		for _, c := range r.e.Contests { // election order
			if !r.dirty[c.ID] {
				continue
			}
			out = append(out, kv{key: tally.ContestKey(c.ID), val: r.contestResultLocked(c.ID, sm)})
			r.pub.counties[c.ID] = true
			if c.Office != "" {
				offices[c.Office] = true
			}
		}
		for _, office := range r.e.Offices() {
			if offices[office] {
				out = append(out, kv{key: tally.ContestKey(tally.NationalContestID(office)), val: r.nationalLocked(office, sm)})
			}
		}
		if r.regionsDirty {
			out = append(out, kv{key: tally.KeyRegions, val: append([]tally.RegionStatus(nil), r.statuses...)})
		}
		clear(r.dirty)
		r.regionsDirty = false
	}
	withShards := (len(r.pub.shards) > 0 || r.pub.allShards || len(r.pub.counties) > 0) && (final || !start.Before(r.pub.precinctsNext))
	if withShards {
		for _, c := range r.e.Contests { // election order
			if r.pub.counties[c.ID] {
				out = append(out, kv{key: tally.CountiesKey(c.ID), val: r.totals.CountyResults(c.ID)})
			}
		}
		clear(r.pub.counties)
		if r.pub.allShards {
			for _, c := range r.e.Contests {
				for _, s := range r.e.ContestShards(c.ID) {
					r.pub.shards[shardRef{c.ID, s}] = true
				}
			}
			r.pub.allShards = false
		}
		refs := r.pub.takeShards(final)
		var failed []shardRef
		for _, ref := range refs {
			b, err := r.totals.AppendPrecinctResults(nil, ref.c, ref.s)
			if err != nil { // not reached with valid reports: tried again next time
				encErrs = append(encErrs, fmt.Errorf("encode %s: %w", tally.PrecinctsKey(ref.c, ref.s), err))
				failed = append(failed, ref)
				continue
			}
			out = append(out, kv{key: tally.PrecinctsKey(ref.c, ref.s), raw: b})
		}
		for _, ref := range failed {
			r.pub.shards[ref] = true
		}
		// The feed follows the precincts: a batch is a region's reports
		// in a contest since the last.
		if r.feed.take(start) {
			out = append(out, kv{key: tally.KeyFeed, val: append([]tally.FeedItem(nil), r.feed.items...)})
		}
	}
	r.mu.Unlock()

	for _, o := range out {
		b := o.raw
		if b == nil {
			var err error
			if b, err = json.Marshal(o.val); err != nil {
				encErrs = append(encErrs, fmt.Errorf("encode %s: %w", o.key, err))
				continue
			}
		}
		r.pub.stage(o.key, b)
	}
	n, err := r.pub.flush(ctx)
	if withShards {
		r.pub.precinctsNext = start.Add(max(PrecinctsInterval, precinctsBudget*time.Since(start)))
	}
	r.metrics.rev.Store(r.pub.rev)
	if n > 0 {
		r.log.Debug().Int("keys", n).Int64("duration_ms", time.Since(start).Milliseconds()).Msg("national state published")
	}
	return errors.Join(append(encErrs, err, r.flushAudit(ctx))...)
}
