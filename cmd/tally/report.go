package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/tallyvote/tally"
)

// ReportMain runs `tally report`: the canvass report of the election, or of
// one contest, recomputed from the hub's mirrors (or an event log) with the
// hub's audit records and the projector's calls, in HTML, CSV or JSON (see
// tally.BuildCanvass), or the results as a NIST SP 1500-100 v2 CDF file.
type ReportMain struct {
	Source    eventSource
	Contest   string
	Format    string // html, csv, json or cdf
	Out       string
	Offices   string
	Certified bool
	Issuer    string
	IssuerAbb string

	out  io.Writer
	now  func() time.Time
	done chan struct{}
}

// NewReportMain returns a ReportMain writing to out unless --out is set.
func NewReportMain(out io.Writer) *ReportMain {
	return &ReportMain{out: out, now: time.Now, done: make(chan struct{})}
}

// ParseFlags reads the flags, the config file and the environment.
func (m *ReportMain) ParseFlags(args []string, getenv func(string) string) error {
	fs := flagSet("report", m.out)
	apply := m.Source.flags(fs)
	fs.StringVar(&m.Contest, "contest", "", "report this contest only (default: the whole election)")
	fs.StringVar(&m.Format, "format", "html", "html (printable), csv, json, or cdf (NIST SP 1500-100 v2 JSON)")
	fs.StringVar(&m.Out, "out", "", "file to write (default: standard output)")
	fs.StringVar(&m.Offices, "offices", "", "offices.json of every region (tally keys --counties): check each signed report's office and key")
	fs.BoolVar(&m.Certified, "certified", false, "with --format cdf: mark the results certified (refused unless complete and reconciled)")
	fs.StringVar(&m.Issuer, "issuer", "Tally", "with --format cdf: the authority issuing the results")
	fs.StringVar(&m.IssuerAbb, "issuer-abbreviation", "", "with --format cdf: its abbreviation (default: the issuer)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := apply(getenv); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	switch m.Format {
	case "html", "csv", "json":
		if m.Certified {
			return fmt.Errorf("report: --certified applies to --format cdf")
		}
	case "cdf":
		if m.Contest != "" {
			return fmt.Errorf("report: --format cdf exports every contest; drop --contest")
		}
	default:
		return fmt.Errorf("report: --format: want html, csv, json or cdf, got %q", m.Format)
	}
	if m.Source.Region != "" {
		return fmt.Errorf("report: --region: a canvass covers every region; use --contest to narrow it")
	}
	return nil
}

// Run reads the events and writes the report.
func (m *ReportMain) Run(ctx context.Context) error {
	defer close(m.done)
	l, _, _, err := m.Source.read(ctx, false)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	lists := m.Source.offices
	if m.Offices != "" {
		if lists, err = readOffices(m.Offices); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	offices, err := resolveOffices(l.Election, lists)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	c, err := tally.BuildCanvass(tally.CanvassInput{
		Election: l.Election, Contest: tally.ContestID(m.Contest),
		Events: l.Events, Audit: l.Audit, Calls: l.Calls,
		Verify:    tally.VerifyOptions{Offices: offices, RequireSignatures: len(offices) > 0, LastSeq: lastSeqs(l)},
		Generated: m.now(), Source: l.Header.Source,
	})
	if err != nil {
		return fmt.Errorf("report: %s", tally.ErrorMessage(err))
	}
	var write func(io.Writer) error
	switch m.Format {
	case "html":
		write = c.WriteHTML
	case "csv":
		write = c.WriteCSV
	case "json":
		write = func(w io.Writer) error { return writeJSON(w, c) }
	case "cdf":
		status, err := c.CDFStatus(m.Certified)
		if err != nil {
			return fmt.Errorf("report: %s", tally.ErrorMessage(err))
		}
		cdf, err := c.Verification().Totals().CDF(tally.CDFOptions{
			Issuer: m.Issuer, IssuerAbbreviation: m.IssuerAbb, Generated: c.Generated, Status: status,
		})
		if err != nil {
			return fmt.Errorf("report: %s", tally.ErrorMessage(err))
		}
		write = func(w io.Writer) error { return writeJSON(w, cdf) }
	}
	if err := writeOut(m.Out, m.out, write); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// Done is closed once Run has finished.
func (m *ReportMain) Done() <-chan struct{} { return m.done }

// Close does nothing: Run closes what it opens.
func (m *ReportMain) Close() error { return nil }
