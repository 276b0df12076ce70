package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// AuditDuplicates is the duplicate window of the audit stream: an audit
// record published again with the same Nats-Msg-Id within it (a retried
// publish, or a pending record published again from a snapshot after a
// restart) is stored once.
const AuditDuplicates = 10 * time.Minute

// auditMsg is an audit record waiting to be published to tally.AuditStream.
// Pending records are part of the snapshot, so a crash does not lose them.
type auditMsg struct {
	Subject string          `json:"subject"`
	ID      string          `json:"id"` // Nats-Msg-Id
	Data    json.RawMessage `json:"data"`
}

// checkpointLocked compares the checkpoint stored at sequence seq of region
// reg's stream (decoded as cp, or undecodable with derr) with what the hub
// derived from the same stream up to seq-1, records the result as the
// region's latest checkpoint (and as its alert, if it is the first
// mismatch), and queues it for the audit stream. The caller holds r.mu and
// has applied everything below seq.
func (r *Reconciler) checkpointLocked(reg tally.RegionID, seq uint64, cp tally.Checkpoint, derr error) {
	ev := &tally.CheckpointEvent{Region: reg, StreamSeq: seq, Compared: time.Now().UTC()}
	err := derr
	if err == nil {
		ev.Seq, ev.Events, ev.Hash, ev.At = cp.Seq, cp.Events, cp.Hash, cp.At
		err = cp.Compare(r.totals.Checkpoint(reg, seq-1, *r.chains[reg], cp.At))
	}
	ev.Matched = err == nil
	i := r.regionIdx[reg]
	st := &r.statuses[i]
	st.Checkpoint = ev
	if err != nil {
		ev.Mismatch = tally.ErrorMessage(err)
		if st.Alert == nil {
			st.Alert = ev
		}
		r.log.Error().Str("region", string(reg)).Uint64("seq", seq).Uint64("covers", ev.Seq).
			Str("mismatch", ev.Mismatch).Msg("checkpoint mismatch")
	} else {
		r.log.Debug().Str("region", string(reg)).Uint64("seq", seq).Uint64("events", ev.Events).Msg("checkpoint matched")
	}
	r.regionsDirty = true
	if seq > r.auditedCheckpoint[reg] {
		r.queueAuditLocked(tally.AuditCheckpointSubject(reg), "checkpoint-"+string(reg)+"-"+strconv.FormatUint(seq, 10), ev)
	}
	r.reconcileLocked(i)
}

// reconcileLocked recomputes whether region i is reconciled: its latest
// checkpoint matched, no checkpoint ever mismatched, it is live, and no
// results event came after that checkpoint. It recomputes too whether the
// region is reconciled in each of its contests: the same, but with no
// results event of that contest after the checkpoint. A contest whose
// flag changes is republished; only those: a region's next report makes
// it unreconciled in that report's contest, not in all of its ballot.
// The caller holds r.mu.
func (r *Reconciler) reconcileLocked(i int) {
	st := &r.statuses[i]
	cp := st.Checkpoint
	checked := cp != nil && cp.Matched && st.Alert == nil && st.Status == tally.StatusLive
	if rec := checked && r.chains[st.ID].Events == cp.Events; rec != st.Reconciled {
		st.Reconciled = rec
		r.regionsDirty = true
	}
	seqs, recs := r.contestSeq[st.ID], r.contestRec[st.ID]
	for _, c := range r.regionContests[st.ID] {
		if rec := checked && seqs[c] <= cp.Seq; rec != recs[c] {
			recs[c] = rec
			r.dirty[c] = true
		}
	}
}

// queueAuditLocked queues v as an audit record on subject with message id
// id. The caller holds r.mu.
func (r *Reconciler) queueAuditLocked(subject, id string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		r.log.Error().Err(err).Str("subject", subject).Msg("audit record not encodable")
		return
	}
	r.audit = append(r.audit, auditMsg{Subject: subject, ID: id, Data: b})
	r.gen++
}

// auditStatusPrefix begins every region's status record subject.
var auditStatusPrefix = tally.AuditStatusSubject("")

// statusEventLocked queues the audit record of region i's status change
// from old. The caller holds r.mu.
func (r *Reconciler) statusEventLocked(i int, old string, behind uint64) {
	st := r.statuses[i]
	ev := tally.StatusEvent{
		Region: st.ID, Status: st.Status, Was: old, At: st.Since,
		Applied: st.Applied, LastSeq: st.LastSeq, Behind: behind,
	}
	r.queueAuditLocked(tally.AuditStatusSubject(st.ID),
		"status-"+string(st.ID)+"-"+strconv.FormatInt(st.Since.UnixNano(), 10), ev)
	r.urgent++ // not in the mirrors: the next snapshot holds it
}

// flushAudit publishes the pending audit records in order. A record that
// fails stays pending, with those after it, for the next round.
func (r *Reconciler) flushAudit(ctx context.Context) error {
	r.mu.Lock()
	pending := r.audit
	r.audit = nil
	r.mu.Unlock()
	for i, m := range pending {
		_, err := r.js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Data: m.Data},
			jetstream.WithMsgID(m.ID), jetstream.WithExpectStream(tally.AuditStream))
		if err != nil {
			r.mu.Lock()
			r.audit = append(pending[i:len(pending):len(pending)], r.audit...)
			r.mu.Unlock()
			return fmt.Errorf("publish audit record %s: %w", m.ID, err)
		}
	}
	if len(pending) > 0 {
		r.mu.Lock()
		r.gen++ // the next snapshot no longer holds them
		for _, m := range pending {
			if strings.HasPrefix(m.Subject, auditStatusPrefix) {
				// A restart from a snapshot holding a published status
				// record would publish it again, past the duplicate
				// window if the snapshot is old enough.
				r.urgent++
				break
			}
		}
		r.mu.Unlock()
	}
	return nil
}

// openAudit creates the audit stream and reads, for each region, the stream
// sequence of the last checkpoint it records, so that checkpoints compared
// again after a restart are not recorded twice.
func (r *Reconciler) openAudit(ctx context.Context) error {
	s, err := r.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        tally.AuditStream,
		Description: "the hub's record of region status changes and compared checkpoints",
		Subjects:    []string{tally.AuditSubjects},
		Storage:     jetstream.FileStorage,
		Replicas:    r.cfg.NATS.Replicas,
		Duplicates:  AuditDuplicates,
	})
	if err != nil {
		return fmt.Errorf("create stream %s: %w", tally.AuditStream, err)
	}
	for _, reg := range r.e.Regions {
		m, err := s.GetLastMsgForSubject(ctx, tally.AuditCheckpointSubject(reg.ID))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read stream %s: %w", tally.AuditStream, err)
		}
		var ev tally.CheckpointEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			return fmt.Errorf("read stream %s: seq %d: %w", tally.AuditStream, m.Sequence, err)
		}
		r.auditedCheckpoint[reg.ID] = ev.StreamSeq
	}
	return nil
}
