package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
)

// testElection has three regions, five precincts and one office (President)
// in two states: pres-a (r1, r2) and pres-b (r2, r3).
func testElection(tb testing.TB) *tally.Election {
	tb.Helper()
	cands := []tally.Candidate{{ID: "dem", Name: "Dee", Party: "D"}, {ID: "rep", Name: "Arr", Party: "R"}}
	e := &tally.Election{
		ID: "test", Name: "Test election", Date: "2024-11-05", Test: true,
		Regions: []tally.Region{{ID: "r1", Name: "Region 1"}, {ID: "r2", Name: "Region 2"}, {ID: "r3", Name: "Region 3"}},
		Contests: []tally.Contest{
			{ID: "pres-a", Name: "President, A", Office: "President", State: "A", Candidates: cands},
			{ID: "pres-b", Name: "President, B", Office: "President", State: "B", Candidates: cands},
		},
		Precincts: []tally.Precinct{
			{ID: "p1", Name: "P1", County: "c1", State: "A", Region: "r1", Contests: []tally.ContestID{"pres-a"}},
			{ID: "p2", Name: "P2", County: "c1", State: "A", Region: "r1", Contests: []tally.ContestID{"pres-a"}},
			{ID: "p3", Name: "P3", County: "c2", State: "A", Region: "r2", Contests: []tally.ContestID{"pres-a"}},
			{ID: "p4", Name: "P4", County: "c3", State: "B", Region: "r2", Contests: []tally.ContestID{"pres-b"}},
			{ID: "p5", Name: "P5", County: "c4", State: "B", Region: "r3", Contests: []tally.ContestID{"pres-b"}},
		},
	}
	if err := e.Validate(); err != nil {
		tb.Fatal(err)
	}
	return e
}

// testConfig is a hub configuration with short intervals.
func testConfig(tb testing.TB, e *tally.Election) Config {
	return Config{
		Election:        e,
		NATS:            NATSConfig{StoreDir: tb.TempDir()},
		PublishInterval: 20 * time.Millisecond,
		HealthInterval:  100 * time.Millisecond,
		OfflineAfter:    MinOfflineAfter,
		Logger:          zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.InfoLevel).With().Timestamp().Logger(),
	}
}

// MustOpenReconciler opens a hub with cfg and closes it at cleanup.
func MustOpenReconciler(tb testing.TB, cfg Config) *Reconciler {
	tb.Helper()
	r, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := r.Open(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := r.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return r
}

// region is a plain region server: JetStream domain <id>, a RESULTS stream,
// and (optionally) a leaf link to the hub.
type region struct {
	id   tally.RegionID
	name string // server name; "region-<id>" when empty
	dir  string
	ns   *server.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	n    atomic.Int64 // for unique event ids
	tb   testing.TB
	down bool
	// reconnect is the leaf link's reconnect interval; 100ms when zero.
	reconnect time.Duration
}

// MustStartRegion starts region id on a fresh store, linked to leafURL.
func MustStartRegion(tb testing.TB, id tally.RegionID, leafURL string) *region {
	tb.Helper()
	g := &region{id: id, dir: tb.TempDir(), tb: tb}
	g.start(leafURL)
	tb.Cleanup(g.stop)
	return g
}

// start starts the region's server on its store; leafURL "" leaves it cut
// off from the hub.
func (g *region) start(leafURL string) {
	tb := g.tb
	tb.Helper()
	name := g.name
	if name == "" {
		name = "region-" + string(g.id)
	}
	opts := &server.Options{
		ServerName:      name,
		Host:            "127.0.0.1",
		Port:            -1,
		JetStream:       true,
		JetStreamDomain: string(g.id),
		StoreDir:        g.dir,
		NoLog:           true,
		NoSigs:          true,
	}
	if leafURL != "" {
		u, err := url.Parse(leafURL)
		if err != nil {
			tb.Fatal(err)
		}
		opts.LeafNode.Remotes = []*server.RemoteLeafOpts{{URLs: []*url.URL{u}}}
		opts.LeafNode.ReconnectInterval = 100 * time.Millisecond
		if g.reconnect > 0 {
			opts.LeafNode.ReconnectInterval = g.reconnect
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("region server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: tally.ResultsStream,
		// The checkpoint subject, as a region node's stream has it.
		Subjects: []string{tally.ResultsSubjects(g.id), tally.CheckpointSubject(g.id)},
		Storage:  jetstream.FileStorage,
	}); err != nil {
		tb.Fatal(err)
	}
	g.ns, g.nc, g.js, g.down = ns, nc, js, false
}

// stop shuts the region's server down; its store stays.
func (g *region) stop() {
	if g.down {
		return
	}
	g.nc.Close()
	g.ns.Shutdown()
	g.ns.WaitForShutdown()
	g.down = true
}

// report builds a valid report of the region for precinct p.
func (g *region) report(p tally.PrecinctID, c tally.ContestID, dem, rep int64, complete bool) *tally.Report {
	return &tally.Report{
		ID:       tally.EventID(fmt.Sprintf("%s-%d-%d", g.id, time.Now().UnixNano(), g.n.Add(1))),
		Region:   g.id,
		Precinct: p, Contest: c,
		Votes:      map[tally.CandidateID]int64{"dem": dem, "rep": rep},
		Complete:   complete,
		ReportedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
}

// publish stores rep in the region's stream and returns its sequence. A
// correction is guarded by the superseded report's sequence, as intake does.
func (g *region) publish(rep *tally.Report) uint64 {
	g.tb.Helper()
	b, err := rep.Encode()
	if err != nil {
		g.tb.Fatal(err)
	}
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(string(rep.ID))}
	if rep.Correction != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(rep.Correction.SupersedesSeq))
	}
	return g.publishRaw(tally.ResultsSubject(rep.Region, rep.Precinct, rep.Contest), string(rep.ID), b, opts...)
}

// publishRaw stores data under subject, with msgID as Nats-Msg-Id.
func (g *region) publishRaw(subject, msgID string, data []byte, opts ...jetstream.PublishOpt) uint64 {
	g.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if len(opts) == 0 {
		opts = []jetstream.PublishOpt{jetstream.WithMsgID(msgID)}
	}
	ack, err := g.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data}, opts...)
	if err != nil {
		g.tb.Fatalf("publish %s: %v", subject, err)
	}
	return ack.Sequence
}

// model is what the totals must be: the latest report per precinct and
// contest, corrections counted.
type model struct {
	e           *tally.Election
	latest      map[tally.PrecinctID]map[tally.ContestID]*tally.Report
	corrections map[tally.ContestID]int
}

func newModel(e *tally.Election) *model {
	return &model{e: e, latest: map[tally.PrecinctID]map[tally.ContestID]*tally.Report{}, corrections: map[tally.ContestID]int{}}
}

func (m *model) add(rep *tally.Report) {
	if m.latest[rep.Precinct] == nil {
		m.latest[rep.Precinct] = map[tally.ContestID]*tally.Report{}
	}
	m.latest[rep.Precinct][rep.Contest] = rep
	if rep.Correction != nil {
		m.corrections[rep.Contest]++
	}
}

// check compares res, the result of a state contest or a national view, with
// the model.
func (m *model) check(res tally.ContestResult) error {
	contests := []tally.ContestID{res.ID}
	if res.Scope == "national" {
		contests = m.e.OfficeContests(res.Office)
	}
	votes := map[tally.CandidateID]int64{}
	regionVotes := map[tally.RegionID]map[tally.CandidateID]int64{}
	var reporting, complete, corrections, total int
	for _, c := range contests {
		corrections += m.corrections[c]
		for _, p := range m.e.ContestPrecincts(c) {
			total++
			rep := m.latest[p][c]
			if rep == nil {
				continue
			}
			reporting++
			if rep.Complete {
				complete++
			}
			if regionVotes[rep.Region] == nil {
				regionVotes[rep.Region] = map[tally.CandidateID]int64{}
			}
			for cand, n := range rep.Votes {
				votes[cand] += n
				regionVotes[rep.Region][cand] += n
			}
		}
	}
	var sum int64
	for _, cr := range res.Candidates {
		if cr.Votes != votes[cr.ID] {
			return fmt.Errorf("%s: votes[%s] = %d, want %d", res.ID, cr.ID, cr.Votes, votes[cr.ID])
		}
		sum += cr.Votes
	}
	if res.TotalVotes != sum {
		return fmt.Errorf("%s: total_votes = %d, want %d", res.ID, res.TotalVotes, sum)
	}
	want := tally.PrecinctCount{Total: total, Reporting: reporting, Complete: complete}
	if res.Precincts != want {
		return fmt.Errorf("%s: precincts = %+v, want %+v", res.ID, res.Precincts, want)
	}
	if res.Corrections != corrections {
		return fmt.Errorf("%s: corrections = %d, want %d", res.ID, res.Corrections, corrections)
	}
	for _, rr := range res.Regions {
		for _, cand := range []tally.CandidateID{"dem", "rep"} {
			if rr.Votes[cand] != regionVotes[rr.ID][cand] && res.Scope != "national" {
				return fmt.Errorf("%s: region %s votes[%s] = %d, want %d", res.ID, rr.ID, cand, rr.Votes[cand], regionVotes[rr.ID][cand])
			}
		}
	}
	return nil
}

// gateway reads the national bucket the way a gateway does.
type gateway struct {
	kv jetstream.KeyValue
}

func MustConnectGateway(tb testing.TB, r *Reconciler) *gateway {
	tb.Helper()
	nc, err := nats.Connect(r.ClientURL(), r.ClientOptions()...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, tally.NationalBucket)
	if err != nil {
		tb.Fatal(err)
	}
	return &gateway{kv: kv}
}

func (g *gateway) get(key string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := g.kv.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	return json.Unmarshal(e.Value(), v)
}

func (g *gateway) contest(c tally.ContestID) (tally.ContestResult, error) {
	var res tally.ContestResult
	err := g.get(tally.ContestKey(c), &res)
	return res, err
}

func (g *gateway) regions() ([]tally.RegionStatus, error) {
	var sts []tally.RegionStatus
	err := g.get(tally.KeyRegions, &sts)
	return sts, err
}

// waitFor polls cond until it returns nil or timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		<-tick.C
	}
}

// checkAll compares every contest and national view, in memory and in the
// bucket, with the model.
func checkAll(r *Reconciler, gw *gateway, m *model) error {
	ids := []tally.ContestID{}
	for _, c := range m.e.Contests {
		ids = append(ids, c.ID)
	}
	for _, o := range m.e.Offices() {
		ids = append(ids, tally.NationalContestID(o))
	}
	for _, id := range ids {
		res, ok := r.Result(id)
		if !ok {
			return fmt.Errorf("Result(%s) not found", id)
		}
		if err := m.check(res); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		kres, err := gw.contest(id)
		if err != nil {
			return err
		}
		if err := m.check(kres); err != nil {
			return fmt.Errorf("bucket: %w", err)
		}
	}
	return nil
}

// statusOf returns region id's status in sts.
func statusOf(sts []tally.RegionStatus, id tally.RegionID) tally.RegionStatus {
	for _, st := range sts {
		if st.ID == id {
			return st
		}
	}
	return tally.RegionStatus{}
}

// waitStatus waits until the hub, in memory and in the bucket, has region id
// in status want.
func waitStatus(tb testing.TB, r *Reconciler, gw *gateway, id tally.RegionID, want string, timeout time.Duration) {
	tb.Helper()
	waitFor(tb, timeout, fmt.Sprintf("region %s %s", id, want), func() error {
		if got := statusOf(r.Statuses(), id); got.Status != want {
			return fmt.Errorf("memory: status %q (%+v)", got.Status, got)
		}
		sts, err := gw.regions()
		if err != nil {
			return err
		}
		if got := statusOf(sts, id); got.Status != want {
			return fmt.Errorf("bucket: status %q", got.Status)
		}
		return nil
	})
}

// leafURL returns the hub's leaf URL with its leaf credentials, as a region
// dials it.
func leafURL(r *Reconciler) string {
	u, err := url.Parse(r.LeafURL())
	if err != nil {
		panic(err)
	}
	u.User = url.UserPassword(r.LeafCredentials())
	return u.String()
}

// stored is one message of a region's stream.
type stored struct {
	seq     uint64
	subject string
	data    []byte
}

// messages returns every message of the region's RESULTS stream, in order.
func (g *region) messages() []stored {
	g.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := g.js.OrderedConsumer(ctx, tally.ResultsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		g.tb.Fatal(err)
	}
	s, err := g.js.Stream(ctx, tally.ResultsStream)
	if err != nil {
		g.tb.Fatal(err)
	}
	last := s.CachedInfo().State.LastSeq
	var out []stored
	for len(out) == 0 || out[len(out)-1].seq < last {
		if last == 0 {
			break
		}
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			g.tb.Fatal(err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				g.tb.Fatal(err)
			}
			out = append(out, stored{md.Sequence.Stream, m.Subject(), m.Data()})
		}
		if err := batch.Error(); err != nil {
			g.tb.Fatal(err)
		}
	}
	return out
}

// recompute applies the region's stream, as the region itself would, to t
// and returns the region's chain and last sequence.
func (g *region) recompute(e *tally.Election, t *tally.Totals) (tally.Chain, uint64) {
	c := tally.NewChain(g.id)
	var last uint64
	for _, m := range g.messages() {
		last = m.seq
		sreg, p, con, ok := tally.ParseResultsSubject(m.subject)
		if !ok {
			t.Advance(g.id, m.seq)
			continue
		}
		c.Add(m.seq, m.subject, m.data)
		rep, err := decodeEvent(e, g.id, sreg, p, con, m.data)
		if err != nil {
			t.Advance(g.id, m.seq)
			continue
		}
		t.Apply(m.seq, rep)
	}
	return c, last
}

// checkpoint stores the region's checkpoint of its stream as it stands,
// after edit (if not nil) has had its way with it, at the sequence after the
// last one, as a region node does. It returns the checkpoint's sequence.
func (g *region) checkpoint(e *tally.Election, edit func(*tally.Checkpoint)) uint64 {
	g.tb.Helper()
	t := tally.NewTotals(e)
	c, last := g.recompute(e, t)
	cp := t.Checkpoint(g.id, last, c, time.Now())
	if edit != nil {
		edit(&cp)
	}
	return g.publishRaw(tally.CheckpointSubject(g.id), "", cp.Encode(),
		jetstream.WithMsgID(tally.CheckpointMsgID(last)), jetstream.WithExpectLastSequence(last))
}

// auditRecord is one message of the hub's audit stream.
type auditRecord struct {
	subject string
	status  tally.StatusEvent
	cp      tally.CheckpointEvent
}

// auditRecords reads the hub's whole audit stream.
func auditRecords(tb testing.TB, r *Reconciler) []auditRecord {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := r.js.Stream(ctx, tally.AuditStream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var out []auditRecord
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			tb.Fatal(err)
		}
		rec := auditRecord{subject: m.Subject}
		v := any(&rec.status)
		if _, ok := auditCheckpointRegion(m.Subject); ok {
			v = &rec.cp
		}
		if err := json.Unmarshal(m.Data, v); err != nil {
			tb.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}
