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
		n, err := regional.New(regional.Config{
			Region:   r.ID,
			Election: e,
			NATS: regional.NATSConfig{StoreDir: filepath.Join(dir, string(r.ID)), HubURL: f.rec.LeafURL(),
				HubUser: leafUser, HubPassword: leafPassword},
			HTTP:   regional.HTTPConfig{Addr: "127.0.0.1:0"},
			Logger: l,
		})
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
		f.regions[r.ID] = n
	}
	return f
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
