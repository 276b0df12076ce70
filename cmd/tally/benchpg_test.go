package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// mustFindPostgres skips the test when no PostgreSQL server is installed,
// unless TALLY_REQUIRE_POSTGRES=1, where it fails instead.
func mustFindPostgres(tb testing.TB) {
	tb.Helper()
	_, err := findPostgres()
	switch {
	case errors.Is(err, errNoPostgres) && os.Getenv("TALLY_REQUIRE_POSTGRES") == "1":
		tb.Fatalf("TALLY_REQUIRE_POSTGRES=1: %v", err)
	case errors.Is(err, errNoPostgres):
		tb.Skipf("skipped: %v (set TALLY_REQUIRE_POSTGRES=1 to fail instead)", err)
	case err != nil:
		tb.Fatal(err)
	}
}

// pgBenchReports builds, for the first n precincts of e, two cumulative
// reports per contest on the ballot and, for every fifth precinct, a
// correction of the second. Each precinct's reports come in order.
func pgBenchReports(e *tally.Election, n int) []*tally.Report {
	rng := rand.New(rand.NewPCG(1, 2))
	at := time.Date(2020, 11, 3, 20, 0, 0, 0, time.UTC)
	mk := func(p *tally.Precinct, c tally.ContestID, id string, scale int64) *tally.Report {
		votes := map[tally.CandidateID]int64{}
		for _, cand := range e.Contest(c).Candidates {
			votes[cand.ID] = scale * rng.Int64N(500)
		}
		return &tally.Report{ID: tally.EventID(fmt.Sprintf("%s-pg-%s", p.Region, id)), Region: p.Region,
			Precinct: p.ID, Contest: c, Votes: votes, ReportedAt: at}
	}
	ps := e.Precincts[:min(n, len(e.Precincts))]
	var first, second, corrections []*tally.Report
	for i := range ps {
		p := &ps[i]
		for _, c := range p.Contests {
			first = append(first, mk(p, c, fmt.Sprintf("%d-%s-1", i, c), 1))
			r := mk(p, c, fmt.Sprintf("%d-%s-2", i, c), 2)
			second = append(second, r)
			if i%5 == 0 {
				fix := mk(p, c, fmt.Sprintf("%d-%s-fix", i, c), 2)
				fix.Correction = &tally.Correction{Supersedes: r.ID, Reason: "transposed digits"}
				corrections = append(corrections, fix)
			}
		}
	}
	return append(append(first, second...), corrections...)
}

func TestPostgresBench(t *testing.T) {
	mustFindPostgres(t)
	le, err := loadElection(ElectionSource{Results: "bundled", Regions: 1})
	if err != nil {
		t.Fatal(err)
	}
	e := le.Election
	reports := pgBenchReports(e, 150)

	t.Run("Applies", func(t *testing.T) {
		var progress strings.Builder
		res, err := runPostgresBench(context.Background(), &progress, e, reports, 4)
		if err != nil {
			t.Fatalf("runPostgresBench: %v\nprogress:\n%s", err, progress.String())
		}
		t.Logf("%d reports in %v: %.0f/s on %s", res.Events, res.Elapsed, res.EventsPerSec, res.Server)
		if res.Events != len(reports) {
			t.Errorf("Events = %d, want %d", res.Events, len(reports))
		}
		if res.Elapsed <= 0 || res.EventsPerSec <= 0 {
			t.Errorf("Elapsed = %v, EventsPerSec = %v, want both > 0", res.Elapsed, res.EventsPerSec)
		}
		for _, want := range []string{"PostgreSQL ", "fsync on", "synchronous_commit on"} {
			if !strings.Contains(res.Server, want) {
				t.Errorf("Server = %q, want it to contain %q", res.Server, want)
			}
		}
		if !strings.Contains(progress.String(), fmt.Sprintf("%d reports in", len(reports))) {
			t.Errorf("progress = %q, want the final count", progress.String())
		}
	})

	t.Run("StaleCorrectionRefused", func(t *testing.T) {
		reps := pgBenchReports(e, 5)
		stale := *reps[len(reps)-1]
		stale.ID += "-again"
		reps = append(reps, &stale) // supersedes the report the correction replaced
		_, err := runPostgresBench(context.Background(), nil, e, reps, 2)
		if err == nil || !strings.Contains(err.Error(), "stale correction") {
			t.Fatalf("runPostgresBench = %v, want a stale correction error", err)
		}
	})
}
