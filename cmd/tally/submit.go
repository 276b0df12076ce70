package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tallyvote/tally"
)

// SubmitMain runs `tally submit`: an office signs reports with its key and
// posts them to its region's intake. It prints the intake's answer and
// fails on any refusal.
type SubmitMain struct {
	KeyFile, KeyEnv string
	Office          string
	Intake          string
	Region          tally.RegionID
	Report, CSV     string
	CA              string

	getenv   func(string) string
	out, log io.Writer
	done     chan struct{}
	client   *http.Client
}

// NewSubmitMain returns a SubmitMain printing the answer to out.
func NewSubmitMain(out, log io.Writer) *SubmitMain {
	return &SubmitMain{out: out, log: log, done: make(chan struct{})}
}

// ParseFlags reads the flags.
func (m *SubmitMain) ParseFlags(args []string, getenv func(string) string) error {
	fs := flagSet("submit", m.log)
	fs.StringVar(&m.KeyFile, "key", "", "the office's seed file (tally keys), mode 0600")
	fs.StringVar(&m.KeyEnv, "key-env", "", "name of an environment variable holding the office's seed, instead of --key")
	fs.StringVar(&m.Office, "office", "", "the office id (default: the key file's name without .nk)")
	fs.StringVar(&m.Intake, "intake", "", "the region's intake base URL, e.g. https://nh-1.example:8081 (required)")
	region := fs.String("region", "", "the region, for reports that do not name it (required with --csv)")
	fs.StringVar(&m.Report, "report", "", "a JSON file: one report, an array, or {\"reports\": [...]}")
	fs.StringVar(&m.CSV, "csv", "", "a CSV file: precinct,contest,candidate,votes,complete; consecutive lines of a precinct and contest make one report")
	fs.StringVar(&m.CA, "ca", "", "PEM file of CAs to trust for an https intake")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m.Region, m.getenv = tally.RegionID(*region), getenv
	switch {
	case (m.KeyFile == "") == (m.KeyEnv == ""):
		return fmt.Errorf("submit: set --key FILE or --key-env VAR")
	case m.Intake == "":
		return fmt.Errorf("submit: --intake required")
	case (m.Report == "") == (m.CSV == ""):
		return fmt.Errorf("submit: set --report FILE.json or --csv FILE")
	case m.CSV != "" && m.Region == "":
		return fmt.Errorf("submit: --region required with --csv")
	}
	if m.Office == "" && m.KeyFile != "" {
		m.Office = strings.TrimSuffix(filepath.Base(m.KeyFile), ".nk")
	}
	if m.Office == "" {
		return fmt.Errorf("submit: --office required with --key-env")
	}
	return nil
}

// Run signs and posts the reports.
func (m *SubmitMain) Run(ctx context.Context) error {
	defer close(m.done)
	var s signer
	s.office = m.Office
	var err error
	if m.KeyFile != "" {
		s.key, err = readSeed(m.KeyFile)
	} else {
		s.key, err = tally.ParseSeed(m.getenv(m.KeyEnv))
		if err != nil {
			err = fmt.Errorf("%s: %s", m.KeyEnv, tally.ErrorMessage(err))
		}
	}
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	var reps []*tally.Report
	if m.CSV != "" {
		f, err := os.Open(m.CSV)
		if err != nil {
			return err
		}
		reps, err = tally.ReadReportsCSV(f, m.Region)
		f.Close()
		if err != nil {
			return err
		}
	} else {
		b, err := os.ReadFile(m.Report)
		if err != nil {
			return err
		}
		if reps, err = tally.DecodeReports(b, 0); err != nil {
			return err
		}
	}
	now := time.Now()
	for i, r := range reps {
		if r.Region == "" {
			r.Region = m.Region
		}
		if r.Region == "" {
			return fmt.Errorf("reports[%d]: region: not set; use --region", i)
		}
		if err := s.sign(r, now); err != nil {
			return fmt.Errorf("reports[%d]: sign: %w", i, err)
		}
	}
	if m.client == nil {
		tc, err := TLSFiles{CA: m.CA}.client()
		if err != nil {
			return err
		}
		m.client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	}
	var all []json.RawMessage
	for start := 0; start < len(reps); start += 5000 {
		res, err := m.post(ctx, reps[start:min(start+5000, len(reps))])
		if err != nil {
			return err
		}
		all = append(all, res...)
	}
	enc := json.NewEncoder(m.out)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"results": all})
}

func (m *SubmitMain) post(ctx context.Context, reps []*tally.Report) ([]json.RawMessage, error) {
	body, err := json.Marshal(reps)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(m.Intake, "/")+"/api/v1/reports", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
			return nil, fmt.Errorf("intake: %s: %s: %s", resp.Status, e.Error.Code, e.Error.Message)
		}
		return nil, fmt.Errorf("intake: %s: %.200s", resp.Status, b)
	}
	var ok struct {
		Results []json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(b, &ok); err != nil {
		return nil, fmt.Errorf("intake: answer: %v", err)
	}
	return ok.Results, nil
}

// Done is closed once Run has finished.
func (m *SubmitMain) Done() <-chan struct{} { return m.done }

// Close does nothing.
func (m *SubmitMain) Close() error { return nil }
