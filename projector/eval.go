package projector

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/tallyvote/tally"
)

// Order families of EvalConfig: how precincts arrive in a replayed night.
const (
	FamilyRandom     = "random"      // uniformly random precincts
	FamilyCounty     = "county"      // whole counties in random order, a county's precincts together
	FamilySmallFirst = "small-first" // smallest precincts (final votes) first, sizes jittered
	FamilyLargeFirst = "large-first" // largest precincts first, sizes jittered
)

// Families lists the order families in the order they are reported.
var Families = []string{FamilyRandom, FamilyCounty, FamilySmallFirst, FamilyLargeFirst}

// Checkpoints are the shares of precincts reported at which eval scores the
// margin's intervals.
var Checkpoints = []float64{0.10, 0.25, 0.50, 0.75}

// sizeJitter is the sd of the log-normal noise on precinct sizes in the
// size-ordered families, so their orders differ from one another.
const sizeJitter = 0.25

// EvalConfig says what Evaluate replays.
type EvalConfig struct {
	Election *tally.Election
	// Counts are the final results of the target year.
	Counts   tally.Counts
	Baseline *Baseline
	// Orders is the number of reporting orders per family and contest.
	Orders int
	Seed   uint64
	// Step is the share of precincts between two applications of the call
	// rule (and projections); 0 means 0.01.
	Step float64
	Rule CallRule
	// Workers run orders in parallel; 0 means GOMAXPROCS.
	Workers int
	// Progress, when set, is called after each order with the number done
	// and the total. It is called from one goroutine at a time.
	Progress func(done, total int)
}

// EvalReport is the score of the projector over replayed nights.
type EvalReport struct {
	Orders       int                      `json:"orders"` // per family and contest
	Seed         uint64                   `json:"seed"`
	Step         float64                  `json:"step"`
	BaselineYear int                      `json:"baseline_year"`
	Families     map[string]*EvalSummary  `json:"families"`
	Pooled       *EvalSummary             `json:"pooled"`
	Contests     map[string]*ContestScore `json:"contests"`
	ElapsedMS    int64                    `json:"elapsed_ms"`
}

// ContestScore is one contest's part of an EvalReport.
type ContestScore struct {
	Winner      tally.CandidateID       `json:"winner"`
	FinalMargin float64                 `json:"final_margin"`
	Precincts   int                     `json:"precincts"`
	NoHistory   int                     `json:"precincts_without_history"`
	Families    map[string]*EvalSummary `json:"families"`
	Pooled      *EvalSummary            `json:"pooled"`
}

// EvalSummary scores a set of replayed nights (one per contest and order).
type EvalSummary struct {
	// Orders counts the nights; Calls those with a model call;
	// WrongCalls those where the model called anyone but the final
	// winner, even if it retracted later; Retractions counts model
	// retractions.
	Orders      int `json:"orders"`
	Calls       int `json:"calls"`
	WrongCalls  int `json:"wrong_calls"`
	Retractions int `json:"retractions"`
	// CalledBeforeAll is the share of nights called before every
	// precinct had reported.
	CalledBeforeAll float64 `json:"called_before_all"`
	// Coverage90 and Coverage99 are the shares of checkpoints where the
	// margin's interval held the final margin; by checkpoint too.
	Coverage90             float64            `json:"coverage_90"`
	Coverage99             float64            `json:"coverage_99"`
	Coverage90ByCheckpoint map[string]float64 `json:"coverage_90_by_checkpoint"`
	// MedianReportedAtCall is the median share of the final vote counted
	// when the first model call came (nights with a call only).
	MedianReportedAtCall float64 `json:"median_reported_at_call"`
	// MarginMAE is the mean absolute error of the projected margin
	// against the final, by checkpoint ("10" = 10% of precincts).
	MarginMAE map[string]float64 `json:"margin_mae"`

	covered90, covered99, checks []int
	absErr                       []float64
	atCall                       []float64
	beforeAll                    int
}

func newSummary() *EvalSummary {
	n := len(Checkpoints)
	return &EvalSummary{covered90: make([]int, n), covered99: make([]int, n), checks: make([]int, n), absErr: make([]float64, n)}
}

// night is the score of one replayed night.
type night struct {
	contest    tally.ContestID
	family     string
	called     bool
	wrong      bool
	retracted  int
	atCall     float64
	beforeAll  bool
	covered90  []bool
	covered99  []bool
	absErr     []float64
	checkpoint []bool
}

func (s *EvalSummary) add(n *night) {
	s.Orders++
	if n.called {
		s.Calls++
		s.atCall = append(s.atCall, n.atCall)
		if n.beforeAll {
			s.beforeAll++
		}
	}
	if n.wrong {
		s.WrongCalls++
	}
	s.Retractions += n.retracted
	for i := range Checkpoints {
		if !n.checkpoint[i] {
			continue
		}
		s.checks[i]++
		if n.covered90[i] {
			s.covered90[i]++
		}
		if n.covered99[i] {
			s.covered99[i]++
		}
		s.absErr[i] += n.absErr[i]
	}
}

func (s *EvalSummary) finish() {
	var c90, c99, checks int
	s.Coverage90ByCheckpoint = map[string]float64{}
	s.MarginMAE = map[string]float64{}
	for i, f := range Checkpoints {
		key := fmt.Sprintf("%d", int(math.Round(f*100)))
		c90 += s.covered90[i]
		c99 += s.covered99[i]
		checks += s.checks[i]
		if s.checks[i] > 0 {
			s.Coverage90ByCheckpoint[key] = float64(s.covered90[i]) / float64(s.checks[i])
			s.MarginMAE[key] = s.absErr[i] / float64(s.checks[i])
		}
	}
	if checks > 0 {
		s.Coverage90 = float64(c90) / float64(checks)
		s.Coverage99 = float64(c99) / float64(checks)
	}
	if s.Orders > 0 {
		s.CalledBeforeAll = float64(s.beforeAll) / float64(s.Orders)
	}
	if len(s.atCall) > 0 {
		sort.Float64s(s.atCall)
		n := len(s.atCall)
		if n%2 == 1 {
			s.MedianReportedAtCall = s.atCall[n/2]
		} else {
			s.MedianReportedAtCall = (s.atCall[n/2-1] + s.atCall[n/2]) / 2
		}
	}
}

// Evaluate replays the target year's final results in cfg.Orders reporting
// orders of every family, for every contest with a baseline, projecting and
// applying the call rule every cfg.Step of the precincts, and scores the
// projections against the final result. It runs without servers, through
// the same tally.Totals and Model as the live service. Errors have code
// EINVALID (bad configuration) or come from ctx.
func Evaluate(ctx context.Context, cfg EvalConfig) (*EvalReport, error) {
	start := time.Now()
	if cfg.Orders <= 0 {
		return nil, tally.Errorf(tally.EINVALID, "orders: must be positive")
	}
	if cfg.Step <= 0 {
		cfg.Step = 0.01
	}
	if cfg.Rule == (CallRule{}) {
		cfg.Rule = DefaultCallRule
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	e := cfg.Election
	var contests []tally.ContestID
	for _, c := range e.Contests {
		if cfg.Baseline != nil && cfg.Baseline.Contests[c.ID] != nil {
			contests = append(contests, c.ID)
		}
	}
	if len(contests) == 0 {
		return nil, tally.Errorf(tally.EINVALID, "baseline: no contest of the election has a baseline")
	}
	rep := &EvalReport{Orders: cfg.Orders, Seed: cfg.Seed, Step: cfg.Step, BaselineYear: cfg.Baseline.Year,
		Families: map[string]*EvalSummary{}, Pooled: newSummary(), Contests: map[string]*ContestScore{}}
	for _, f := range Families {
		rep.Families[f] = newSummary()
	}
	finals := map[tally.ContestID]*finalResult{}
	for _, c := range contests {
		fr := finalOf(e, cfg.Counts, c)
		finals[c] = fr
		cs := &ContestScore{Winner: fr.winner, FinalMargin: fr.margin, Precincts: len(e.ContestPrecincts(c)),
			Families: map[string]*EvalSummary{}, Pooled: newSummary()}
		for _, f := range Families {
			cs.Families[f] = newSummary()
		}
		rep.Contests[string(c)] = cs
	}

	type job struct {
		contest tally.ContestID
		family  string
		order   int
	}
	jobs := make(chan job)
	results := make(chan *night)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			models := map[tally.ContestID]*Model{}
			for j := range jobs {
				m := models[j.contest]
				if m == nil {
					var err error
					m, err = NewModel(e, cfg.Baseline.Contests[j.contest])
					if err != nil {
						errOnce.Do(func() { firstErr = err })
						continue
					}
					models[j.contest] = m
				}
				results <- replayNight(e, cfg, m, finals[j.contest], j.family, j.order)
			}
		}()
	}
	total := len(contests) * len(Families) * cfg.Orders
	go func() {
		defer close(jobs)
		for _, c := range contests {
			for _, f := range Families {
				for o := range cfg.Orders {
					select {
					case jobs <- job{c, f, o}:
					case <-ctx.Done():
						return
					}
				}
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()
	done := 0
	for n := range results {
		done++
		cs := rep.Contests[string(n.contest)]
		for _, s := range []*EvalSummary{rep.Families[n.family], rep.Pooled, cs.Families[n.family], cs.Pooled} {
			s.add(n)
		}
		if cfg.Progress != nil {
			cfg.Progress(done, total)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, firstErr
	}
	for _, c := range contests {
		cs := rep.Contests[string(c)]
		m, _ := NewModel(e, cfg.Baseline.Contests[c])
		cs.NoHistory = m.noHist
		cs.Pooled.finish()
		for _, s := range cs.Families {
			s.finish()
		}
	}
	rep.Pooled.finish()
	for _, s := range rep.Families {
		s.finish()
	}
	rep.ElapsedMS = time.Since(start).Milliseconds()
	return rep, nil
}

// finalResult is a contest's final result, the truth a night is scored
// against.
type finalResult struct {
	share  map[tally.CandidateID]float64
	total  float64
	winner tally.CandidateID
	margin float64
	size   map[tally.PrecinctID]float64
}

func finalOf(e *tally.Election, counts tally.Counts, c tally.ContestID) *finalResult {
	fr := &finalResult{share: map[tally.CandidateID]float64{}, size: map[tally.PrecinctID]float64{}}
	votes := map[tally.CandidateID]float64{}
	for _, p := range e.ContestPrecincts(c) {
		for cand, n := range counts[p][c] {
			votes[cand] += float64(n)
			fr.total += float64(n)
			fr.size[p] += float64(n)
		}
	}
	var best, second float64
	for _, cd := range e.Contest(c).Candidates {
		v := votes[cd.ID]
		if fr.total > 0 {
			fr.share[cd.ID] = v / fr.total
		}
		switch {
		case fr.winner == "" || v > best:
			second = best
			best, fr.winner = v, cd.ID
		case v > second:
			second = v
		}
	}
	if fr.total > 0 {
		fr.margin = (best - second) / fr.total
	}
	return fr
}

// reportingOrder returns the precincts of contest c in an order of family f.
func reportingOrder(e *tally.Election, fr *finalResult, c tally.ContestID, f string, rng *rand.Rand) []tally.PrecinctID {
	pids := append([]tally.PrecinctID(nil), e.ContestPrecincts(c)...)
	switch f {
	case FamilyCounty:
		byCounty := map[string][]tally.PrecinctID{}
		var counties []string
		for _, p := range pids {
			cn := e.Precinct(p).County
			if byCounty[cn] == nil {
				counties = append(counties, cn)
			}
			byCounty[cn] = append(byCounty[cn], p)
		}
		rng.Shuffle(len(counties), func(i, j int) { counties[i], counties[j] = counties[j], counties[i] })
		pids = pids[:0]
		for _, cn := range counties {
			ps := byCounty[cn]
			rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
			pids = append(pids, ps...)
		}
	case FamilySmallFirst, FamilyLargeFirst:
		key := make(map[tally.PrecinctID]float64, len(pids))
		for _, p := range pids {
			key[p] = math.Log1p(fr.size[p]) + sizeJitter*rng.NormFloat64()
		}
		sort.SliceStable(pids, func(i, j int) bool {
			if f == FamilySmallFirst {
				return key[pids[i]] < key[pids[j]]
			}
			return key[pids[i]] > key[pids[j]]
		})
	default:
		rng.Shuffle(len(pids), func(i, j int) { pids[i], pids[j] = pids[j], pids[i] })
	}
	return pids
}

// replayNight replays one order and scores it.
func replayNight(e *tally.Election, cfg EvalConfig, m *Model, fr *finalResult, family string, order int) *night {
	c := m.contest
	fi := 0
	for i, f := range Families {
		if f == family {
			fi = i
		}
	}
	h := uint64(0)
	for _, b := range []byte(c) {
		h = h*131 + uint64(b)
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, h^uint64(fi)<<48^uint64(order)))
	pids := reportingOrder(e, fr, c, family, rng)
	n := len(pids)
	nt := &night{contest: c, family: family, covered90: make([]bool, len(Checkpoints)), covered99: make([]bool, len(Checkpoints)),
		absErr: make([]float64, len(Checkpoints)), checkpoint: make([]bool, len(Checkpoints))}
	at := map[int]int{} // precincts reported -> checkpoint index + 1
	for i, f := range Checkpoints {
		k := int(math.Ceil(f * float64(n)))
		if k >= 1 && k < n {
			at[k] = i + 1
		}
	}
	step := int(math.Round(cfg.Step * float64(n)))
	if step < 1 {
		step = 1
	}
	t := tally.NewTotals(e)
	caller := NewCaller(c, cfg.Rule)
	seq := map[tally.RegionID]uint64{}
	base := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	var counted float64
	for i, p := range pids {
		pr := e.Precinct(p)
		seq[pr.Region]++
		votes := cfgVotes(cfg.Counts, p, c)
		t.Apply(seq[pr.Region], &tally.Report{ID: tally.EventID(fmt.Sprintf("%s-%d", pr.Region, seq[pr.Region])),
			Region: pr.Region, Precinct: p, Contest: c, Votes: votes, Complete: true, ReportedAt: base.Add(time.Duration(i) * time.Second)})
		counted += fr.size[p]
		k := i + 1
		cp := at[k]
		if k%step != 0 && cp == 0 && k != n {
			continue
		}
		est := m.Project(t, base.Add(time.Duration(i)*time.Second))
		if cp > 0 {
			ci := cp - 1
			mg := est.Margin
			truth := fr.share[mg.Leader] - fr.share[mg.RunnerUp]
			nt.checkpoint[ci] = true
			nt.covered90[ci] = mg.I90.Contains(truth)
			nt.covered99[ci] = mg.I99.Contains(truth)
			nt.absErr[ci] = math.Abs(mg.Estimate - truth)
		}
		if ev := caller.Update(&est); ev != nil {
			switch ev.Status {
			case tally.CallCalled:
				if !nt.called {
					nt.called = true
					nt.beforeAll = k < n
					if fr.total > 0 {
						nt.atCall = counted / fr.total
					}
				}
				if ev.Winner != fr.winner {
					nt.wrong = true
				}
			case tally.CallRetracted:
				nt.retracted++
			}
		}
	}
	return nt
}

func cfgVotes(counts tally.Counts, p tally.PrecinctID, c tally.ContestID) map[tally.CandidateID]int64 {
	if v := counts[p][c]; v != nil {
		return v
	}
	return map[tally.CandidateID]int64{}
}
