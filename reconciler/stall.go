package reconciler

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// A region's consumer can stall for good on a NATS cluster. When the node
// holding the hub's client connection dies, nats.go's ordered consumer
// recreates its server-side consumer after reconnecting, retrying under one
// name until it succeeds. The cluster notices a dead node only seconds later
// and may meanwhile place that consumer (one replica) on it; every retry then
// goes to the dead node, and the consume context cannot even be stopped
// (Stop waits for the retries, nats.go v1.55.0). Measured on the three-node
// hub of TestExternalNATS: one of four runs after a SIGKILL. checkStall
// notices a mirror that holds events of which none has been applied for
// stallAfter, and replaces its consumer.

// stallAfter is how long a region's mirror may hold unapplied events while
// nothing is applied before the region's consumer is replaced.
func (r *Reconciler) stallAfter() time.Duration { return 2 * r.cfg.OfflineAfter }

// stallState is what checkStall last saw of a region: the sequence applied,
// and since when.
type stallState struct {
	applied uint64
	since   time.Time
}

// regionConsumer is a region's consume context with a switch that makes its
// handler drop every message, for a consumer that is abandoned rather than
// stopped.
type regionConsumer struct {
	jetstream.ConsumeContext
	off atomic.Bool
}

// checkStall replaces region reg's consumer when its mirror holds events up
// to lastSeq, past the sequence applied, and nothing was applied for
// stallAfter. The old consumer is abandoned (its handler ignores anything it
// still delivers), not stopped: stopping a stalled one blocks. Called by the
// health loop only.
func (r *Reconciler) checkStall(ctx context.Context, reg tally.RegionID, lastSeq uint64, now time.Time) {
	if r.stalls == nil {
		r.stalls = map[tally.RegionID]stallState{}
	}
	applied := r.Applied(reg)
	st, seen := r.stalls[reg]
	if !seen || lastSeq <= applied || applied != st.applied {
		r.stalls[reg] = stallState{applied: applied, since: now}
		return
	}
	if now.Sub(st.since) < r.stallAfter() {
		return
	}
	r.log.Warn().Str("region", string(reg)).Str("stream", tally.MirrorStream(reg)).Uint64("seq", applied).
		Uint64("last_seq", lastSeq).Dur("stalled", now.Sub(st.since)).Msg("consumer stalled: replacing it")
	r.consMu.Lock()
	if rc, ok := r.consumers[reg].(*regionConsumer); ok {
		rc.off.Store(true)
	}
	delete(r.consumers, reg)
	r.consMu.Unlock()
	if err := r.startConsumer(ctx, reg, 0); err != nil {
		r.log.Warn().Err(err).Str("region", string(reg)).Msg("consumer not replaced")
	}
	r.stalls[reg] = stallState{applied: applied, since: now}
}
