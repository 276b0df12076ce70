package regional

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
)

// publishTimeout bounds the wait for the acknowledgements of one request.
const publishTimeout = 30 * time.Second

func (n *Node) handleSubmit(c echo.Context, correctionsOnly bool) error {
	start := time.Now()
	results, err := n.submitHTTP(c, correctionsOnly)
	n.metrics.done(viaHTTP, start, err)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, SubmitResponse{Results: results})
}

func (n *Node) submitHTTP(c echo.Context, correctionsOnly bool) ([]SubmitResult, error) {
	body, err := n.readBody(c)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), publishTimeout)
	defer cancel()
	return n.submit(ctx, body, correctionsOnly, viaHTTP)
}

// prepared is one validated report ready to publish.
type prepared struct {
	rep     *tally.Report
	name    string // "reports[i]" or "report", for messages
	subject string
	data    []byte
	dup     bool // a retried correction found in the stream by the pre-check
	seq     uint64
	office  string // the office whose signature was verified; "" if unsigned
}

// submit validates every report of body, checks the corrections against the
// stream and only then publishes them all. Errors name the offending item;
// when one is returned before publishing, nothing was published. via is the
// transport, for the metrics.
func (n *Node) submit(ctx context.Context, body []byte, correctionsOnly bool, via int) ([]SubmitResult, error) {
	start := time.Now()
	reps, err := tally.DecodeReports(body, n.cfg.HTTP.MaxBatch)
	if err != nil {
		return nil, err
	}
	batch := isBatch(body)
	now := time.Now().UTC()
	items := make([]*prepared, len(reps))
	for i, r := range reps {
		p := &prepared{rep: r, name: "report"}
		if batch {
			p.name = fmt.Sprintf("reports[%d]", i)
		}
		if err := n.prepare(p, now, correctionsOnly); err != nil {
			return nil, err
		}
		items[i] = p
	}
	perOffice := map[string]int{}
	for _, p := range items {
		if p.office != "" {
			perOffice[p.office]++
		}
	}
	if err := n.limits.take(perOffice); err != nil {
		return nil, err
	}
	for _, p := range items {
		if p.rep.IsCorrection() {
			if err := n.checkCorrection(ctx, p); err != nil {
				return nil, err
			}
		}
	}
	if err := n.publish(ctx, items); err != nil {
		return nil, err
	}
	n.metrics.countAccepted(via, items)
	results := make([]SubmitResult, len(items))
	dups := 0
	for i, p := range items {
		results[i] = SubmitResult{ID: p.rep.ID, Seq: p.seq, Duplicate: p.dup}
		if p.dup {
			dups++
		}
	}
	zerolog.Ctx(ctx).Debug().Str("stream", tally.ResultsStream).
		Int("reports", len(items)).Int("duplicates", dups).Bool("corrections", correctionsOnly).
		Int64("duration_ms", time.Since(start).Milliseconds()).Msg("reports accepted")
	return results, nil
}

// prepare fills in the defaults of p.rep, validates it and encodes it.
func (n *Node) prepare(p *prepared, now time.Time, correctionsOnly bool) error {
	r := p.rep
	if err := n.authorize(p, now); err != nil {
		return err
	}
	if correctionsOnly && r.Correction == nil {
		return tally.Errorf(tally.EINVALID, "%s: correction: required; this endpoint takes corrections only (send reports to /api/v1/reports)", p.name)
	}
	if r.Region == "" {
		r.Region = n.region
	}
	if r.Region != n.region {
		return tally.Errorf(tally.EINVALID, "%s: region: this is the node of region %q; send reports of region %q to their own node", p.name, n.region, r.Region)
	}
	// The id is assigned before reported_at is filled in, so a retry
	// without id or time gets the same id and is recognised as a duplicate.
	if err := r.AssignID(); err != nil {
		return fmt.Errorf("%s: assign id: %w", p.name, err)
	}
	if r.ReportedAt.IsZero() {
		r.ReportedAt = now
	}
	if err := r.Validate(n.e); err != nil {
		return tally.Errorf(tally.ErrorCode(err), "%s: %s", p.name, tally.ErrorMessage(err))
	}
	data, err := r.Encode()
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	p.data = data
	p.subject = tally.ResultsSubject(r.Region, r.Precinct, r.Contest)
	return nil
}

// checkCorrection checks a correction against its subject's history before
// anything is published. A correction is stored only as the next message on
// its subject after the one it supersedes (the publish carries
// Nats-Expected-Last-Subject-Sequence), so:
//   - the subject's last message is this correction: a retry, answered as a
//     duplicate with the stored sequence;
//   - the last message is the superseded report (by sequence and id): fine;
//   - otherwise the message right after supersedes_seq on the subject is
//     this correction: a retry made after a later correction, also a
//     duplicate; anything else is stale or wrong and refused with ECONFLICT.
//
// Retries are recognised from the stream itself, not the duplicate window,
// because on a single-replica stream the server checks the expected
// subject sequence before the duplicate window (see the package tests).
func (n *Node) checkCorrection(ctx context.Context, p *prepared) error {
	cr := p.rep.Correction
	last, err := n.stream.GetLastMsgForSubject(ctx, p.subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return tally.Errorf(tally.ECONFLICT, "%s: correction.supersedes_seq: %d, but precinct %q has no report for contest %q",
			p.name, cr.SupersedesSeq, p.rep.Precinct, p.rep.Contest)
	}
	if err != nil {
		return unavailable(fmt.Errorf("%s: read last message of %s: %w", p.name, p.subject, err))
	}
	lastID := storedID(last)
	if lastID == p.rep.ID {
		p.dup, p.seq = true, last.Sequence
		return nil
	}
	if last.Sequence == cr.SupersedesSeq && lastID == cr.Supersedes {
		return nil
	}
	// Was this correction stored, and superseded since?
	next, err := n.stream.GetMsg(ctx, cr.SupersedesSeq+1, jetstream.WithGetMsgSubject(p.subject))
	if err == nil && storedID(next) == p.rep.ID {
		p.dup, p.seq = true, next.Sequence
		return nil
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return unavailable(fmt.Errorf("%s: read message after %d on %s: %w", p.name, cr.SupersedesSeq, p.subject, err))
	}
	if last.Sequence != cr.SupersedesSeq {
		return tally.Errorf(tally.ECONFLICT, "%s: correction.supersedes_seq: %d is stale; the latest report of precinct %q for contest %q is seq %d (id %q)",
			p.name, cr.SupersedesSeq, p.rep.Precinct, p.rep.Contest, last.Sequence, lastID)
	}
	return tally.Errorf(tally.ECONFLICT, "%s: correction.supersedes: %q does not match seq %d, which holds report %q",
		p.name, cr.Supersedes, cr.SupersedesSeq, lastID)
}

// storedID returns the event id of a stored message: its Nats-Msg-Id, or
// the id in its data.
func storedID(m *jetstream.RawStreamMsg) tally.EventID {
	if id := m.Header.Get(jetstream.MsgIDHeader); id != "" {
		return tally.EventID(id)
	}
	var v struct {
		ID tally.EventID `json:"id"`
	}
	if json.Unmarshal(m.Data, &v) != nil {
		return ""
	}
	return v.ID
}

func (p *prepared) msg() (*nats.Msg, []jetstream.PublishOpt) {
	m := nats.NewMsg(p.subject)
	m.Data = p.data
	opts := []jetstream.PublishOpt{
		jetstream.WithMsgID(string(p.rep.ID)),
		jetstream.WithExpectStream(tally.ResultsStream),
	}
	if p.rep.IsCorrection() {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(p.rep.Correction.SupersedesSeq))
	}
	return m, opts
}

// gateChunk is how many reports of a batch are published under one hold of
// the publish gate: a checkpoint waits for at most one chunk's
// acknowledgements, not a whole batch's.
const gateChunk = 64

// publish publishes every item not already found stored: a single report
// synchronously, a batch asynchronously, chunk by chunk, with each chunk's
// acknowledgements awaited together. Each publish and its acknowledgement
// happen under the publish gate, held for reading, so that a checkpoint is
// never stored while a publish is unacknowledged; once the node is closing
// (after its final checkpoint) nothing more is published.
func (n *Node) publish(ctx context.Context, items []*prepared) error {
	var pending []*prepared
	for _, p := range items {
		if !p.dup {
			pending = append(pending, p)
		}
	}
	stored := 0
	for len(pending) > stored {
		chunk := pending[stored:min(stored+gateChunk, len(pending))]
		k, failed, err := n.publishChunk(ctx, chunk)
		stored += k
		if err != nil {
			return n.publishError(failed, err, stored, len(pending))
		}
	}
	return nil
}

// publishChunk publishes items under the gate and returns how many were
// stored, and the first failure.
func (n *Node) publishChunk(ctx context.Context, items []*prepared) (int, *prepared, error) {
	n.gate.RLock()
	defer n.gate.RUnlock()
	if n.closing {
		return 0, items[0], errClosing
	}
	if len(items) == 1 {
		m, opts := items[0].msg()
		ack, err := n.js.PublishMsg(ctx, m, opts...)
		if err != nil {
			return 0, items[0], err
		}
		n.stored(ctx, items[0], ack)
		return 1, nil, nil
	}
	futures := make([]jetstream.PubAckFuture, len(items))
	for i, p := range items {
		m, opts := p.msg()
		f, err := n.js.PublishMsgAsync(m, opts...)
		if err != nil {
			// Wait for those already sent so the count is right.
			return n.awaitStored(ctx, futures[:i], items), p, err
		}
		futures[i] = f
	}
	var firstErr error
	var failed *prepared
	stored := 0
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			n.stored(ctx, items[i], ack)
			stored++
		case err := <-f.Err():
			if firstErr == nil {
				firstErr, failed = err, items[i]
			}
		case <-ctx.Done():
			if firstErr == nil {
				firstErr, failed = ctx.Err(), items[i]
			}
		}
	}
	return stored, failed, firstErr
}

// errClosing refuses a publish after the node's final checkpoint.
var errClosing = errors.New("the region node is shutting down")

// awaitStored waits for the acknowledgements of futures and counts the
// reports stored.
func (n *Node) awaitStored(ctx context.Context, futures []jetstream.PubAckFuture, items []*prepared) int {
	stored := 0
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			n.stored(ctx, items[i], ack)
			stored++
		case <-f.Err():
		case <-ctx.Done():
			return stored
		}
	}
	return stored
}

func (n *Node) stored(ctx context.Context, p *prepared, ack *jetstream.PubAck) {
	p.seq, p.dup = ack.Sequence, ack.Duplicate
	n.noteStored(ack.Sequence)
	zerolog.Ctx(ctx).Debug().Str("region", string(p.rep.Region)).Str("precinct", string(p.rep.Precinct)).
		Str("contest", string(p.rep.Contest)).Str("stream", ack.Stream).Uint64("seq", ack.Sequence).
		Bool("duplicate", ack.Duplicate).Msg("report stored")
}

// publishError classifies a publish failure: a stale correction that raced
// past the pre-check is a conflict, a server that does not answer is
// unavailable, anything else internal. The message says how many of the
// request's reports were stored, and that resubmitting is safe.
func (n *Node) publishError(p *prepared, err error, stored, total int) error {
	var note string
	if total > 1 {
		note = fmt.Sprintf("; %d of %d reports were stored, and resubmitting the request is safe (stored reports answer as duplicates)", stored, total)
	}
	var jerr jetstream.JetStreamError
	if errors.As(err, &jerr) && jerr.APIError() != nil {
		switch jerr.APIError().ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			seq := uint64(0)
			if p.rep.Correction != nil {
				seq = p.rep.Correction.SupersedesSeq
			}
			return tally.Errorf(tally.ECONFLICT, "%s: correction.supersedes_seq: %d is stale; precinct %q was corrected or reported again for contest %q (%s)%s",
				p.name, seq, p.rep.Precinct, p.rep.Contest, jerr.APIError().Description, note)
		}
	}
	if errors.Is(err, errClosing) {
		return &wrapped{code: tally.EUNAVAILABLE, msg: fmt.Sprintf("%s: the region node is shutting down; retry later%s", p.name, note), err: err}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrTooManyStalledMsgs) || errors.Is(err, nats.ErrConnectionClosed) {
		return &wrapped{code: tally.EUNAVAILABLE, msg: fmt.Sprintf("%s: results stream not answering; retry later%s", p.name, note),
			err: fmt.Errorf("publish %s to %s: %w", p.rep.ID, p.subject, err)}
	}
	return &wrapped{code: tally.EINTERNAL, msg: fmt.Sprintf("%s: internal error%s", p.name, note),
		err: fmt.Errorf("publish %s to %s: %w", p.rep.ID, p.subject, err)}
}

func unavailable(err error) error {
	return &wrapped{code: tally.EUNAVAILABLE, msg: "results stream not answering; retry later", err: err}
}

// wrapped is an error with a code and user message on top of an internal
// cause, which is logged but not shown.
type wrapped struct {
	code, msg string
	err       error
}

func (w *wrapped) Error() string { return w.msg + ": " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

// As lets tally.ErrorCode and tally.ErrorMessage see the code and message.
func (w *wrapped) As(target any) bool {
	if t, ok := target.(**tally.Error); ok {
		*t = &tally.Error{Code: w.code, Message: w.msg}
		return true
	}
	return false
}

// isBatch reports whether body is a batch (an array or {"reports": ...})
// rather than one report, so messages can name items as reports[i].
func isBatch(body []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return false
	}
	if d, ok := tok.(json.Delim); ok && d == '[' {
		return true
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return false
	}
	key, err := dec.Token()
	return err == nil && key == "reports"
}
