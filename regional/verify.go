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

// Audit is the outcome of Verify: how many events and checkpoints were read
// and which of them fail the check.
type Audit struct {
	Stream      string         `json:"stream"`
	Events      int            `json:"events"`
	Checkpoints int            `json:"checkpoints"`
	Problems    []AuditProblem `json:"problems,omitempty"`
}

// AuditProblem is one stored event that does not carry a valid signature of
// an office allowed to send it, or a checkpoint whose event count or hash
// does not match the events before it.
type AuditProblem struct {
	Seq     uint64        `json:"seq"`
	Subject string        `json:"subject"`
	ID      tally.EventID `json:"id,omitempty"`
	Code    string        `json:"code"`
	Message string        `json:"message"`
}

// Verify reads every event of stream (a region's RESULTS stream, or the
// hub's mirror of it) and checks, from the stored bytes alone, that each is
// a report signed by an office of offices that may report for its precinct,
// and that it was stored on its own precinct's subject. Each checkpoint of
// the region is checked against the chain of the events before it (its
// sequence, event count and hash; its totals are the hub's to compare). It
// returns an error only when the stream cannot be read; bad events and
// checkpoints are Audit.Problems.
func Verify(ctx context.Context, js jetstream.JetStream, stream string, offices *tally.Offices) (Audit, error) {
	a := Audit{Stream: stream}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return a, fmt.Errorf("verify: stream %s: %w", stream, err)
	}
	last := s.CachedInfo().State.LastSeq
	if s.CachedInfo().State.Msgs == 0 {
		return a, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return a, fmt.Errorf("verify: consumer on %s: %w", stream, err)
	}
	var chain *tally.Chain // started by the first event or checkpoint, with its region
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
			return a, fmt.Errorf("verify: %s: no message after %d events, before seq %d", stream, a.Events, last)
		}
		if err != nil {
			return a, fmt.Errorf("verify: read %s: %w", stream, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return a, fmt.Errorf("verify: metadata: %w", err)
		}
		seq, subj := md.Sequence.Stream, msg.Subject()
		var p *AuditProblem
		if r, _, _, ok := tally.ParseResultsSubject(subj); ok {
			if chain == nil {
				c := tally.NewChain(r)
				chain = &c
			}
			chain.Add(seq, subj, msg.Data())
			a.Events++
			p = checkEvent(subj, msg.Data(), offices)
		} else if r, ok := tally.IsCheckpointSubject(subj); ok {
			if chain == nil {
				c := tally.NewChain(r)
				chain = &c
			}
			a.Checkpoints++
			p = checkCheckpoint(subj, seq, msg.Data(), *chain)
		} else {
			a.Events++
			p = &AuditProblem{Subject: subj, Code: tally.EINVALID, Message: "neither a results nor a checkpoint subject"}
		}
		if p != nil {
			p.Seq = seq
			a.Problems = append(a.Problems, *p)
		}
		if md.Sequence.Stream >= last {
			return a, nil
		}
	}
}

// checkEvent checks one stored event; nil means it is fine.
func checkEvent(subject string, data []byte, offices *tally.Offices) *AuditProblem {
	p := &AuditProblem{Subject: subject}
	r, err := tally.DecodeReport(data)
	if err != nil {
		p.Code, p.Message = tally.ErrorCode(err), tally.ErrorMessage(err)
		return p
	}
	p.ID = r.ID
	reg, prec, con, ok := tally.ParseResultsSubject(subject)
	if ok && (reg != r.Region || prec != r.Precinct || con != r.Contest) {
		p.Code, p.Message = tally.EFORBIDDEN, fmt.Sprintf("stored on %s, but the report is of %s/%s/%s", subject, r.Region, r.Precinct, r.Contest)
		return p
	}
	if err := offices.Authorize(r); err != nil {
		p.Code, p.Message = tally.ErrorCode(err), tally.ErrorMessage(err)
		return p
	}
	return nil
}

// checkCheckpoint checks a checkpoint stored at seq against chain, the
// events before it; nil means it matches.
func checkCheckpoint(subject string, seq uint64, data []byte, chain tally.Chain) *AuditProblem {
	p := &AuditProblem{Subject: subject, Code: tally.ECONFLICT}
	cp, err := tally.DecodeCheckpoint(data)
	switch {
	case err != nil:
		p.Code, p.Message = tally.ErrorCode(err), tally.ErrorMessage(err)
	case cp.Seq != seq-1:
		p.Message = fmt.Sprintf("checkpoint covers seq %d but is stored at %d", cp.Seq, seq)
	case cp.Events != chain.Events || cp.Hash != chain.Hex():
		p.Message = fmt.Sprintf("checkpoint at seq %d: %d events, hash %s; the stream holds %d events, hash %s",
			cp.Seq, cp.Events, cp.Hash, chain.Events, chain.Hex())
	default:
		return nil
	}
	return p
}
