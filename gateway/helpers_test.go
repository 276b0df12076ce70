package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/gateway"
)

const waitFor = 10 * time.Second

func runJetStream(tb testing.TB) *nats.Conn {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		tb.Fatal("nats not ready")
	}
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close) // runs before the server shuts down (LIFO)
	return nc
}

// MustElection returns a small validated election: two regions, a
// presidential contest in each of two states and a governor's race.
func MustElection(tb testing.TB) *tally.Election {
	tb.Helper()
	e := &tally.Election{
		ID: "test-2024", Name: "Test General", Date: "2024-11-05", Test: true,
		Regions: []tally.Region{
			{ID: "r1", Name: "New Mexico 1", State: "NM", Counties: []string{"Bernalillo"}},
			{ID: "r2", Name: "New Mexico 2", State: "NM", Counties: []string{"Dona Ana"}},
			{ID: "r3", Name: "Arizona", State: "AZ", Counties: []string{"Pima"}},
		},
		Contests: []tally.Contest{
			{ID: "pres-nm", Name: "President (NM)", Office: "President", State: "NM", Candidates: []tally.Candidate{
				{ID: "alice", Name: "Alice Adams", Party: "Blue"}, {ID: "bob", Name: "Bob Brown", Party: "Red"}}},
			{ID: "gov-nm", Name: "Governor (NM)", Office: "Governor", State: "NM", Candidates: []tally.Candidate{
				{ID: "carol", Name: "Carol Cruz"}, {ID: "dan", Name: "Dan Diaz"}}},
			{ID: "pres-az", Name: "President (AZ)", Office: "President", State: "AZ", Candidates: []tally.Candidate{
				{ID: "alice", Name: "Alice Adams", Party: "Blue"}, {ID: "bob", Name: "Bob Brown", Party: "Red"}}},
		},
		Precincts: []tally.Precinct{
			{ID: "p1", Name: "Precinct 1", County: "Bernalillo", State: "NM", Region: "r1", Contests: []tally.ContestID{"pres-nm", "gov-nm"}},
			{ID: "p2", Name: "Precinct 2", County: "Dona Ana", State: "NM", Region: "r2", Contests: []tally.ContestID{"pres-nm", "gov-nm"}},
			{ID: "p3", Name: "Precinct 3", County: "Pima", State: "AZ", Region: "r3", Contests: []tally.ContestID{"pres-az"}},
		},
	}
	if err := e.Validate(); err != nil {
		tb.Fatal(err)
	}
	return e
}

// report returns a report of precinct p for contest c.
func report(e *tally.Election, id string, p tally.PrecinctID, c tally.ContestID, votes map[tally.CandidateID]int64) *tally.Report {
	return &tally.Report{
		ID: tally.EventID(string(e.Precinct(p).Region) + "-" + id), Region: e.Precinct(p).Region,
		Precinct: p, Contest: c, Votes: votes, Complete: true,
		ReportedAt: time.Date(2024, 11, 5, 21, 4, 0, 0, time.UTC),
	}
}

// MustBucket creates the national bucket.
func MustBucket(tb testing.TB, js jetstream.JetStream) jetstream.KeyValue {
	tb.Helper()
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: tally.NationalBucket})
	if err != nil {
		tb.Fatal(err)
	}
	return kv
}

// MustPublishState applies reps to totals t and puts every contest, every
// national view and the region statuses into kv, as the reconciler does.
func MustPublishState(tb testing.TB, kv jetstream.KeyValue, e *tally.Election, t *tally.Totals, statuses []tally.RegionStatus) {
	tb.Helper()
	byID := map[tally.RegionID]tally.RegionStatus{}
	for _, s := range statuses {
		byID[s.ID] = s
	}
	for _, c := range e.Contests {
		MustPut(tb, kv, tally.ContestKey(c.ID), t.ContestResult(c.ID, byID))
	}
	for _, o := range e.Offices() {
		var parts []tally.ContestResult
		for _, c := range e.OfficeContests(o) {
			parts = append(parts, t.ContestResult(c, byID))
		}
		MustPut(tb, kv, tally.ContestKey(tally.NationalContestID(o)), tally.NationalResult(o, parts))
	}
	MustPut(tb, kv, tally.KeyRegions, statuses)
}

// MustPut puts v as JSON under key and returns its revision.
func MustPut(tb testing.TB, kv jetstream.KeyValue, key string, v any) uint64 {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	rev, err := kv.Put(context.Background(), key, b)
	if err != nil {
		tb.Fatal(err)
	}
	return rev
}

func liveStatuses(e *tally.Election) []tally.RegionStatus {
	var out []tally.RegionStatus
	for _, r := range e.Regions {
		out = append(out, tally.RegionStatus{ID: r.ID, Name: r.Name, Status: tally.StatusLive,
			Since: time.Date(2024, 11, 5, 19, 0, 0, 0, time.UTC), Leaf: true})
	}
	return out
}

// MustOpenGateway opens a gateway on a random port and closes it at cleanup.
func MustOpenGateway(tb testing.TB, nc *nats.Conn, e *tally.Election, mod func(*gateway.Config)) *gateway.Gateway {
	tb.Helper()
	cfg := gateway.Config{Addr: "127.0.0.1:0", Election: e, Logger: zerolog.New(zerolog.NewTestWriter(tb))}
	if _, ok := tb.(*testing.B); ok {
		cfg.Logger = zerolog.Nop()
	}
	if mod != nil {
		mod(&cfg)
	}
	g, err := gateway.New(cfg, nc)
	if err != nil {
		tb.Fatal(err)
	}
	if err := g.Open(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := g.Close(); err != nil {
			tb.Errorf("Close() = %v", err)
		}
	})
	return g
}

// MustReady waits until /readyz answers 200.
func MustReady(tb testing.TB, base string) {
	tb.Helper()
	eventually(tb, "readyz 200", func() bool {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// get does a GET with optional headers (name, value pairs).
func get(tb testing.TB, url string, headers ...string) response {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

func mustJSON(tb testing.TB, b []byte, v any) {
	tb.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatalf("decode %s: %v", b, err)
	}
}

type sseEvent struct {
	id, name, data string
}

// sseStream is a connected event-stream reader.
type sseStream struct {
	events chan sseEvent
	retry  string
	res    *http.Response
}

// MustStream connects to the event stream; query is appended to the URL.
// The connection is closed at cleanup.
func MustStream(tb testing.TB, base, query string, headers ...string) *sseStream {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/stream"+query, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		cancel()
		tb.Fatalf("stream status = %d, want 200", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		tb.Errorf("stream Content-Type = %q", ct)
	}
	s := &sseStream{events: make(chan sseEvent, 1024), res: res}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(s.events)
		r := bufio.NewReader(res.Body)
		var ev sseEvent
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					select {
					case s.events <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	tb.Cleanup(func() {
		cancel()
		res.Body.Close()
		<-done
	})
	return s
}

// next returns the next event, failing after the deadline.
func (s *sseStream) next(tb testing.TB) sseEvent {
	tb.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			tb.Fatal("event stream ended")
		}
		return ev
	case <-time.After(waitFor):
		tb.Fatal("timed out waiting for an event")
	}
	return sseEvent{}
}

// nextWithID returns the next event whose id is id, skipping others.
func (s *sseStream) nextWithID(tb testing.TB, id string) sseEvent {
	tb.Helper()
	for {
		if ev := s.next(tb); ev.id == id {
			return ev
		}
	}
}

// env is a running hub stand-in and gateway: the national bucket as the
// reconciler publishes it, and region r1's mirror holding precinct p1's
// reports (pres-nm at seq 1, gov-nm at 2) and a correction (pres-nm at 3).
type env struct {
	e      *tally.Election
	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	t      *tally.Totals
	g      *gateway.Gateway
	base   string
	status []tally.RegionStatus
}

func MustEnv(tb testing.TB, mod func(*gateway.Config)) *env {
	tb.Helper()
	ctx := context.Background()
	nc := runJetStream(tb)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	e := MustElection(tb)
	v := &env{e: e, nc: nc, js: js, t: tally.NewTotals(e), status: liveStatuses(e)}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: tally.MirrorStream("r1"), Subjects: []string{tally.ResultsSubjects("r1")},
	}); err != nil {
		tb.Fatal(err)
	}
	first := report(e, "a1", "p1", "pres-nm", map[tally.CandidateID]int64{"alice": 120, "bob": 80})
	seq1 := MustPublishReport(tb, js, first, 0)
	v.t.Apply(seq1, first)
	gov := report(e, "a2", "p1", "gov-nm", map[tally.CandidateID]int64{"carol": 90, "dan": 100})
	v.t.Apply(MustPublishReport(tb, js, gov, 0), gov)
	corr := report(e, "a3", "p1", "pres-nm", map[tally.CandidateID]int64{"alice": 112, "bob": 80})
	corr.Correction = &tally.Correction{Supersedes: first.ID, SupersedesSeq: seq1, Reason: "transposed digits"}
	v.t.Apply(MustPublishReport(tb, js, corr, seq1), corr)
	az := report(e, "a1", "p3", "pres-az", map[tally.CandidateID]int64{"alice": 50, "bob": 70})
	v.t.Apply(1, az)

	v.kv = MustBucket(tb, js)
	MustPublishState(tb, v.kv, e, v.t, v.status)
	v.g = MustOpenGateway(tb, nc, e, mod)
	v.base = "http://" + v.g.Addr()
	MustReady(tb, v.base)
	return v
}

// MustPublishReport publishes rep to its subject (guarded by the expected
// last subject sequence when expect > 0) and returns its stream sequence.
func MustPublishReport(tb testing.TB, js jetstream.JetStream, rep *tally.Report, expect uint64) uint64 {
	tb.Helper()
	b, err := rep.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(string(rep.ID))}
	if expect > 0 {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(expect))
	}
	ack, err := js.Publish(context.Background(), tally.ResultsSubject(rep.Region, rep.Precinct, rep.Contest), b, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return ack.Sequence
}

func jsonDecode(res *http.Response, v any) error {
	return json.NewDecoder(res.Body).Decode(v)
}
