package reconciler

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// startConsumer starts consuming region reg's mirror at sequence from, or at
// Applied(reg)+1 when from is 0, replacing the region's current consumer.
//
// The consumer is an ordered consumer (ephemeral, flow-controlled, no acks)
// rather than a durable one: where to resume is the national state's own
// record of the last applied sequence (Totals.LastSeq), which a snapshot will
// store together with the totals it produced. A durable consumer's ack floor
// would be a second record that can disagree with the state after a crash
// between apply and ack; with the state as the only record, apply and
// "position" change together, and a restart resumes exactly at seq+1.
// Because Apply ignores sequences at or below the last applied one, any
// redelivery (an ordered consumer's reset, an earlier start) is harmless.
func (r *Reconciler) startConsumer(ctx context.Context, reg tally.RegionID, from uint64) error {
	r.stopConsumer(reg)
	if from == 0 {
		from = r.Applied(reg) + 1
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = from
	}
	name := tally.MirrorStream(reg)
	cons, err := r.js.OrderedConsumer(ctx, name, cfg)
	if err != nil {
		return fmt.Errorf("consumer of mirror %s: %w", name, err)
	}
	log := r.log.With().Str("region", string(reg)).Str("stream", name).Logger()
	rc := &regionConsumer{} // see checkStall
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		if !rc.off.Load() {
			r.handle(reg, msg)
		}
	},
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			log.Warn().Err(err).Msg("consume error")
		}))
	if err != nil {
		return fmt.Errorf("consume mirror %s: %w", name, err)
	}
	rc.ConsumeContext = cc
	r.consMu.Lock()
	r.consumers[reg] = rc
	r.consMu.Unlock()
	log.Info().Uint64("seq", from).Msg("consumer started")
	return nil
}

// stopConsumer stops region reg's consumer, if any, and waits until its
// handler has returned.
func (r *Reconciler) stopConsumer(reg tally.RegionID) {
	r.consMu.Lock()
	cc := r.consumers[reg]
	delete(r.consumers, reg)
	r.consMu.Unlock()
	if cc != nil {
		cc.Stop()
		<-cc.Closed()
	}
}

// handle applies one mirrored message. Mirrors keep the region's sequence
// numbers, so the message's stream sequence is the region's.
func (r *Reconciler) handle(reg tally.RegionID, msg jetstream.Msg) {
	start := time.Now()
	md, err := msg.Metadata()
	if err != nil {
		// Without a sequence the message cannot be placed; an ordered
		// consumer never delivers such a message.
		r.log.Error().Err(err).Str("region", string(reg)).Str("subject", msg.Subject()).Msg("message metadata unreadable")
		return
	}
	r.apply(reg, md.Sequence.Stream, msg.Subject(), msg.Data())
	r.metrics.apply.Observe(time.Since(start).Seconds())
}

// apply applies the message stored at sequence seq of region reg's stream.
// It reports whether the totals changed. A message at or below Applied(reg)
// changes nothing, so applying the same sequence twice is harmless. Every
// results message (tally.ParseResultsSubject) goes into the region's chain,
// as the region's own chain takes what it stored; an invalid one is then
// logged and skipped: retrying cannot fix it, and it must not block the
// events after it. A checkpoint is compared with the totals and chain as
// they stand (see checkpointLocked). Any other message just moves
// Applied(reg) on.
func (r *Reconciler) apply(reg tally.RegionID, seq uint64, subject string, data []byte) bool {
	sreg, p, c, isResult := tally.ParseResultsSubject(subject)
	var (
		rep  *tally.Report
		err  error
		cp   tally.Checkpoint
		isCP bool
	)
	// Decode outside the lock: the consumers of other regions go on.
	if isResult {
		rep, err = decodeEvent(r.e, reg, sreg, p, c, data)
	} else if _, isCP = tally.IsCheckpointSubject(subject); isCP {
		cp, err = tally.DecodeCheckpoint(data)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	last := r.totals.LastSeq(reg)
	if seq <= last {
		return false
	}
	if seq > last+1 {
		// Regions never delete: a mirror that skips sequences lost events
		// (the region's checkpoints will not match).
		r.log.Error().Str("region", string(reg)).Uint64("seq", seq).Uint64("after", last).Msg("mirror skipped sequences: events missing")
	}
	r.gen++
	r.unsaved++
	switch {
	case isCP:
		r.checkpointLocked(reg, seq, cp, err)
		r.totals.Advance(reg, seq)
		return false
	case !isResult:
		r.totals.Advance(reg, seq)
		r.log.Debug().Str("region", string(reg)).Uint64("seq", seq).Str("subject", subject).Msg("non-results message skipped")
		return false
	}
	r.chains[reg].Add(seq, subject, data)
	if rs := r.contestSeq[reg]; rs != nil {
		rs[c] = seq
		if r.contestRec[reg][c] { // an event past the checkpoint
			r.contestRec[reg][c] = false
			r.dirty[c] = true
		}
	}
	if i := r.regionIdx[reg]; r.statuses[i].Reconciled {
		r.reconcileLocked(i) // an event past the checkpoint
	}
	if err != nil {
		r.log.Error().Err(err).Str("region", string(reg)).Uint64("seq", seq).Str("subject", subject).Msg("invalid event skipped")
		r.totals.Advance(reg, seq)
		return false
	}
	if seq <= r.totals.LastSeq(reg) {
		return false // not reached: the consumer starts past LastSeq
	}
	r.feed.note(r.e, r.totals, seq, rep) // before Apply replaces the precinct's report
	r.totals.Apply(seq, rep)
	r.dirty[rep.Contest] = true
	r.pub.markShard(rep.Contest, tally.Shard{Region: reg, N: r.e.PrecinctShard(rep.Precinct)})
	if rep.ReportedAt.After(r.lastUpdate[reg]) {
		r.lastUpdate[reg] = rep.ReportedAt
	}
	return true
}

// decodeEvent decodes and validates a report read from region reg's mirror
// under a subject naming region sreg, precinct p and contest c. Beyond
// Report.Validate, the report must belong where it was stored: a report of
// another region would move that region's applied sequence with a sequence of
// this one. Errors have code EINVALID.
func decodeEvent(e *tally.Election, reg, sreg tally.RegionID, p tally.PrecinctID, c tally.ContestID, data []byte) (*tally.Report, error) {
	if sreg != reg {
		return nil, tally.Errorf(tally.EINVALID, "subject names region %q in the stream of region %q", sreg, reg)
	}
	rep, err := tally.DecodeReport(data)
	if err != nil {
		return nil, err
	}
	if err := rep.Validate(e); err != nil {
		return nil, err
	}
	if rep.Region != reg || rep.Precinct != p || rep.Contest != c {
		return nil, tally.Errorf(tally.EINVALID, "report for %s/%s/%s stored under the subject of %s/%s/%s",
			rep.Region, rep.Precinct, rep.Contest, reg, p, c)
	}
	return rep, nil
}
