package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/projector"
)

// EvalMain runs `tally eval`: it replays a results file against its baseline
// in many reporting orders, without servers, and scores the projector.
type EvalMain struct {
	Results      string // comma-separated files, or "bundled"
	Crosswalks   string // comma-separated files, or "bundled"
	BaselineYear int    // 0: the year before Year in the file
	Year         int    // 0: the latest in the file
	Orders       int
	Seed         uint64
	Step         float64
	JSON         bool

	out, errOut io.Writer
	done        chan struct{}
}

// NewEvalMain returns an EvalMain printing its table (or JSON) to out and
// its progress to errOut.
func NewEvalMain(out, errOut io.Writer) *EvalMain {
	return &EvalMain{Results: "bundled", Crosswalks: "bundled", Orders: 200, Seed: 1, Step: 0.01,
		out: out, errOut: errOut, done: make(chan struct{})}
}

// ParseFlags reads the flags.
func (m *EvalMain) ParseFlags(args []string, getenv func(string) string) error {
	fs := flagSet("eval", m.errOut)
	fs.StringVar(&m.Results, "results", m.Results, "results CSV file(s) holding both years, comma-separated, or \"bundled\"")
	fs.StringVar(&m.Crosswalks, "crosswalk", m.Crosswalks, "crosswalk CSV file(s), comma-separated, or \"bundled\"; <st>_ prefixed names are tied to that state")
	fs.IntVar(&m.BaselineYear, "baseline-year", 0, "the baseline election's year (default: the year before --year in the file)")
	fs.IntVar(&m.Year, "year", 0, "the year to replay (default: the latest in the file)")
	fs.IntVar(&m.Orders, "orders", m.Orders, "reporting orders per family and contest")
	fs.Uint64Var(&m.Seed, "seed", m.Seed, "seed of the reporting orders")
	fs.Float64Var(&m.Step, "step", m.Step, "share of precincts between two projections (the call rule runs at each)")
	fs.BoolVar(&m.JSON, "json", false, "print the full report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	switch {
	case m.Orders <= 0:
		return fmt.Errorf("orders: must be positive, got %d", m.Orders)
	case m.Step <= 0 || m.Step > 1:
		return fmt.Errorf("step: must be in (0, 1], got %g", m.Step)
	case strings.TrimSpace(m.Results) == "":
		return fmt.Errorf("results: required")
	case strings.TrimSpace(m.Crosswalks) == "":
		return fmt.Errorf("crosswalk: required")
	}
	return nil
}

// Run evaluates and prints the report; Done is closed when it returns.
func (m *EvalMain) Run(ctx context.Context) error {
	defer close(m.done)
	rows, err := readResultsFiles(m.Results)
	if err != nil {
		return err
	}
	e, counts, err := tally.BuildElection(rows, tally.BuildOptions{Year: m.Year})
	if err != nil {
		return err
	}
	year := m.Year
	if year == 0 {
		year = tally.ResultYears(rows)[len(tally.ResultYears(rows))-1]
	}
	by := m.BaselineYear
	if by == 0 {
		for _, c := range e.Contests {
			if c.Baseline != nil {
				by = c.Baseline.Year
				break
			}
		}
		if by == 0 {
			return fmt.Errorf("baseline-year: the results have no year before %d; name one", year)
		}
	}
	if by >= year {
		return fmt.Errorf("baseline-year: %d is not before the year %d", by, year)
	}
	xw, err := readCrosswalks(m.Crosswalks)
	if err != nil {
		return err
	}
	b, err := projector.LoadBaseline(e, rows, by, xw)
	if err != nil {
		return err
	}
	var last time.Time
	rep, err := projector.Evaluate(ctx, projector.EvalConfig{
		Election: e, Counts: counts, Baseline: b, Orders: m.Orders, Seed: m.Seed, Step: m.Step,
		Progress: func(done, total int) {
			if now := time.Now(); now.Sub(last) > time.Second || done == total {
				last = now
				fmt.Fprintf(m.errOut, "eval: %d/%d nights\n", done, total)
			}
		},
	})
	if err != nil {
		return err
	}
	if m.JSON {
		out := struct {
			Command string `json:"command"`
			Year    int    `json:"year"`
			*projector.EvalReport
		}{"tally eval " + m.argString(), year, rep}
		enc := json.NewEncoder(m.out)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return m.printTable(rep, year)
}

func (m *EvalMain) argString() string {
	return fmt.Sprintf("--results %s --crosswalk %s --baseline-year %d --year %d --orders %d --seed %d --step %g",
		m.Results, m.Crosswalks, m.BaselineYear, m.Year, m.Orders, m.Seed, m.Step)
}

// printTable prints one row per family and the pooled row, for all
// contests together and then for each contest.
func (m *EvalMain) printTable(rep *projector.EvalReport, year int) error {
	w := tabwriter.NewWriter(m.out, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(m.out, "tally eval: baseline %d, year %d, %d orders per family and contest, seed %d, projection every %g of precincts (%d ms)\n\n",
		rep.BaselineYear, year, rep.Orders, rep.Seed, rep.Step, rep.ElapsedMS)
	header := "contest\tfamily\tnights\tcalls\twrong\tretracted\tcalled<100%\tcov90\tcov99\tcov90@10\t@25\t@50\t@75\tmae@10\t@25\t@50\t@75\tvote@call\t"
	fmt.Fprintln(w, header)
	row := func(contest, family string, s *projector.EvalSummary) {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%.3f\t%.3f\t%.3f\t", contest, family, s.Orders, s.Calls, s.WrongCalls, s.Retractions,
			s.CalledBeforeAll, s.Coverage90, s.Coverage99)
		for _, k := range []string{"10", "25", "50", "75"} {
			fmt.Fprintf(w, "%.3f\t", s.Coverage90ByCheckpoint[k])
		}
		for _, k := range []string{"10", "25", "50", "75"} {
			fmt.Fprintf(w, "%.4f\t", s.MarginMAE[k])
		}
		fmt.Fprintf(w, "%.3f\t\n", s.MedianReportedAtCall)
	}
	for _, f := range projector.Families {
		row("all", f, rep.Families[f])
	}
	row("all", "pooled", rep.Pooled)
	ids := make([]string, 0, len(rep.Contests))
	for id := range rep.Contests {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		cs := rep.Contests[id]
		for _, f := range projector.Families {
			row(id, f, cs.Families[f])
		}
		row(id, "pooled", cs.Pooled)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(m.out)
	for _, id := range ids {
		cs := rep.Contests[id]
		fmt.Fprintf(m.out, "%s: winner %s, final margin %.4f, %d precincts (%d without history)\n", id, cs.Winner, cs.FinalMargin, cs.Precincts, cs.NoHistory)
	}
	return nil
}

// Done is closed once Run has returned.
func (m *EvalMain) Done() <-chan struct{} { return m.done }

// Close does nothing: Run did all the work.
func (m *EvalMain) Close() error { return nil }
