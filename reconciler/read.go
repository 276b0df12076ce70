package reconciler

// Reading for certification: what tally export, verify and report work on is
// every message stored in a stream — a region's RESULTS stream, the hub's
// mirrors of them, its audit stream and the projector's calls — and the
// hub's national state. These functions only read: verifying and reporting
// are package tally's, from the messages alone.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// ErrNoStream is returned (wrapped) by ReadStream when the stream does not
// exist.
var ErrNoStream = errors.New("no such stream")

// idleTimeout bounds the wait for the next message of a stream being read.
const idleTimeout = 10 * time.Second

// ReadStream reads every message stored in stream, in sequence order, up
// to the last one stored when it is called, as StoredEvents of region (""
// for the hub's own streams). It also returns what it read: the stream's
// message count and first and last sequence. Deleted messages are simply
// not there: finding the gaps is Verify's job.
func ReadStream(ctx context.Context, js jetstream.JetStream, stream string, region tally.RegionID) ([]tally.StoredEvent, tally.LogStream, error) {
	ls := tally.LogStream{Region: region, Stream: stream}
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, ls, fmt.Errorf("stream %s: %w", stream, ErrNoStream)
	}
	if err != nil {
		return nil, ls, fmt.Errorf("stream %s: %w", stream, err)
	}
	st := s.CachedInfo().State
	ls.LastSeq = st.LastSeq
	if st.Msgs == 0 {
		return nil, ls, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, ls, fmt.Errorf("consumer on %s: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return nil, ls, fmt.Errorf("read %s: %w", stream, err)
	}
	defer it.Stop()
	out := make([]tally.StoredEvent, 0, st.Msgs)
	for {
		if err := ctx.Err(); err != nil {
			return nil, ls, err
		}
		msg, err := it.Next(jetstream.NextMaxWait(idleTimeout))
		if err != nil {
			return nil, ls, fmt.Errorf("read %s after %d of %d messages: %w", stream, len(out), st.Msgs, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return nil, ls, fmt.Errorf("read %s: metadata: %w", stream, err)
		}
		seq := md.Sequence.Stream
		if seq > st.LastSeq {
			break // stored after the read began
		}
		out = append(out, tally.StoredEvent{
			Region: region, Stream: stream, Seq: seq, Subject: msg.Subject(),
			Stored: md.Timestamp.UTC(), Data: append([]byte(nil), msg.Data()...),
		})
		if seq == st.LastSeq || md.NumPending == 0 {
			break
		}
	}
	ls.Messages = uint64(len(out))
	if len(out) > 0 {
		ls.FirstSeq = out[0].Seq
	}
	return out, ls, nil
}

// Stored is what ReadHub reads from a hub.
type Stored struct {
	Events  []tally.StoredEvent // every region's mirror, region by region
	Audit   []tally.StoredEvent // tally.AuditStream
	Calls   []tally.StoredEvent // tally.CallsStream
	Streams []tally.LogStream   // each stream read, mirrors first
	// LastSeq is each region's last sequence in its mirror.
	LastSeq map[tally.RegionID]uint64
}

// ReadHub reads, from a hub's JetStream, the mirror of every region of e
// (MirrorStream), its audit stream and its calls stream. A region without a
// mirror yet has no events; a hub without audit or calls stream has none.
// With only set, it reads that region's mirror alone.
func ReadHub(ctx context.Context, js jetstream.JetStream, e *tally.Election, only tally.RegionID) (*Stored, error) {
	h := &Stored{LastSeq: map[tally.RegionID]uint64{}}
	for _, r := range e.Regions {
		if only != "" && r.ID != only {
			continue
		}
		evs, ls, err := ReadStream(ctx, js, tally.MirrorStream(r.ID), r.ID)
		if errors.Is(err, ErrNoStream) {
			continue
		}
		if err != nil {
			return nil, err
		}
		h.Events = append(h.Events, evs...)
		h.Streams = append(h.Streams, ls)
		h.LastSeq[r.ID] = ls.LastSeq
	}
	if only != "" {
		return h, nil
	}
	for _, s := range []struct {
		name string
		dst  *[]tally.StoredEvent
	}{{tally.AuditStream, &h.Audit}, {tally.CallsStream, &h.Calls}} {
		evs, ls, err := ReadStream(ctx, js, s.name, "")
		if errors.Is(err, ErrNoStream) {
			continue
		}
		if err != nil {
			return nil, err
		}
		*s.dst = evs
		h.Streams = append(h.Streams, ls)
	}
	return h, nil
}

// NationalState reads the hub's national state (tally.NationalBucket): the
// result of each contest of e and each office's national view, by id, and
// the region statuses. A contest without a key is left out.
func NationalState(ctx context.Context, js jetstream.JetStream, e *tally.Election) (map[tally.ContestID]tally.ContestResult, []tally.RegionStatus, error) {
	kv, err := js.KeyValue(ctx, tally.NationalBucket)
	if err != nil {
		return nil, nil, fmt.Errorf("bucket %s: %w", tally.NationalBucket, err)
	}
	ids := make([]tally.ContestID, 0, len(e.Contests))
	for _, c := range e.Contests {
		ids = append(ids, c.ID)
	}
	for _, o := range e.Offices() {
		ids = append(ids, tally.NationalContestID(o))
	}
	results := map[tally.ContestID]tally.ContestResult{}
	for _, id := range ids {
		ent, err := kv.Get(ctx, tally.ContestKey(id))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("bucket %s: %s: %w", tally.NationalBucket, tally.ContestKey(id), err)
		}
		var res tally.ContestResult
		if err := json.Unmarshal(ent.Value(), &res); err != nil {
			return nil, nil, fmt.Errorf("bucket %s: %s: %w", tally.NationalBucket, tally.ContestKey(id), err)
		}
		results[id] = res
	}
	var statuses []tally.RegionStatus
	ent, err := kv.Get(ctx, tally.KeyRegions)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, nil, fmt.Errorf("bucket %s: %s: %w", tally.NationalBucket, tally.KeyRegions, err)
	default:
		if err := json.Unmarshal(ent.Value(), &statuses); err != nil {
			return nil, nil, fmt.Errorf("bucket %s: %s: %w", tally.NationalBucket, tally.KeyRegions, err)
		}
	}
	return results, statuses, nil
}
