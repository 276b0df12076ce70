package projector_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/projector"
)

// reportShare reports a random share f of the precincts of s (those for
// which keep says yes, when set) and returns the projection.
func reportShare(t *testing.T, s *synth, f float64, seed uint64, keep func(p tally.Precinct) bool) projector.Estimate {
	t.Helper()
	m := mustModel(t, s)
	tt := tally.NewTotals(s.E)
	rng := rand.New(rand.NewPCG(seed, 1))
	var seq uint64
	for _, i := range rng.Perm(len(s.E.Precincts)) {
		p := s.E.Precincts[i]
		if keep != nil && !keep(p) {
			continue
		}
		if rng.Float64() < f {
			s.report(tt, p.ID, &seq)
		}
	}
	return m.Project(tt, time.Unix(0, 0))
}

func finalMarginOf(s *synth, est projector.Estimate) float64 {
	if est.Margin.Leader == "a" {
		return s.Margin
	}
	return -s.Margin
}

func TestProjectUniformSwing(t *testing.T) {
	s := mustSynth(t, synthOpts{Counties: 10, PerCounty: 40, Swing: 0.03, Seed: 1})
	covered := 0
	const runs = 40
	for seed := range uint64(runs) {
		est := reportShare(t, s, 0.3, seed, nil)
		truth := finalMarginOf(s, est)
		if est.Margin.I90.Contains(truth) {
			covered++
		}
		if d := math.Abs(est.Margin.Estimate - truth); d > 0.02 {
			t.Errorf("seed %d: margin %.4f, final %.4f: off by %.4f", seed, est.Margin.Estimate, truth, d)
		}
		if !est.Margin.I99.Contains(truth) {
			t.Errorf("seed %d: I99 %+v misses the final margin %.4f", seed, est.Margin.I99, truth)
		}
	}
	if covered < runs*3/4 {
		t.Errorf("I90 covered the final margin %d times of %d, want most", covered, runs)
	}
	// Every field is filled.
	est := reportShare(t, s, 0.5, 99, nil)
	p := est.Projection
	if p.Contest != s.Contest || p.BaselineYear != 2016 || p.PrecinctsTotal != 400 || p.PrecinctsReporting == 0 ||
		p.ExpectedVotes <= p.CountedVotes || p.Outstanding != p.ExpectedVotes-p.CountedVotes || p.CountedShare <= 0 ||
		len(p.Candidates) != 2 || p.Margin.Leader == "" || p.Margin.RunnerUp == "" {
		t.Errorf("projection not filled in: %+v", p)
	}
	for _, c := range p.Candidates {
		if !(c.I99.Lo <= c.I90.Lo && c.I90.Lo <= c.Share && c.Share <= c.I90.Hi && c.I90.Hi <= c.I99.Hi) {
			t.Errorf("candidate %s: share %.4f, I90 %+v, I99 %+v: not nested", c.ID, c.Share, c.I90, c.I99)
		}
	}
	// The swing itself is recovered: b's projected share against the truth.
	var b tally.CandidateEstimate
	for _, c := range p.Candidates {
		if c.ID == "b" {
			b = c
		}
	}
	if math.Abs(b.Share-s.ShareB) > 0.01 || !b.I90.Contains(s.ShareB) {
		t.Errorf("b's share %.4f (I90 %+v), final %.4f", b.Share, b.I90, s.ShareB)
	}
}

func TestProjectCountySwing(t *testing.T) {
	s := mustSynth(t, synthOpts{Counties: 8, PerCounty: 40, Swing: 0.0, CountySwing: []float64{0.06, -0.06}, Seed: 2})
	t.Run("AllCountiesReporting", func(t *testing.T) {
		est := reportShare(t, s, 0.3, 1, nil)
		truth := finalMarginOf(s, est)
		if !est.Margin.I90.Contains(truth) || math.Abs(est.Margin.Estimate-truth) > 0.01 {
			t.Errorf("margin %.4f I90 %+v, final %.4f", est.Margin.Estimate, est.Margin.I90, truth)
		}
	})
	t.Run("OneCountyOnly", func(t *testing.T) {
		// Only county 0 has reported, fully: the model must stay unsure
		// about the others, and no call is allowed.
		s := mustSynth(t, synthOpts{Counties: 8, PerCounty: 40, Swing: 0.0, CountySwing: []float64{0.03, -0.03}, Seed: 2})
		est := reportShare(t, s, 1, 1, func(p tally.Precinct) bool { return p.County == "County 0" })
		truth := finalMarginOf(s, est)
		if !est.Margin.I99.Contains(truth) {
			t.Errorf("margin %.4f I99 %+v, final %.4f", est.Margin.Estimate, est.Margin.I99, truth)
		}
		if projector.DefaultCallRule.Callable(&est) {
			t.Errorf("callable with one county of eight in")
		}
	})
	t.Run("ConcentratedIsWider", func(t *testing.T) {
		// The same number of precincts, from one county or from all:
		// one county must leave the interval wider.
		u := mustSynth(t, synthOpts{Counties: 8, PerCounty: 40, Swing: 0.02, Seed: 2})
		one := reportShare(t, u, 1, 1, func(p tally.Precinct) bool { return p.County == "County 0" })
		spread := reportShare(t, u, 1.0/8, 1, nil)
		wide, narrow := one.Margin.I90.Hi-one.Margin.I90.Lo, spread.Margin.I90.Hi-spread.Margin.I90.Lo
		if wide <= 1.5*narrow {
			t.Errorf("I90 width %.4f with one county in, %.4f with as many precincts spread: want much wider", wide, narrow)
		}
	})
}

func TestProjectNoHistory(t *testing.T) {
	s := mustSynth(t, synthOpts{Counties: 6, PerCounty: 50, Swing: 0.02, NoHistory: 0.3, Seed: 3})
	covered, runs := 0, 30
	for seed := range uint64(runs) {
		est := reportShare(t, s, 0.3, seed, nil)
		if est.PrecinctsWithoutHistory < 60 || est.PrecinctsWithoutHistory > 120 {
			t.Fatalf("precincts without history: %d, want about 90", est.PrecinctsWithoutHistory)
		}
		if est.Margin.I90.Contains(finalMarginOf(s, est)) {
			covered++
		}
	}
	if covered < runs*3/4 {
		t.Errorf("I90 covered %d of %d", covered, runs)
	}
	// Fewer precincts with history: wider intervals than the same election with all.
	full := mustSynth(t, synthOpts{Counties: 6, PerCounty: 50, Swing: 0.02, Seed: 3})
	a, b := reportShare(t, s, 0.3, 1, nil), reportShare(t, full, 0.3, 1, nil)
	if wa, wb := a.Margin.I90.Hi-a.Margin.I90.Lo, b.Margin.I90.Hi-b.Margin.I90.Lo; wa <= wb {
		t.Errorf("I90 width %.4f with 30%% without history, %.4f with all: want wider", wa, wb)
	}
}

func TestProjectPartialAndComplete(t *testing.T) {
	s := mustSynth(t, synthOpts{Counties: 2, PerCounty: 10, Seed: 4})
	m := mustModel(t, s)
	tt := tally.NewTotals(s.E)
	var seq uint64
	for _, p := range s.E.Precincts {
		s.report(tt, p.ID, &seq)
	}
	est := m.Project(tt, time.Unix(0, 0))
	if est.Outstanding != 0 || est.CountedShare != 1 || math.Abs(est.Margin.Estimate-math.Abs(s.Margin)) > 1e-9 ||
		est.Margin.I99.Lo != est.Margin.I99.Hi {
		t.Errorf("all complete: %+v, want the final result with empty intervals", est.Projection)
	}
	// A partial count: the final is at least what is counted.
	p := s.E.Precincts[0]
	seq++
	tt.Apply(seq, &tally.Report{ID: "r1-x", Region: p.Region, Precinct: p.ID, Contest: s.Contest,
		Votes: map[tally.CandidateID]int64{"a": 100000, "b": 0}})
	est = m.Project(tt, time.Unix(0, 0))
	if est.ExpectedVotes < est.CountedVotes || est.Candidates[0].ID != "a" || est.Candidates[0].Votes < 100000 {
		t.Errorf("partial: %+v", est.Projection)
	}
}

func TestTiedRaceNeverCalled(t *testing.T) {
	for _, seed := range []uint64{5, 6} {
		s := mustSynth(t, synthOpts{Counties: 6, PerCounty: 40, Tie: true, Noise: 0.02, Seed: seed})
		if s.Margin != 0 {
			t.Fatalf("synthetic tie has margin %v", s.Margin)
		}
		rep, err := projector.Evaluate(context.Background(), projector.EvalConfig{
			Election: s.E, Counts: s.Counts, Baseline: s.Baseline, Orders: 40, Seed: seed, Step: 0.02})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Pooled.Calls != 0 || rep.Pooled.WrongCalls != 0 {
			t.Errorf("seed %d: a tied race was called in %d of %d nights", seed, rep.Pooled.Calls, rep.Pooled.Orders)
		}
	}
}

func TestEvaluateClearRace(t *testing.T) {
	s := mustSynth(t, synthOpts{Counties: 6, PerCounty: 40, Swing: 0.08, Seed: 7})
	rep, err := projector.Evaluate(context.Background(), projector.EvalConfig{
		Election: s.E, Counts: s.Counts, Baseline: s.Baseline, Orders: 20, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range projector.Families {
		fs := rep.Families[f]
		if fs.Orders != 20 || fs.WrongCalls != 0 || fs.CalledBeforeAll < 0.9 || fs.Coverage90 < 0.7 {
			t.Errorf("%s: %+v", f, fs)
		}
	}
	if rep.Pooled.Orders != 80 || len(rep.Pooled.MarginMAE) != 4 || rep.Pooled.MedianReportedAtCall <= 0 {
		t.Errorf("pooled: %+v", rep.Pooled)
	}
}

func BenchmarkProject10k(b *testing.B) {
	s := mustSynth(b, synthOpts{Counties: 50, PerCounty: 200, Swing: 0.02, NoHistory: 0.1, Seed: 8})
	m := mustModel(b, s)
	tt := tally.NewTotals(s.E)
	var seq uint64
	for i, p := range s.E.Precincts {
		if i%2 == 0 {
			s.report(tt, p.ID, &seq)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		m.Project(tt, time.Unix(0, 0))
	}
}
