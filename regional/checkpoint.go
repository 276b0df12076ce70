package regional

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// checkpointTimeout bounds one checkpoint, and so how long it can hold the
// intake when the stream does not answer.
const checkpointTimeout = 5 * time.Second

// checkpointAttempts is how many times a checkpoint is rebuilt when a
// message got into the stream before it.
const checkpointAttempts = 5

// CheckpointResult is the outcome of Node.Checkpoint.
type CheckpointResult struct {
	// Made is false when no event arrived since the last checkpoint: then
	// nothing was stored and Checkpoint is zero.
	Made       bool
	Checkpoint tally.Checkpoint
	// StreamSeq is where the checkpoint is stored: Checkpoint.Seq+1.
	StreamSeq uint64
	// Duplicate is true when the stream already held this checkpoint.
	Duplicate bool
	// Pause is how long the intake was held: from the moment new
	// publishes waited until they could go again (0 when not Made and the
	// intake was not held).
	Pause time.Duration
}

// Checkpoint stores a checkpoint now, if events arrived since the last one:
// the region's totals and event chain as of the stream's last event, at the
// next sequence (see tally.Checkpoint). It holds the intake's publishes
// (HTTP and NATS) while it waits for the totals to apply everything stored,
// builds the checkpoint and publishes it with the expected last sequence;
// a message that got in first (published around the intake) makes it
// rebuild and retry, a few times. It returns once the node's totals have
// taken in the checkpoint (see LastCheckpoint). Errors have code
// EUNAVAILABLE when the stream does not answer, ECONFLICT when messages
// published around the intake kept getting in first, EINTERNAL otherwise. The node also calls it every
// Config.CheckpointInterval, at Open and at Close.
func (n *Node) Checkpoint(ctx context.Context) (CheckpointResult, error) {
	return n.checkpoint(ctx, false)
}

// LastCheckpoint returns the last checkpoint seen in the stream by the
// totals consumer and the sequence it is stored at; ok is false when there
// is none yet.
func (n *Node) LastCheckpoint() (cp tally.Checkpoint, streamSeq uint64, ok bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cp, n.cpAt, n.cpAt > 0
}

// newEvents reports whether events may have arrived since the last
// checkpoint: some were applied since, or messages are stored that the
// totals have yet to apply.
func (n *Node) newEvents() bool {
	stored := n.lastStored.Load()
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.chain.Seq > n.cpAt || stored > n.totals.LastSeq(n.region)
}

// noteStored records that the stream holds sequence seq.
func (n *Node) noteStored(seq uint64) {
	for {
		cur := n.lastStored.Load()
		if seq <= cur || n.lastStored.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// checkpoint makes a checkpoint if events arrived since the last one; final
// also makes the intake refuse every later publish.
func (n *Node) checkpoint(ctx context.Context, final bool) (CheckpointResult, error) {
	n.cpMu.Lock()
	defer n.cpMu.Unlock()
	if n.js == nil || n.stream == nil {
		return CheckpointResult{}, nil // Open failed before the stream existed
	}
	if !final && !n.newEvents() {
		return CheckpointResult{}, nil // without holding the intake
	}
	start := time.Now()
	n.gate.Lock()
	res, err := n.checkpointHeld(ctx)
	if final {
		n.closing = true
	}
	n.gate.Unlock()
	if !res.Made {
		return res, err
	}
	res.Pause = time.Since(start)
	// Return once the totals have taken in the checkpoint too, so that
	// LastCheckpoint and AppliedSeq reflect it (outside the gate: the
	// intake need not wait for this).
	if err := n.waitApplied(ctx, res.StreamSeq); err != nil {
		return res, unavailable(fmt.Errorf("checkpoint stored at seq %d, not yet applied: %w", res.StreamSeq, err))
	}
	return res, nil
}

// checkpointHeld makes the checkpoint; the caller holds the publish gate.
func (n *Node) checkpointHeld(ctx context.Context) (CheckpointResult, error) {
	for attempt := 1; ; attempt++ {
		// Every publish of the intake has been acknowledged (the gate):
		// once the totals have applied the last of them they describe the
		// whole stream, unless something was published around the intake,
		// which the expected last sequence catches.
		target := n.lastStored.Load()
		if err := n.waitApplied(ctx, target); err != nil {
			return CheckpointResult{}, unavailable(fmt.Errorf("checkpoint: totals catch-up to seq %d: %w", target, err))
		}
		n.mu.Lock()
		if n.chain.Seq <= n.cpAt {
			n.mu.Unlock()
			return CheckpointResult{}, nil
		}
		seq := n.totals.LastSeq(n.region)
		cp := n.totals.Checkpoint(n.region, seq, n.chain, time.Now())
		n.mu.Unlock()

		m := nats.NewMsg(tally.CheckpointSubject(n.region))
		m.Data = cp.Encode()
		ack, err := n.js.PublishMsg(ctx, m,
			jetstream.WithMsgID(tally.CheckpointMsgID(seq)),
			jetstream.WithExpectStream(tally.ResultsStream),
			jetstream.WithExpectLastSequence(seq))
		if err == nil {
			n.noteStored(ack.Sequence)
			return CheckpointResult{Made: true, Checkpoint: cp, StreamSeq: ack.Sequence, Duplicate: ack.Duplicate}, nil
		}
		var jerr jetstream.JetStreamError
		if !errors.As(err, &jerr) || jerr.APIError() == nil || jerr.APIError().ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
				errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionClosed) {
				return CheckpointResult{}, unavailable(fmt.Errorf("checkpoint at seq %d: %w", seq, err))
			}
			return CheckpointResult{}, fmt.Errorf("checkpoint at seq %d: %w", seq, err)
		}
		// Another message got in first: catch up with it and rebuild.
		if attempt == checkpointAttempts {
			return CheckpointResult{}, &wrapped{code: tally.ECONFLICT, msg: "checkpoint: messages keep arriving around the intake; try again later",
				err: fmt.Errorf("checkpoint: the stream moved on %d times in a row: %w", attempt, err)}
		}
		info, ierr := n.stream.Info(ctx)
		if ierr != nil {
			return CheckpointResult{}, unavailable(fmt.Errorf("checkpoint: stream info: %w", ierr))
		}
		n.log.Debug().Uint64("seq", seq).Uint64("last_seq", info.State.LastSeq).Int("attempt", attempt).
			Msg("checkpoint rebuilt: a message got in first")
		n.noteStored(info.State.LastSeq)
	}
}

// logCheckpoint logs a checkpoint made, at debug, or its error, at warn.
func (n *Node) logCheckpoint(res CheckpointResult, err error) {
	switch {
	case err != nil:
		n.log.Warn().Err(err).Str("stream", tally.ResultsStream).Msg("checkpoint failed")
	case res.Made:
		n.log.Debug().Uint64("seq", res.Checkpoint.Seq).Uint64("stream_seq", res.StreamSeq).
			Uint64("events", res.Checkpoint.Events).Bool("duplicate", res.Duplicate).
			Float64("duration_ms", float64(res.Pause.Microseconds())/1000).Msg("checkpoint stored")
	}
}

// startCheckpoints starts the checkpoint loop: every CheckpointInterval, a
// checkpoint if events arrived since the last one.
func (n *Node) startCheckpoints() {
	every := n.cfg.CheckpointInterval
	if every <= 0 {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	n.cpStop, n.cpDone = stop, make(chan struct{})
	go func() {
		defer close(n.cpDone)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				cctx, cancel := context.WithTimeout(ctx, checkpointTimeout)
				res, err := n.Checkpoint(cctx)
				cancel()
				if ctx.Err() != nil {
					return // Close makes the final one
				}
				n.logCheckpoint(res, err)
			}
		}
	}()
}
