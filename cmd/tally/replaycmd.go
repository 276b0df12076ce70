package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tallyvote/tally"
)

// ReplayMain runs `tally replay`: a results file through running regions'
// intake.
type ReplayMain struct {
	Election ElectionSource
	Intake   map[tally.RegionID]string
	Config   ReplayConfig
	// Keys is a directory made by `tally keys --counties`; "" sends
	// unsigned reports.
	Keys string
	// CA is a PEM file of the CAs trusted for https intake URLs; "" means
	// the system's.
	CA string

	out, errOut io.Writer
	cancel      context.CancelFunc
	done        chan struct{}
	err         error
}

// NewReplayMain returns a ReplayMain printing its summary to out and its
// progress to errOut.
func NewReplayMain(out, errOut io.Writer) *ReplayMain {
	return &ReplayMain{Config: DefaultReplayConfig(), out: out, errOut: errOut, done: make(chan struct{})}
}

// ParseFlags reads the flags.
func (m *ReplayMain) ParseFlags(args []string, getenv func(string) string) error {
	fs := flagSet("replay", m.errOut)
	results := fs.String("results", "bundled", "results CSV file(s), comma-separated, or \"bundled\"")
	regions := fs.Int("regions", 0, "regions per state, as the regions were started with (default 2)")
	year := fs.Int("year", 0, "the year to replay (default: the latest in the file)")
	intake := fs.String("intake", "", "region intake URLs: region=http://host:port,... (required)")
	speed := fs.String("speed", m.Config.Speed, "times real time, or max")
	night := fs.Duration("night", time.Duration(m.Config.Night), "length of the replayed night")
	seed := fs.Int64("seed", m.Config.Seed, "reporting order seed")
	batch := fs.Int("batch", m.Config.Batch, "reports per request, at most")
	partial := fs.Float64("partial", m.Config.Partial, "share of precincts that send a partial count first")
	corrections := fs.Float64("corrections", m.Config.Corrections, "share of precincts whose final count is corrected")
	keys := fs.String("keys", "", "directory of office keys and offices.json (tally keys --counties) to sign the reports with")
	ca := fs.String("ca", "", "PEM file of CAs to trust for https intake URLs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m.Keys, m.CA = *keys, *ca
	m.Election = ElectionSource{Results: *results, Regions: *regions, Year: *year}
	m.Config = ReplayConfig{Speed: *speed, Night: Duration(*night), Seed: *seed, Batch: *batch, Partial: *partial, Corrections: *corrections}
	if err := m.Config.validate("replay"); err != nil {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "replay."))
	}
	if *intake == "" {
		return fmt.Errorf("intake: required, e.g. --intake nh-1=http://127.0.0.1:8081,nh-2=http://127.0.0.1:8082")
	}
	m.Intake = map[tally.RegionID]string{}
	for _, kv := range strings.Split(*intake, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" || !strings.HasPrefix(v, "http") {
			return fmt.Errorf("intake: %q is not region=http://host:port", kv)
		}
		m.Intake[tally.RegionID(k)] = strings.TrimSuffix(v, "/")
	}
	return nil
}

// Run starts the replay in the background; Done is closed when it ends.
func (m *ReplayMain) Run(ctx context.Context) error {
	le, err := loadElection(m.Election)
	if err != nil {
		return fmt.Errorf("election: %w", err)
	}
	for _, r := range le.Election.Regions {
		if m.Intake[r.ID] == "" {
			return fmt.Errorf("intake: no URL for region %q (the election has regions %s)", r.ID, regionList(le.Election))
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	rp := &Replayer{Election: le.Election, Counts: le.Counts, Intake: m.Intake, Config: m.Config, Progress: m.errOut}
	if m.Keys != "" {
		ok, err := loadOfficeKeys(le.Election, m.Keys)
		if err != nil {
			cancel()
			return err
		}
		rp.Signers = ok.signers
	}
	if m.CA != "" {
		tc, err := TLSFiles{CA: m.CA}.client()
		if err != nil {
			cancel()
			return err
		}
		rp.Client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	go func() {
		defer close(m.done)
		st, err := rp.Run(rctx)
		m.err = err
		summary := map[string]any{
			"reports": st.Reports, "corrections": st.Corrections, "duplicates": st.Duplicates,
			"elapsed_ms": st.Elapsed.Milliseconds(), "reports_per_s": float64(st.Reports) / st.Elapsed.Seconds(),
		}
		if err != nil {
			summary["error"] = err.Error()
		}
		enc := json.NewEncoder(m.out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(summary) // stdout gone: nothing left to tell
	}()
	return nil
}

// Done is closed when the replay has ended.
func (m *ReplayMain) Done() <-chan struct{} { return m.done }

// Close stops the replay and returns its error.
func (m *ReplayMain) Close() error {
	if m.cancel != nil {
		m.cancel()
		<-m.done
		m.cancel = nil
	}
	return m.err
}

func regionList(e *tally.Election) string {
	var ids []string
	for _, r := range e.Regions {
		ids = append(ids, string(r.ID))
	}
	return strings.Join(ids, ", ")
}

// ElectionMain runs `tally election`: it prints the election definition built
// from a results file, for regions and hub to load with election.file.
type ElectionMain struct {
	Election ElectionSource
	out      io.Writer
	done     chan struct{}
}

// NewElectionMain returns an ElectionMain printing to out.
func NewElectionMain(out io.Writer) *ElectionMain {
	return &ElectionMain{out: out, done: make(chan struct{})}
}

// ParseFlags reads the flags.
func (m *ElectionMain) ParseFlags(args []string, getenv func(string) string) error {
	fs := flagSet("election", m.out)
	results := fs.String("results", "bundled", "results CSV file(s), comma-separated, or \"bundled\"")
	regions := fs.Int("regions", 0, "regions per state (default 2)")
	year := fs.Int("year", 0, "the year (default: the latest in the file)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m.Election = ElectionSource{Results: *results, Regions: *regions, Year: *year}
	return m.Election.validate("election")
}

// Run prints the definition as indented JSON.
func (m *ElectionMain) Run(ctx context.Context) error {
	defer close(m.done)
	le, err := loadElection(m.Election)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(m.out)
	enc.SetIndent("", "  ")
	return enc.Encode(le.Election)
}

// Done is closed once Run has printed the definition.
func (m *ElectionMain) Done() <-chan struct{} { return m.done }

// Close does nothing: Run did all the work.
func (m *ElectionMain) Close() error { return nil }
