package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
)

// Crash safety. The reconciler's whole state — the totals with the last
// sequence applied from each region, the chains, each region's latest
// checkpoint and alert, the audit records not yet published — is saved as
// one object (tally.SnapshotObject) in the hub's object store
// (tally.SnapshotBucket). It is taken under r.mu, so it is always a state
// the reconciler was in: the totals hold exactly the events up to their
// last sequences. After a crash, Open restores it and each consumer resumes
// at the sequence after the snapshot's: what was applied after the snapshot
// is applied again to the snapshot's totals, that is once.
//
// An object store Put (nats.go v1.55 jetstream/object.go) writes the new
// chunks under a fresh subject ($O.<bucket>.C.<nuid>), then the object's
// meta message (a subject rollup), and purges the old chunks only after
// that. A Put interrupted before the meta message is stored (killed, or its
// context or reader failed) leaves the previous snapshot readable; its
// orphan chunks are purged at the next Open (purgeOrphanChunks). One case
// is not atomic: Put publishes chunks and meta asynchronously, so a chunk
// the server refuses (a full disk) followed by a meta message it stores
// leaves an object whose digest does not match; Open then fails, naming the
// snapshot and the digest mismatch the object store reports at its end.

// snapshotVersion is the version of the snapshot format this hub writes:
// 2, whose totals are in their compact form (tally.TotalsCopy.WriteCompact).
// It also reads version 1, whose totals are a tally.TotalsState in JSON.
const snapshotVersion = 2

// snapshot is what is saved.
type snapshot struct {
	Version  int       `json:"version"`
	Election string    `json:"election"`
	Taken    time.Time `json:"taken"`
	// Totals is written and read apart, a group of cells at a time
	// (writeSnapshot, readSnapshot): null here.
	Totals  json.RawMessage  `json:"totals"`
	Regions []regionSnapshot `json:"regions"`
	Audit   []auditMsg       `json:"audit,omitempty"`
}

// regionSnapshot is one region's part of a snapshot.
type regionSnapshot struct {
	ID         tally.RegionID         `json:"id"`
	Chain      tally.Chain            `json:"chain"`
	LastUpdate time.Time              `json:"last_update,omitzero"`
	Checkpoint *tally.CheckpointEvent `json:"checkpoint,omitempty"`
	Alert      *tally.CheckpointEvent `json:"alert,omitempty"`
}

// takeLocked copies the state into a snapshot that later changes do not
// affect, its totals apart (Totals nil): their copy is written into the
// snapshot's place by writeSnapshot. The caller holds r.mu.
func (r *Reconciler) takeLocked() (*snapshot, *tally.TotalsCopy) {
	s := &snapshot{
		Version: snapshotVersion, Election: r.e.ID, Taken: time.Now().UTC(),
		Audit: append([]auditMsg(nil), r.audit...),
	}
	for _, st := range r.statuses {
		s.Regions = append(s.Regions, regionSnapshot{
			ID: st.ID, Chain: *r.chains[st.ID], LastUpdate: r.lastUpdate[st.ID],
			Checkpoint: copyEvent(st.Checkpoint), Alert: copyEvent(st.Alert),
		})
	}
	return s, r.totals.Copy()
}

// writeSnapshot writes s, with totals in its Totals' place in their compact
// form, a group of cells at a time: a national night's snapshot is more
// than a hundred megabytes even so, too much to build whole in memory
// beside the state itself.
func writeSnapshot(w io.Writer, s *snapshot, totals *tally.TotalsCopy) error {
	return tally.WriteJSONWith(w, s, "totals", "null", func() error { return totals.WriteCompact(w) })
}

func copyEvent(ev *tally.CheckpointEvent) *tally.CheckpointEvent {
	if ev == nil {
		return nil
	}
	c := *ev
	return &c
}

// saveSnapshot saves the state if it changed since the last save. It takes
// the state under r.mu and encodes and writes it without.
func (r *Reconciler) saveSnapshot(ctx context.Context) error {
	r.snapMu.Lock()
	defer r.snapMu.Unlock()
	start := time.Now()
	r.mu.Lock()
	if r.gen == r.savedGen {
		r.mu.Unlock()
		return nil
	}
	gen, unsaved, urgent := r.gen, r.unsaved, r.urgent
	s, totals := r.takeLocked()
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout(totals.Cells()))
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(writeSnapshot(pw, s, totals)) // nil: the end of the object
	}()
	info, err := r.obs.Put(ctx, jetstream.ObjectMeta{
		Name:        tally.SnapshotObject,
		Description: "reconciler state of election " + r.e.ID,
	}, pr)
	pr.CloseWithError(errors.New("snapshot not saved")) // ends the writer if Put stopped reading
	<-done
	if err != nil {
		return fmt.Errorf("save snapshot of %d cells after %s: %w", totals.Cells(), time.Since(start).Round(time.Millisecond), err)
	}
	r.mu.Lock()
	r.savedGen, r.savedUrgent = gen, urgent
	r.unsaved -= unsaved
	r.mu.Unlock()
	// A save of a second or more is worth an operator's notice: it is what
	// a large state under load costs, and it spaces the saves (snapshotBudget).
	ev := r.log.Debug()
	if took := time.Since(start); took >= time.Second {
		ev = r.log.Info()
	}
	ev.Uint64("bytes", info.Size).Int("cells", totals.Cells()).Int64("duration_ms", time.Since(start).Milliseconds()).Msg("snapshot saved")
	return nil
}

// snapshotTimeout is how long a save of a state of cells cells may take:
// 30 s, and 20 µs a cell more. The deadline is there for a store that
// stopped answering, not for a slow one: during a US-size intake, with the
// hub's JetStream busy storing the mirrors, saves took 10 to 17 µs a cell
// (1.0 and 1.5 million cells in 17.9 and 15.5 s), and the next ones ran
// past a fixed 30 s in two runs of three (tally bench). A save that fails
// leaves the last one in place; the snapshot loop tries again later.
func snapshotTimeout(cells int) time.Duration {
	return 30*time.Second + time.Duration(cells)*20*time.Microsecond
}

// snapshotBudget bounds the share of time the snapshots take: after a save
// that took d, the next waits at least d*snapshotBudget from the start of
// this one, even past SnapshotInterval. A large state under load (every
// save encodes every cell) then costs at most about a tenth of a core,
// instead of the apply path's CPU; a restart replays a little more of the
// mirrors, applied once as ever.
const snapshotBudget = 10

// snapshotCellsPerEvent and snapshotMaxWait say when a change is worth a
// save (snapshotDue). Every save encodes and stores every cell of the
// state, about a microsecond each (3 to 6 s for the 5.25 million cells of
// a US-size night, tally bench), while a restart replays what the snapshot
// lacks at about 20 µs an event: a save for fewer events than a 64th of
// the cells costs more than the replay it spares. A quiet hub of that size
// would otherwise re-encode its whole state for every few events; it now
// waits for 82,000 events, a couple of seconds of replay, or for
// snapshotMaxWait intervals.
const (
	snapshotCellsPerEvent = 64
	snapshotMaxWait       = 60 // SnapshotIntervals
)

// snapshotDue reports whether the snapshot loop saves a state of cells
// cells, waited after the last save: when it changed, and unsaved events
// are at least a snapshotCellsPerEvent-th of its cells, or a change the
// mirrors do not hold is urgent, or it has waited snapshotMaxWait
// intervals.
func snapshotDue(changed, urgent bool, unsaved uint64, cells int, waited, interval time.Duration) bool {
	switch {
	case !changed:
		return false
	case urgent, unsaved >= uint64(cells/snapshotCellsPerEvent):
		return true
	default:
		return waited >= snapshotMaxWait*interval
	}
}

// saveDue reports whether the snapshot loop saves now, waited after the
// last save (snapshotDue).
func (r *Reconciler) saveDue(waited time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.saveDueLocked(waited)
}

// saveDueLocked is saveDue for a caller that holds r.mu.
func (r *Reconciler) saveDueLocked(waited time.Duration) bool {
	return snapshotDue(r.gen != r.savedGen, r.urgent != r.savedUrgent, r.unsaved, r.totals.Cells(), waited, r.cfg.SnapshotInterval)
}

// snapshotLoop saves the state every SnapshotInterval when enough of it
// changed (snapshotDue), or less often when a save takes long
// (snapshotBudget). Close saves it a last time.
func (r *Reconciler) snapshotLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.cfg.SnapshotInterval)
	defer t.Stop()
	var next time.Time
	last := time.Now()
	for {
		select {
		case <-r.ctx.Done():
			return
		case now := <-t.C:
			if now.Before(next) || !r.saveDue(now.Sub(last)) {
				continue
			}
			start := time.Now()
			if err := r.saveSnapshot(r.ctx); err != nil {
				if r.ctx.Err() == nil {
					r.log.Error().Err(err).Msg("snapshot failed")
				}
			} else {
				last = start
			}
			next = start.Add(snapshotBudget * time.Since(start))
		}
	}
}

// snapshotLeaderWait bounds how long openSnapshot waits for a new
// replicated snapshot bucket to answer.
const snapshotLeaderWait = 30 * time.Second

// openSnapshot creates the snapshot bucket and restores the snapshot in it,
// if any. A snapshot of another election is an error naming it; none is a
// fresh start.
func (r *Reconciler) openSnapshot(ctx context.Context) error {
	obs, err := r.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      tally.SnapshotBucket,
		Description: "the reconciler's snapshot: totals, chains and checkpoints, with the last sequence applied per region",
		Storage:     jetstream.FileStorage,
		Replicas:    r.cfg.NATS.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create object store %s: %w", tally.SnapshotBucket, err)
	}
	r.obs = obs
	info, err := obs.GetInfo(ctx, tally.SnapshotObject)
	// A replicated bucket just created answers no one until its stream
	// has a leader (an external cluster, at the hub's first start).
	for end := time.Now().Add(snapshotLeaderWait); errors.Is(err, nats.ErrNoResponders) && time.Now().Before(end); {
		select {
		case <-ctx.Done():
			return fmt.Errorf("read snapshot: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
		info, err = obs.GetInfo(ctx, tally.SnapshotObject)
	}
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		r.log.Info().Msg("no snapshot: fresh start")
		return r.purgeOrphanChunks(ctx, "")
	}
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if err := r.purgeOrphanChunks(ctx, info.NUID); err != nil {
		return err
	}
	obj, err := obs.Get(ctx, tally.SnapshotObject)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	s, totals, err := readSnapshot(obj, r.e)
	obj.Close()
	if err != nil {
		return err
	}
	if err := r.restore(s, totals); err != nil {
		return err
	}
	ev := r.log.Info().Time("taken", s.Taken).Uint64("events", r.totals.Events())
	for _, reg := range r.e.Regions {
		ev = ev.Uint64("seq_"+string(reg.ID), r.totals.LastSeq(reg.ID))
	}
	ev.Msg("snapshot restored")
	return nil
}

// purgeOrphanChunks removes the chunks of snapshots whose Put was
// interrupted before it wrote the object's meta message (the process was
// killed): they are not part of any object and would stay forever. keep is
// the NUID of the current snapshot's chunks.
func (r *Reconciler) purgeOrphanChunks(ctx context.Context, keep string) error {
	name := "OBJ_" + tally.SnapshotBucket
	s, err := r.js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", name, err)
	}
	prefix := "$O." + tally.SnapshotBucket + ".C."
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", name, err)
	}
	for subj, n := range info.State.Subjects {
		if subj == prefix+keep {
			continue
		}
		if err := s.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
			return fmt.Errorf("purge %s: %w", subj, err)
		}
		r.log.Info().Str("subject", subj).Uint64("chunks", n).Msg("chunks of an interrupted snapshot purged")
	}
	return nil
}

// snapshotWhere names the snapshot object in errors.
var snapshotWhere = fmt.Sprintf("snapshot %s/%s", tally.SnapshotBucket, tally.SnapshotObject)

// readSnapshot reads a snapshot from rd, its totals a group of cells at a
// time (tally.ReadTotalsCompact; a cell at a time, tally.ReadTotals, for
// version 1): a national night's snapshot is too much to hold whole and
// decode at once beside the state it makes. Its fields come in the order
// writeSnapshot writes them, version and election first, each once; it
// reads rd to its end, where the object store checks the object's digest.
// Errors have code EINVALID and name the snapshot.
func readSnapshot(rd io.Reader, e *tally.Election) (*snapshot, *tally.Totals, error) {
	bad := func(format string, args ...any) error {
		return tally.Errorf(tally.EINVALID, "%s: "+format, append([]any{snapshotWhere}, args...)...)
	}
	dec := json.NewDecoder(rd)
	var s snapshot
	var totals *tally.Totals
	var sawVersion, sawElection bool
	err := tally.DecodeFields(dec, snapshotWhere, func(key string) error {
		var v any
		switch key {
		case "version":
			sawVersion, v = true, &s.Version
		case "election":
			sawElection, v = true, &s.Election
		case "taken":
			v = &s.Taken
		case "regions":
			v = &s.Regions
		case "audit":
			v = &s.Audit
		case "totals":
			if !sawVersion || !sawElection {
				return bad("totals before the version and election fields")
			}
			if err := checkSnapshotHead(&s, e); err != nil {
				return err
			}
			read := tally.ReadTotalsCompact
			if s.Version == 1 {
				read = tally.ReadTotals
			}
			var err error
			if totals, err = read(e, dec); err != nil {
				return bad("%s", tally.ErrorMessage(err))
			}
			return nil
		default:
			return bad("unknown field %q", key)
		}
		if err := dec.Decode(v); err != nil {
			return bad("%s: %v", key, err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	// The end of the object: reading it checks the digest.
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("data after the object")
		}
		return nil, nil, bad("%v", err)
	}
	if err := checkSnapshotHead(&s, e); err != nil {
		return nil, nil, err
	}
	if totals == nil {
		return nil, nil, bad("no totals")
	}
	return &s, totals, nil
}

// checkSnapshotHead checks that s is of this hub's version and of election
// e.
func checkSnapshotHead(s *snapshot, e *tally.Election) error {
	switch {
	case s.Version != 1 && s.Version != snapshotVersion:
		return tally.Errorf(tally.EINVALID, "%s: version %d, this hub reads 1 and %d", snapshotWhere, s.Version, snapshotVersion)
	case s.Election != e.ID:
		return tally.Errorf(tally.EINVALID, "%s: is of election %q, not %q: use another store, or remove the bucket to start afresh", snapshotWhere, s.Election, e.ID)
	}
	return nil
}

// restore replaces the fresh state made by New with s's, whose totals
// readSnapshot read. Errors have code EINVALID.
func (r *Reconciler) restore(s *snapshot, totals *tally.Totals) error {
	where := snapshotWhere
	seen := map[tally.RegionID]bool{}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range s.Regions {
		i, ok := r.regionIdx[rs.ID]
		if !ok || seen[rs.ID] {
			return tally.Errorf(tally.EINVALID, "%s: region %q unknown or listed twice", where, rs.ID)
		}
		seen[rs.ID] = true
		if rs.Chain.Seq > totals.LastSeq(rs.ID) {
			return tally.Errorf(tally.EINVALID, "%s: region %s: chain at seq %d, past the totals' %d", where, rs.ID, rs.Chain.Seq, totals.LastSeq(rs.ID))
		}
		c := rs.Chain
		r.chains[rs.ID] = &c
		if !rs.LastUpdate.IsZero() {
			r.lastUpdate[rs.ID] = rs.LastUpdate
		}
		r.statuses[i].Checkpoint, r.statuses[i].Alert = rs.Checkpoint, rs.Alert
	}
	for _, reg := range r.e.Regions {
		if !seen[reg.ID] && totals.LastSeq(reg.ID) > 0 {
			return tally.Errorf(tally.EINVALID, "%s: region %s has totals but no chain", where, reg.ID)
		}
	}
	r.totals = totals
	seqs := totals.LastContestSeqs()
	for _, reg := range r.e.Regions {
		r.contestSeq[reg.ID] = seqs[reg.ID]
		if r.contestSeq[reg.ID] == nil {
			r.contestSeq[reg.ID] = map[tally.ContestID]uint64{}
		}
		clear(r.contestRec[reg.ID])
	}
	r.audit = append(r.audit[:0], s.Audit...)
	r.gen, r.savedGen = 0, 0
	r.unsaved, r.urgent, r.savedUrgent = 0, 0, 0
	for _, c := range r.e.Contests {
		r.dirty[c.ID] = true
	}
	return nil
}

// dropAudited drops the pending checkpoint records that the audit stream
// already holds (restored from a snapshot older than them).
func (r *Reconciler) dropAudited() {
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := r.audit[:0]
	for _, m := range r.audit {
		var ev tally.CheckpointEvent
		if reg, ok := auditCheckpointRegion(m.Subject); ok && json.Unmarshal(m.Data, &ev) == nil && ev.StreamSeq <= r.auditedCheckpoint[reg] {
			continue
		}
		keep = append(keep, m)
	}
	r.audit = keep
}

// auditCheckpointRegion reports whether s is a region's audit checkpoint
// subject, and which region's.
func auditCheckpointRegion(s string) (tally.RegionID, bool) {
	const prefix = "tally.audit.checkpoint."
	if len(s) <= len(prefix) || s[:len(prefix)] != prefix {
		return "", false
	}
	return tally.RegionID(s[len(prefix):]), true
}

// catchUp waits until every attached mirror's messages as of now have been
// applied, at most CatchUpTimeout, logging progress every second. Open calls
// it before its first publish so that, after a restart, the national state
// it publishes is never older than what was published before.
func (r *Reconciler) catchUp(ctx context.Context) {
	start := time.Now()
	targets := map[tally.RegionID]uint64{}
	for _, reg := range r.e.Regions {
		if !r.attached[reg.ID] {
			continue
		}
		s, err := r.js.Stream(ctx, tally.MirrorStream(reg.ID))
		if err != nil {
			r.log.Warn().Err(err).Str("region", string(reg.ID)).Msg("mirror info unavailable: not waiting for it")
			continue
		}
		if last := s.CachedInfo().State.LastSeq; last > r.Applied(reg.ID) {
			targets[reg.ID] = last
		}
	}
	if len(targets) == 0 {
		return
	}
	deadline := time.NewTimer(r.cfg.CatchUpTimeout)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	lastLog := start
	for {
		behind := map[tally.RegionID]uint64{}
		for reg, last := range targets {
			if applied := r.Applied(reg); applied < last {
				behind[reg] = applied
			}
		}
		if len(behind) == 0 {
			r.log.Info().Int("regions", len(targets)).Int64("duration_ms", time.Since(start).Milliseconds()).Msg("caught up with the mirrors")
			return
		}
		logIt := func(ev func() *zerolog.Event, msg string) {
			for reg, applied := range behind {
				ev().Str("region", string(reg)).Uint64("seq", applied).Uint64("last_seq", targets[reg]).
					Int64("duration_ms", time.Since(start).Milliseconds()).Msg(msg)
			}
		}
		select {
		case <-deadline.C:
			logIt(r.log.Warn, "catch-up timed out: publishing a state behind the mirror")
			return
		case <-ctx.Done():
			logIt(r.log.Warn, "catch-up cut short")
			return
		case now := <-poll.C:
			if now.Sub(lastLog) >= time.Second {
				lastLog = now
				logIt(r.log.Info, "catching up with the mirror")
			}
		}
	}
}
