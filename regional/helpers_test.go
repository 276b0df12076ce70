package regional_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/regional"
)

// testElection has two regions: north (n1: pres+gov, n2: pres) and south
// (s1: pres+gov, s2: gov).
func testElection(tb testing.TB) *tally.Election {
	tb.Helper()
	e := &tally.Election{
		ID: "test-2024", Name: "Test election", Date: "2024-11-05", Test: true,
		Regions: []tally.Region{{ID: "north", Name: "North"}, {ID: "south", Name: "South"}},
		Contests: []tally.Contest{
			{ID: "pres", Name: "President", Office: "President", Candidates: []tally.Candidate{
				{ID: "biden", Name: "Biden"}, {ID: "trump", Name: "Trump"}}},
			{ID: "gov", Name: "Governor", Office: "Governor", Candidates: []tally.Candidate{
				{ID: "alice", Name: "Alice"}, {ID: "bob", Name: "Bob"}}},
		},
		Precincts: []tally.Precinct{
			{ID: "n1", Name: "North 1", County: "A", Region: "north", Registered: 1000, Contests: []tally.ContestID{"pres", "gov"}},
			{ID: "n2", Name: "North 2", County: "A", Region: "north", Contests: []tally.ContestID{"pres"}},
			{ID: "s1", Name: "South 1", County: "B", Region: "south", Contests: []tally.ContestID{"pres", "gov"}},
			{ID: "s2", Name: "South 2", County: "B", Region: "south", Contests: []tally.ContestID{"gov"}},
		},
	}
	if err := e.Validate(); err != nil {
		tb.Fatal(err)
	}
	return e
}

// MustOpenNode opens a standalone node of region north with an embedded
// server; edit adjusts the config first.
func MustOpenNode(tb testing.TB, edit func(*regional.Config)) *regional.Node {
	tb.Helper()
	cfg := regional.Config{
		Region:   "north",
		Election: testElection(tb),
		NATS:     regional.NATSConfig{StoreDir: tb.TempDir()},
		HTTP:     regional.HTTPConfig{Addr: "127.0.0.1:0"},
		Logger:   zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.InfoLevel),
	}
	if edit != nil {
		edit(&cfg)
	}
	n, err := regional.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
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

// MustStream returns the node's RESULTS stream, through a client
// connection of the test's own.
func MustStream(tb testing.TB, n *regional.Node) jetstream.Stream {
	tb.Helper()
	nc, err := n.Connect()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.NewWithDomain(nc, "north")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, tally.ResultsStream)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// msgCount returns the number of messages in the stream.
func msgCount(tb testing.TB, s jetstream.Stream) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.Msgs
}

// response is a decoded HTTP response.
type response struct {
	Status int
	Body   []byte
}

// errorCode and errorMessage decode an error response.
func (r response) errorBody(tb testing.TB) (code, msg string) {
	tb.Helper()
	var v struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil || v.Error.Code == "" {
		tb.Fatalf("error body %q: not {\"error\":{...}} (%v)", r.Body, err)
	}
	return v.Error.Code, v.Error.Message
}

func (r response) results(tb testing.TB) []regional.SubmitResult {
	tb.Helper()
	if r.Status != http.StatusOK {
		tb.Fatalf("status = %d, want 200; body %s", r.Status, r.Body)
	}
	var v regional.SubmitResponse
	if err := json.Unmarshal(r.Body, &v); err != nil {
		tb.Fatalf("decode %q: %v", r.Body, err)
	}
	return v.Results
}

func do(tb testing.TB, method, url, contentType string, body []byte) response {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
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
	if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK && len(b) > 0 && ct != "application/json" && ct != "application/json; charset=UTF-8" {
		tb.Errorf("%s %s: content type %q, want JSON", method, url, ct)
	}
	return response{Status: res.StatusCode, Body: b}
}

func post(tb testing.TB, n *regional.Node, path string, body string) response {
	tb.Helper()
	return do(tb, http.MethodPost, "http://"+n.HTTPAddr()+path, "application/json", []byte(body))
}

func get(tb testing.TB, n *regional.Node, path string) response {
	tb.Helper()
	return do(tb, http.MethodGet, "http://"+n.HTTPAddr()+path, "", nil)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
