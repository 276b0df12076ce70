package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// syncBuffer is a bytes.Buffer safe for the demo's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// MustRunDemo runs `tally demo` with args in the test process, waits for its
// replay to finish and returns it; it is closed at test end.
func MustRunDemo(t *testing.T, args ...string) *Demo {
	t.Helper()
	var out syncBuffer
	d := NewDemo(&out, nil)
	if err := d.ParseFlags(append([]string{"--http", "127.0.0.1:0", "--speed", "max", "--data", t.TempDir()}, args...), func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	select {
	case <-d.ReplayDone():
	case <-time.After(5 * time.Minute):
		t.Fatalf("replay did not finish; output:\n%s", out.String())
	}
	st, err := d.ReplayResult()
	if err != nil {
		t.Fatalf("replay: %v; output:\n%s", err, out.String())
	}
	if st.Corrections == 0 {
		t.Errorf("replay sent no corrections: %+v", st)
	}
	t.Logf("replay: %d reports, %d corrections in %s", st.Reports, st.Corrections, st.Elapsed)
	return d
}

// checkDemoTotals waits until every contest (and national view) shows every
// precinct reporting and complete, with candidate totals exactly the sums of
// the results file.
func checkDemoTotals(t *testing.T, d *Demo) {
	t.Helper()
	want := expectedTotals(d.election.Election, d.election.Counts)
	api := "http://" + d.gw.Addr()
	waitFor(t, time.Minute, func() string { return checkTotals(t, api, want, true) })
}

// TestDemoBundled replays the bundled NH and NM 2020 results at full speed
// and checks the national totals against the file, known gaps included.
func TestDemoBundled(t *testing.T) {
	if testing.Short() {
		t.Skip("replays two states")
	}
	d := MustRunDemo(t)
	checkDemoTotals(t, d)
	// The file's sums, as published (NH 2020 lacks Amherst's Biden row; NM's
	// "*" counts read as 0): the software does not fix data.
	var nh tally.ContestResult
	getJSON(t, "http://"+d.gw.Addr()+"/api/v1/contests/nh-president", &nh)
	got := map[tally.CandidateID]int64{}
	for _, c := range nh.Candidates {
		got[c.ID] = c.Votes
	}
	if got["biden"] != 420125 || got["trump"] != 365654 {
		t.Errorf("nh-president biden %d trump %d, want the file's 420125 and 365654", got["biden"], got["trump"])
	}
}

// TestDemoOtherState replays another state's file in the normalized format.
func TestDemoOtherState(t *testing.T) {
	if testing.Short() {
		t.Skip("replays a state")
	}
	d := MustRunDemo(t, "--results", "testdata/nc_president_precinct.csv", "--regions", "3")
	if got := len(d.election.Election.Regions); got != 3 {
		t.Errorf("regions = %d, want 3", got)
	}
	checkDemoTotals(t, d)
	// One year only: no baseline, so no projections, and the demo says so.
	if out := d.out.(*syncBuffer).String(); !strings.Contains(out, "projections: off: the election has no earlier year") {
		t.Errorf("output does not say projections are off:\n%s", out)
	}
	if d.proj != nil {
		t.Error("a projector runs without a baseline")
	}
	var c struct {
		Projection *tally.Projection `json:"projection"`
		Call       *tally.Call       `json:"call"`
	}
	getJSON(t, "http://"+d.gw.Addr()+"/api/v1/contests/nc-president", &c)
	if c.Projection != nil || c.Call != nil {
		t.Errorf("nc-president projection %+v call %+v, want none", c.Projection, c.Call)
	}
}

// TestDemoOutage cuts a region's link to the hub for the whole replay
// (--outage), checks that the hub shows the region offline and its contest
// partial, with the region's last-known totals, then restores the link
// through the admin API and checks that the totals converge to the exact
// sums, with the contest complete and reconciled.
func TestDemoOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("replays a state")
	}
	const region = "nc-1"
	d := MustRunDemo(t, "--results", "testdata/nc_president_precinct.csv", "--regions", "3", "--outage", region+":0s:1h")
	api := "http://" + d.gw.Addr()
	// The replay has ended with every report accepted by its region; the
	// cut-off region's are not at the hub.
	waitFor(t, 30*time.Second, func() string {
		var regions []tally.RegionStatus
		getJSON(t, api+"/api/v1/regions", &regions)
		for _, r := range regions {
			if r.ID == region && r.Status != tally.StatusOffline {
				return fmt.Sprintf("region %s is %s, want offline", region, r.Status)
			}
		}
		var c tally.ContestResult
		getJSON(t, api+"/api/v1/contests/nc-president", &c)
		if !c.Partial || c.Complete || c.Reconciled {
			return fmt.Sprintf("contest partial %v complete %v reconciled %v, want partial only", c.Partial, c.Complete, c.Reconciled)
		}
		for _, rr := range c.Regions {
			if rr.ID == region && (rr.Status != tally.StatusOffline || rr.Precincts.Complete == rr.Precincts.Total) {
				return fmt.Sprintf("region %s in the contest: %s, %d/%d complete; want offline, incomplete", region, rr.Status, rr.Precincts.Complete, rr.Precincts.Total)
			}
		}
		return ""
	})
	if out := d.out.(*syncBuffer).String(); !strings.Contains(out, "region "+region+": link to the hub cut") {
		t.Errorf("the demo did not say the link was cut:\n%s", out)
	}

	// Back: through the admin API, as an operator would.
	req, err := http.NewRequest(http.MethodPost, api+"/api/v1/admin/regions/"+region+"/link", strings.NewReader(`{"up":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.Config.HTTP.AdminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("restore link: %s", res.Status)
	}
	checkDemoTotals(t, d)
	waitFor(t, time.Minute, func() string {
		var c tally.ContestResult
		getJSON(t, api+"/api/v1/contests/nc-president", &c)
		if c.Partial || !c.Complete || !c.Reconciled {
			return fmt.Sprintf("contest partial %v complete %v reconciled %v, want complete and reconciled", c.Partial, c.Complete, c.Reconciled)
		}
		return ""
	})
}
