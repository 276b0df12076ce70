package regional

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// startTotals feeds n.totals and n.chain from the node's own RESULTS
// stream with an ordered consumer from the first message, and waits until
// they have caught up with the stream as it was when the consumer started.
func (n *Node) startTotals(ctx context.Context) error {
	info, err := n.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s info: %w", tally.ResultsStream, err)
	}
	n.noteStored(info.State.LastSeq)
	cons, err := n.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("totals consumer: %w", err)
	}
	cc, err := cons.Consume(n.apply)
	if err != nil {
		return fmt.Errorf("totals consume: %w", err)
	}
	n.cc = cc
	if err := n.waitApplied(ctx, info.State.LastSeq); err != nil {
		return fmt.Errorf("totals catch-up to seq %d: %w", info.State.LastSeq, err)
	}
	return nil
}

// apply applies one stream message. A message on a results subject is an
// event: it goes into the chain whatever it holds (the reconciliation
// contract, see tally.Chain), and into the totals when it is a valid report
// of this region (otherwise it is logged and skipped). A checkpoint is
// recorded as the last one seen. Anything else is skipped.
func (n *Node) apply(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		n.log.Error().Err(err).Str("subject", msg.Subject()).Msg("message metadata unreadable")
		return
	}
	seq, subj := meta.Sequence.Stream, msg.Subject()
	var rep *tally.Report
	var cp tally.Checkpoint
	_, _, _, event := tally.ParseResultsSubject(subj)
	cpRegion, isCP := tally.IsCheckpointSubject(subj)
	switch {
	case event:
		rep, err = tally.DecodeReport(msg.Data())
		if err == nil {
			err = rep.Validate(n.e)
		}
		if err == nil && rep.Region != n.region {
			err = tally.Errorf(tally.EINVALID, "region: %q is not this node's region", rep.Region)
		}
	case isCP && cpRegion == n.region:
		cp, err = tally.DecodeCheckpoint(msg.Data())
	default:
		err = tally.Errorf(tally.EINVALID, "subject: neither a results nor this region's checkpoint subject")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if seq <= n.totals.LastSeq(n.region) {
		return // already applied (redelivered)
	}
	if event {
		n.chain.Add(seq, subj, msg.Data())
	}
	switch {
	case err != nil:
		n.log.Warn().Err(err).Str("subject", subj).Uint64("seq", seq).
			Str("stream", tally.ResultsStream).Msg("message skipped by totals")
		n.totals.Advance(n.region, seq)
	case event:
		n.totals.Apply(seq, rep)
	default:
		n.totals.Advance(n.region, seq)
		n.cp, n.cpAt = cp, seq
	}
	close(n.applied)
	n.applied = make(chan struct{})
}

// waitApplied waits until the totals have applied the stream up to seq.
func (n *Node) waitApplied(ctx context.Context, seq uint64) error {
	for {
		n.mu.Lock()
		last, ch := n.totals.LastSeq(n.region), n.applied
		n.mu.Unlock()
		if last >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// AppliedSeq returns the last RESULTS stream sequence reflected in the
// node's totals (0 before any).
func (n *Node) AppliedSeq() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.totals.LastSeq(n.region)
}

// Totals returns the region's own totals for contest c, from its own
// stream: the precinct counts are those of the region's precincts and the
// only region listed is this one. ok is false when c is not on any ballot
// of the region.
func (n *Node) Totals(c tally.ContestID) (tally.ContestResult, bool) {
	if n.precincts[c] == 0 {
		return tally.ContestResult{}, false
	}
	n.mu.Lock()
	res := n.totals.ContestResult(c, nil)
	n.mu.Unlock()
	res.Precincts.Total = n.precincts[c]
	regions := make([]tally.RegionResult, 0, 1)
	for _, rr := range res.Regions {
		if rr.ID == n.region {
			regions = append(regions, rr)
		}
	}
	res.Regions = regions
	return res, true
}

// AllTotals returns the region's own totals of every contest on its
// ballots, in definition order.
func (n *Node) AllTotals() []tally.ContestResult {
	out := make([]tally.ContestResult, 0, len(n.contests))
	for _, c := range n.contests {
		if res, ok := n.Totals(c); ok {
			out = append(out, res)
		}
	}
	return out
}
