package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/gateway"
	"github.com/tallyvote/tally/reconciler"
	"github.com/tallyvote/tally/regional"
)

// federation is a hub with its gateway and one region node per region, all
// embedded in the test process and linked by leaf nodes.
type federation struct {
	e       *tally.Election
	rec     *reconciler.Reconciler
	gw      *gateway.Gateway
	nc      *nats.Conn
	regions map[tally.RegionID]*regional.Node
	api     string // gateway base URL
}

// federationPassword is the password of the hub's client user "hub" in a
// federation, for the clients a test adds (gateway replicas).
const federationPassword = "federation-test"

// MustRunFederation starts a federation for e and closes it at test end.
func MustRunFederation(tb testing.TB, e *tally.Election, logs bool) *federation {
	tb.Helper()
	l := zerolog.Nop()
	if logs {
		if t, ok := tb.(*testing.T); ok {
			l = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
		}
	}
	dir := tb.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := &federation{e: e, regions: map[tally.RegionID]*regional.Node{}}
	var err error
	f.rec, f.gw, f.nc, err = openHub(ctx, e, reconciler.Config{
		Election: e,
		NATS: reconciler.NATSConfig{StoreDir: filepath.Join(dir, "hub"),
			ClientUser: "hub", ClientPassword: federationPassword},
		Logger: l,
	}, gateway.Config{Addr: "127.0.0.1:0"}, l)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := closeHub(f.rec, f.gw, f.nc); err != nil {
			tb.Error(err)
		}
	})
	f.api = "http://" + f.gw.Addr()
	leafUser, leafPassword := f.rec.LeafCredentials()
	for _, r := range e.Regions {
		f.regions[r.ID] = MustOpenRegion(tb, ctx, regional.Config{
			Region:   r.ID,
			Election: e,
			NATS: regional.NATSConfig{StoreDir: filepath.Join(dir, string(r.ID)), HubURL: f.rec.LeafURL(),
				HubUser: leafUser, HubPassword: leafPassword},
			HTTP:   regional.HTTPConfig{Addr: "127.0.0.1:0"},
			Logger: l,
		})
	}
	return f
}

// MustOpenRegion opens a region node with cfg; it is closed at test end.
func MustOpenRegion(tb testing.TB, ctx context.Context, cfg regional.Config) *regional.Node {
	tb.Helper()
	n, err := regional.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := n.Open(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Error(err)
		}
	})
	return n
}

// intake returns region r's intake base URL.
func (f *federation) intake(r tally.RegionID) string { return "http://" + f.regions[r].HTTPAddr() }

// post sends body to url and returns the status and the decoded JSON answer.
func post(tb testing.TB, url string, body []byte) (int, map[string]any) {
	tb.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatalf("POST %s: %s: answer is not a JSON object: %q", url, resp.Status, b)
	}
	return resp.StatusCode, v
}

// getJSON fetches url into v and returns the status.
func getJSON(tb testing.TB, url string, v any) int {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			tb.Fatalf("GET %s: %v: %q", url, err, b)
		}
	}
	return resp.StatusCode
}

// waitFor polls cond until it returns "" or the deadline passes, then fails
// with cond's last complaint.
func waitFor(tb testing.TB, d time.Duration, cond func() string) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %s", d, msg)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

// expectedTotals sums counts per contest and candidate, and per office for
// the national views.
func expectedTotals(e *tally.Election, counts tally.Counts) map[tally.ContestID]map[tally.CandidateID]int64 {
	want := map[tally.ContestID]map[tally.CandidateID]int64{}
	add := func(c tally.ContestID, cand tally.CandidateID, n int64) {
		if want[c] == nil {
			want[c] = map[tally.CandidateID]int64{}
		}
		want[c][cand] += n
	}
	for _, con := range e.Contests {
		for _, cand := range con.Candidates {
			add(con.ID, cand.ID, 0)
			add(tally.NationalContestID(con.Office), cand.ID, 0)
		}
	}
	for _, byContest := range counts {
		for c, byCand := range byContest {
			for cand, n := range byCand {
				add(c, cand, n)
				add(tally.NationalContestID(e.Contest(c).Office), cand, n)
			}
		}
	}
	return want
}

// checkTotals compares the gateway's contests with want; "" when equal and
// every precinct has reported.
func checkTotals(tb testing.TB, api string, want map[tally.ContestID]map[tally.CandidateID]int64, allReporting bool) string {
	tb.Helper()
	for c, wantVotes := range want {
		var res tally.ContestResult
		if st := getJSON(tb, api+"/api/v1/contests/"+string(c), &res); st != http.StatusOK {
			return fmt.Sprintf("GET contest %s: status %d", c, st)
		}
		got := map[tally.CandidateID]int64{}
		for _, cr := range res.Candidates {
			got[cr.ID] = cr.Votes
		}
		for cand, n := range wantVotes {
			if got[cand] != n {
				return fmt.Sprintf("contest %s: %s has %d votes, want %d (precincts %d/%d reporting)", c, cand, got[cand], n, res.Precincts.Reporting, res.Precincts.Total)
			}
		}
		if len(got) != len(wantVotes) {
			return fmt.Sprintf("contest %s: candidates %v, want %v", c, got, wantVotes)
		}
		if allReporting && (res.Precincts.Reporting != res.Precincts.Total || res.Precincts.Complete != res.Precincts.Total) {
			return fmt.Sprintf("contest %s: %d/%d reporting, %d complete", c, res.Precincts.Reporting, res.Precincts.Total, res.Precincts.Complete)
		}
	}
	return ""
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// MustBuildTally builds the tally binary once per test process and returns
// its path.
func MustBuildTally(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tally-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "tally")
		out, err := exec.Command("go", "build", "-o", buildPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return buildPath
}

// TestMain removes the binary MustBuildTally built.
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if buildPath != "" {
		os.RemoveAll(filepath.Dir(buildPath))
	}
	os.Exit(code)
}

// ack is where the intake said it stored a report.
type ack struct {
	region tally.RegionID
	seq    uint64
}

// checkAgainstStreams checks a hub's API at api against the regions'
// streams alone: no report stored twice; every acknowledged report (acked)
// in its region's stream at the sequence it was given, and as many as the
// replay counted (replayed); each contest's national totals and precinct
// counts equal to those recomputed from the streams, complete and
// reconciled; and the results file's sums (counts).
func checkAgainstStreams(t *testing.T, e *tally.Election, counts tally.Counts, api string,
	streams map[tally.RegionID][]*jetstream.RawStreamMsg, acked map[tally.EventID]ack, replayed int64) {
	t.Helper()
	ref := tally.NewTotals(e)
	for _, r := range e.Regions {
		byID := map[tally.EventID]uint64{}
		for _, m := range streams[r.ID] {
			if _, _, _, ok := tally.ParseResultsSubject(m.Subject); !ok {
				continue
			}
			rep, err := tally.DecodeReport(m.Data)
			if err != nil {
				t.Fatalf("region %s seq %d: %v", r.ID, m.Sequence, err)
			}
			ref.Apply(m.Sequence, rep)
			if _, dup := byID[rep.ID]; dup {
				t.Errorf("region %s: report %s stored twice", r.ID, rep.ID)
			}
			byID[rep.ID] = m.Sequence
		}
		for id, a := range acked {
			if seq, ok := byID[id]; a.region == r.ID && (!ok || seq != a.seq) {
				t.Errorf("region %s: acknowledged report %s at seq %d, stream has it at %d (found %v)", r.ID, id, a.seq, seq, ok)
			}
		}
	}
	if int64(len(acked)) != replayed {
		t.Errorf("%d reports acknowledged, replay counted %d", len(acked), replayed)
	}
	for _, c := range e.Contests {
		var got tally.ContestResult
		if st := getJSONQuiet(api+"/api/v1/contests/"+string(c.ID), &got); st != http.StatusOK {
			t.Fatalf("GET contest %s: %d", c.ID, st)
		}
		want := ref.ContestResult(c.ID, nil)
		if fmt.Sprint(votesOf(got)) != fmt.Sprint(votesOf(want)) || got.Precincts != want.Precincts {
			t.Errorf("contest %s: hub %v %+v, streams %v %+v", c.ID, votesOf(got), got.Precincts, votesOf(want), want.Precincts)
		}
		if !got.Complete || !got.Reconciled {
			t.Errorf("contest %s: complete %v, reconciled %v", c.ID, got.Complete, got.Reconciled)
		}
	}
	// The file's sums too: the replay ends with every precinct's true count.
	if msg := checkTotals(t, api, expectedTotals(e, counts), true); msg != "" {
		t.Error(msg)
	}
}
