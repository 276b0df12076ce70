package projector_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/projector"
)

// synthOpts describes a synthetic election with known truth: two
// candidates, a and b, in one contest "st-pres".
type synthOpts struct {
	Counties, PerCounty int
	Regions             int
	Swing               float64   // b's share swing everywhere
	CountySwing         []float64 // plus this per county (cycled)
	Turnout             float64   // final / baseline votes; 0 means 1.1
	Noise               float64   // sd of a precinct's own swing; 0 means 0.01
	NoHistory           float64   // share of precincts without history
	Tie                 bool      // make the final result an exact tie
	Seed                uint64
}

// synth is a synthetic election: its definition, baseline and final counts.
type synth struct {
	E        *tally.Election
	Baseline *projector.Baseline
	Counts   tally.Counts
	Contest  tally.ContestID
	// Share is b's final share; Margin is a's final share minus b's.
	ShareB, Margin float64
}

func mustSynth(tb testing.TB, o synthOpts) *synth {
	tb.Helper()
	if o.Turnout == 0 {
		o.Turnout = 1.1
	}
	if o.Noise == 0 {
		o.Noise = 0.01
	}
	if o.Regions == 0 {
		o.Regions = 1
	}
	rng := rand.New(rand.NewPCG(o.Seed, 99))
	const cid = tally.ContestID("st-pres")
	e := &tally.Election{ID: "synth", Name: "Synthetic", Date: "2020-11-03", Test: true,
		Contests: []tally.Contest{{ID: cid, Name: "President", Office: "President", State: "ST",
			Candidates: []tally.Candidate{{ID: "a", Name: "A", Party: "DEM"}, {ID: "b", Name: "B", Party: "REP"}},
			Baseline:   &tally.Baseline{Year: 2016, Contest: cid}}}}
	for r := range o.Regions {
		e.Regions = append(e.Regions, tally.Region{ID: tally.RegionID(fmt.Sprintf("r%d", r+1)), Name: fmt.Sprintf("R%d", r+1)})
	}
	cb := &projector.ContestBaseline{Contest: cid, Year: 2016, Precincts: map[tally.PrecinctID]projector.PrecinctBaseline{}}
	counts := tally.Counts{}
	var fa, fb float64
	var last tally.PrecinctID
	for c := range o.Counties {
		cs := 0.0
		if len(o.CountySwing) > 0 {
			cs = o.CountySwing[c%len(o.CountySwing)]
		}
		lean := 0.1 * rng.NormFloat64()
		for i := range o.PerCounty {
			id := tally.PrecinctID(fmt.Sprintf("c%d-p%d", c, i))
			e.Precincts = append(e.Precincts, tally.Precinct{ID: id, Name: string(id), County: fmt.Sprintf("County %d", c),
				State: "ST", Region: e.Regions[c%o.Regions].ID, Contests: []tally.ContestID{cid}})
			base := math.Round(1000 * math.Exp(0.6*rng.NormFloat64()))
			sb := math.Min(0.9, math.Max(0.1, 0.5+lean+0.1*rng.NormFloat64()))
			ba := math.Round(base * (1 - sb))
			bb := base - ba
			hist := rng.Float64() >= o.NoHistory
			if hist {
				cb.Precincts[id] = projector.PrecinctBaseline{Votes: map[tally.CandidateID]int64{"a": int64(ba), "b": int64(bb)}, Total: int64(base), History: true}
			} else {
				cb.Precincts[id] = projector.PrecinctBaseline{Votes: map[tally.CandidateID]int64{"a": 0, "b": 0}}
			}
			tot := math.Round(base * o.Turnout * math.Exp(0.05*rng.NormFloat64()))
			s := math.Min(0.99, math.Max(0.01, sb+o.Swing+cs+o.Noise*rng.NormFloat64()))
			vb := math.Round(tot * s)
			va := tot - vb
			counts[id] = map[tally.ContestID]map[tally.CandidateID]int64{cid: {"a": int64(va), "b": int64(vb)}}
			fa += va
			fb += vb
			last = id
		}
	}
	if o.Tie {
		// Shift every precinct by the same share (a uniform swing) so the
		// final is an exact tie; rounding is settled in the last ones.
		shift := (fa - fb) / 2 / (fa + fb)
		for _, pr := range e.Precincts {
			v := counts[pr.ID][cid]
			n := int64(math.Round(shift * float64(v["a"]+v["b"])))
			n = max(min(n, v["a"]), -v["b"])
			v["a"], v["b"] = v["a"]-n, v["b"]+n
		}
		var d int64
		for _, pr := range e.Precincts {
			d += counts[pr.ID][cid]["a"] - counts[pr.ID][cid]["b"]
		}
		for i := len(e.Precincts) - 1; i >= 0 && (d > 1 || d < -1); i-- {
			v := counts[e.Precincts[i].ID][cid]
			n := min(max(d/2, -d/2), 50)
			if d > 0 {
				n = min(n, v["a"])
				v["a"], v["b"], d = v["a"]-n, v["b"]+n, d-2*n
			} else {
				n = min(n, v["b"])
				v["a"], v["b"], d = v["a"]+n, v["b"]-n, d+2*n
			}
		}
		if d != 0 && d != 1 && d != -1 {
			tb.Fatalf("tie: %d votes left to move", d)
		}
		switch d {
		case 1:
			counts[last][cid]["b"]++
		case -1:
			counts[last][cid]["a"]++
		}
		fa, fb = 0, 0
		for id := range counts {
			fa += float64(counts[id][cid]["a"])
			fb += float64(counts[id][cid]["b"])
		}
	}
	if err := e.Validate(); err != nil {
		tb.Fatal(err)
	}
	return &synth{E: e, Contest: cid, Counts: counts,
		Baseline: &projector.Baseline{Year: 2016, Contests: map[tally.ContestID]*projector.ContestBaseline{cid: cb}},
		ShareB:   fb / (fa + fb), Margin: (fa - fb) / (fa + fb)}
}

// report applies precinct p's final count to t as a complete report.
func (s *synth) report(t *tally.Totals, p tally.PrecinctID, seq *uint64) {
	*seq++
	pr := s.E.Precinct(p)
	t.Apply(*seq, &tally.Report{ID: tally.EventID(fmt.Sprintf("%s-%d", pr.Region, *seq)), Region: pr.Region, Precinct: p,
		Contest: s.Contest, Votes: s.Counts[p][s.Contest], Complete: true, ReportedAt: time.Unix(int64(*seq), 0)})
}

func mustModel(tb testing.TB, s *synth) *projector.Model {
	tb.Helper()
	m, err := projector.NewModel(s.E, s.Baseline.Contests[s.Contest])
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// runJetStream runs a JetStream server for the test and connects to it.
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
