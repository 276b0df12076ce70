package tally

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// The reconciliation contract. Each region node periodically stores a
// Checkpoint in its own RESULTS stream, on CheckpointSubject: its totals per
// contest, how many events it accepted and a running SHA-256 chain over them,
// all as of the event just before the checkpoint. The hub's reconciler
// recomputes the same from its mirror, in the same order, and compares; a
// difference names the region and the sequence.

// CheckpointSubject is the subject of region r's checkpoints in its RESULTS
// stream: tally.<region>.checkpoint. It is outside ResultsSubjects(r), so a
// checkpoint is never taken for a report.
func CheckpointSubject(r RegionID) string { return "tally." + string(r) + ".checkpoint" }

// IsCheckpointSubject reports whether s is the checkpoint subject of a region,
// and which.
func IsCheckpointSubject(s string) (RegionID, bool) {
	const prefix, suffix = "tally.", ".checkpoint"
	if len(s) <= len(prefix)+len(suffix) || s[:len(prefix)] != prefix || s[len(s)-len(suffix):] != suffix {
		return "", false
	}
	r := s[len(prefix) : len(s)-len(suffix)]
	if ValidToken(r) != nil {
		return "", false
	}
	return RegionID(r), true
}

// CheckpointMsgID is the JetStream message id of the checkpoint covering
// sequence seq: a checkpoint published twice for the same sequence is kept
// once.
func CheckpointMsgID(seq uint64) string { return fmt.Sprintf("checkpoint-%d", seq) }

// Chain is the running hash over a region's accepted events, in stream
// order. Its zero value is not ready: start one with NewChain. Every message
// on a results subject counts (see ParseResultsSubject), checkpoints and
// other messages do not. Each step hashes the previous sum, the event's
// stream sequence, its subject and its stored bytes, so a chain detects an
// event altered, dropped, added, repeated or moved.
type Chain struct {
	Sum    [32]byte `json:"-"`
	Events uint64   `json:"events"` // events hashed
	Seq    uint64   `json:"seq"`    // stream sequence of the last event hashed
}

// NewChain returns the empty chain of region r: its sum is SHA-256 of
// "tally-chain-v1/" and the region id, so that two regions' chains never
// coincide.
func NewChain(r RegionID) Chain {
	return Chain{Sum: sha256.Sum256([]byte("tally-chain-v1/" + string(r)))}
}

// Add hashes the event stored at seq under subject with bytes data:
// sum = SHA-256(sum ‖ seq as 8 bytes big-endian ‖ len(subject) as 4 bytes ‖
// subject ‖ len(data) as 4 bytes ‖ data).
func (c *Chain) Add(seq uint64, subject string, data []byte) {
	h := sha256.New()
	h.Write(c.Sum[:])
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	h.Write(b[:])
	binary.BigEndian.PutUint32(b[:4], uint32(len(subject)))
	h.Write(b[:4])
	h.Write([]byte(subject))
	binary.BigEndian.PutUint32(b[:4], uint32(len(data)))
	h.Write(b[:4])
	h.Write(data)
	h.Sum(c.Sum[:0])
	c.Events++
	c.Seq = seq
}

// Hex returns the chain's sum in lower-case hex.
func (c Chain) Hex() string { return hex.EncodeToString(c.Sum[:]) }

// MarshalJSON encodes the chain with its sum in hex, for snapshots.
func (c Chain) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Sum    string `json:"sum"`
		Events uint64 `json:"events"`
		Seq    uint64 `json:"seq"`
	}{c.Hex(), c.Events, c.Seq})
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (c *Chain) UnmarshalJSON(b []byte) error {
	var v struct {
		Sum    string `json:"sum"`
		Events uint64 `json:"events"`
		Seq    uint64 `json:"seq"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	sum, err := hex.DecodeString(v.Sum)
	if err != nil || len(sum) != len(c.Sum) {
		return Errorf(EINVALID, "chain: sum: not 64 hex digits")
	}
	copy(c.Sum[:], sum)
	c.Events, c.Seq = v.Events, v.Seq
	return nil
}

// Checkpoint is a region's account of everything it accepted up to and
// including stream sequence Seq. The region stores it at sequence Seq+1
// (published with Nats-Expected-Last-Sequence: Seq), so a reader that has
// applied the stream up to the checkpoint's own sequence minus one holds
// exactly the state the checkpoint describes.
type Checkpoint struct {
	Region RegionID `json:"region"`
	// Seq is the last stream sequence covered.
	Seq uint64 `json:"seq"`
	// Events is the number of events (results messages) at or below Seq.
	Events uint64 `json:"events"`
	// Hash is the Chain's sum after the last of them, in hex.
	Hash string `json:"hash"`
	// Contests are the region's totals of each contest that has a report,
	// in the election's contest order.
	Contests []CheckpointContest `json:"contests"`
	// At is when the region made the checkpoint.
	At time.Time `json:"at"`
}

// CheckpointContest is one contest's totals in a Checkpoint: the sums of the
// latest report of each of the region's precincts.
type CheckpointContest struct {
	Contest     ContestID             `json:"contest"`
	Votes       map[CandidateID]int64 `json:"votes"`
	BallotsCast int64                 `json:"ballots_cast"`
	Reporting   int                   `json:"reporting"`
	Complete    int                   `json:"complete"`
}

// Checkpoint returns region r's checkpoint of totals t and chain c, which
// have taken in every message of r's stream up to and including sequence seq
// (events and other messages alike).
func (t *Totals) Checkpoint(r RegionID, seq uint64, c Chain, at time.Time) Checkpoint {
	cp := Checkpoint{Region: r, Seq: seq, Events: c.Events, Hash: c.Hex(), At: at.UTC(), Contests: []CheckpointContest{}}
	for _, con := range t.e.Contests {
		ct := t.contests[con.ID]
		if ct == nil {
			continue
		}
		rt := ct.Regions[r]
		if rt == nil {
			continue
		}
		votes := make(map[CandidateID]int64, len(rt.Votes))
		for cand, n := range rt.Votes {
			votes[cand] = n
		}
		cp.Contests = append(cp.Contests, CheckpointContest{
			Contest: con.ID, Votes: votes, BallotsCast: rt.BallotsCast,
			Reporting: rt.Reporting, Complete: rt.Complete,
		})
	}
	return cp
}

// Encode returns the checkpoint's JSON.
func (cp Checkpoint) Encode() []byte {
	b, err := json.Marshal(cp)
	if err != nil {
		panic("tally: encode checkpoint: " + err.Error()) // only maps of strings to ints: cannot fail
	}
	return b
}

// DecodeCheckpoint decodes a checkpoint. Errors have code EINVALID and name
// the field.
func DecodeCheckpoint(b []byte) (Checkpoint, error) {
	var cp Checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return Checkpoint{}, Errorf(EINVALID, "checkpoint: %v", err)
	}
	switch {
	case ValidToken(string(cp.Region)) != nil:
		return Checkpoint{}, Errorf(EINVALID, "checkpoint: region: %q is not a region id", cp.Region)
	case len(cp.Hash) != 64:
		return Checkpoint{}, Errorf(EINVALID, "checkpoint: hash: not 64 hex digits")
	case cp.Events > cp.Seq:
		return Checkpoint{}, Errorf(EINVALID, "checkpoint: events: %d is more than seq %d", cp.Events, cp.Seq)
	}
	return cp, nil
}

// Compare checks the region's checkpoint cp against want, the same computed
// by the reader, and returns nil when they agree, or an error with code
// ECONFLICT that names the first difference: sequence, event count, hash,
// then each contest's totals.
func (cp Checkpoint) Compare(want Checkpoint) error {
	diff := func(format string, args ...any) error {
		return Errorf(ECONFLICT, "region %s checkpoint at seq %d: "+format, append([]any{cp.Region, cp.Seq}, args...)...)
	}
	switch {
	case cp.Region != want.Region:
		return diff("region: %q, expected %q", cp.Region, want.Region)
	case cp.Seq != want.Seq:
		return diff("covers seq %d, expected %d", cp.Seq, want.Seq)
	case cp.Events != want.Events:
		return diff("events: region counted %d, hub %d", cp.Events, want.Events)
	case cp.Hash != want.Hash:
		return diff("hash: region %s, hub %s", cp.Hash, want.Hash)
	}
	got := map[ContestID]CheckpointContest{}
	for _, c := range cp.Contests {
		got[c.Contest] = c
	}
	ids := map[ContestID]bool{}
	for _, c := range want.Contests {
		ids[c.Contest] = true
	}
	for _, c := range cp.Contests {
		ids[c.Contest] = true
	}
	sorted := make([]ContestID, 0, len(ids))
	for id := range ids {
		sorted = append(sorted, id)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	exp := map[ContestID]CheckpointContest{}
	for _, c := range want.Contests {
		exp[c.Contest] = c
	}
	for _, id := range sorted {
		g, w := got[id], exp[id]
		switch {
		case g.Reporting != w.Reporting:
			return diff("contest %s: precincts reporting: region %d, hub %d", id, g.Reporting, w.Reporting)
		case g.Complete != w.Complete:
			return diff("contest %s: precincts complete: region %d, hub %d", id, g.Complete, w.Complete)
		case g.BallotsCast != w.BallotsCast:
			return diff("contest %s: ballots cast: region %d, hub %d", id, g.BallotsCast, w.BallotsCast)
		}
		cands := map[CandidateID]bool{}
		for cand := range g.Votes {
			cands[cand] = true
		}
		for cand := range w.Votes {
			cands[cand] = true
		}
		cs := make([]CandidateID, 0, len(cands))
		for cand := range cands {
			cs = append(cs, cand)
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i] < cs[j] })
		for _, cand := range cs {
			if g.Votes[cand] != w.Votes[cand] {
				return diff("contest %s: candidate %s: region %d votes, hub %d", id, cand, g.Votes[cand], w.Votes[cand])
			}
		}
	}
	return nil
}

// The hub's audit trail: every change of a region's status and every
// checkpoint compared, kept in AuditStream for the certification report.
const (
	// AuditStream is the hub's stream of StatusEvent and CheckpointEvent
	// records, on AuditStatusSubject and AuditCheckpointSubject.
	AuditStream = "TALLY_AUDIT"
	// SnapshotBucket is the hub's object store holding the reconciler's
	// snapshot (SnapshotObject): its totals, chains and statuses, with the
	// last sequence applied from each mirror.
	SnapshotBucket = "TALLY_RECONCILER"
	SnapshotObject = "state"
)

// AuditSubjects is AuditStream's subject filter.
const AuditSubjects = "tally.audit.>"

// AuditStatusSubject is the subject of region r's status changes.
func AuditStatusSubject(r RegionID) string { return "tally.audit.status." + string(r) }

// AuditCheckpointSubject is the subject of region r's compared checkpoints.
func AuditCheckpointSubject(r RegionID) string { return "tally.audit.checkpoint." + string(r) }

// StatusEvent records a change of a region's status, as the hub saw it.
type StatusEvent struct {
	Region RegionID  `json:"region"`
	Status string    `json:"status"` // StatusLive, StatusLagging or StatusOffline
	Was    string    `json:"was"`
	At     time.Time `json:"at"`
	// Applied is the last region sequence applied to the national totals
	// at the change; LastSeq the last one in the mirror; Behind how many
	// events the hub knew to be missing (0 when it could not know).
	Applied uint64 `json:"applied"`
	LastSeq uint64 `json:"last_seq"`
	Behind  uint64 `json:"behind"`
}

// CheckpointEvent records one checkpoint compared by the hub.
type CheckpointEvent struct {
	Region RegionID `json:"region"`
	// StreamSeq is where the checkpoint is stored in the region's stream;
	// Seq, Events, Hash and At are the checkpoint's own.
	StreamSeq uint64    `json:"stream_seq"`
	Seq       uint64    `json:"seq"`
	Events    uint64    `json:"events"`
	Hash      string    `json:"hash"`
	At        time.Time `json:"at"`
	Matched   bool      `json:"matched"`
	// Mismatch is the first difference, when not Matched.
	Mismatch string `json:"mismatch,omitempty"`
	// Compared is when the hub compared it.
	Compared time.Time `json:"compared"`
}
