package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/reconciler"
)

// VerifyMain runs `tally verify`: from the raw stored events alone — the
// hub's mirrors, one region's stream, or an event log written by tally
// export — it recomputes every total, each region's hash chain and each
// stored checkpoint's comparison, checks that each region's sequences run
// without a gap or a move, checks the signatures of the reports (and the
// offices' right to send them, given the offices), and compares the result
// with the live national state or a canvass report. It prints a summary and
// fails naming the first discrepancy. See tally.Verify.
type VerifyMain struct {
	Source eventSource
	// Offices is an offices.json (tally keys --counties) listing every
	// region's offices; a region config's offices are used too.
	Offices string
	// Against is "live" (the hub's national state), "none", or a canvass
	// report in JSON (tally report --format json); "" means live when
	// reading the hub's mirrors, else none.
	Against string
	// AllowUnsigned accepts unsigned reports of regions with offices.
	AllowUnsigned bool
	JSON          bool

	out  io.Writer
	done chan struct{}
}

// NewVerifyMain returns a VerifyMain printing to out.
func NewVerifyMain(out io.Writer) *VerifyMain {
	return &VerifyMain{out: out, done: make(chan struct{})}
}

// ParseFlags reads the flags, the config file and the environment.
func (m *VerifyMain) ParseFlags(args []string, getenv func(string) string) error {
	fs := flagSet("verify", m.out)
	apply := m.Source.flags(fs)
	fs.StringVar(&m.Offices, "offices", "", "offices.json of every region (tally keys --counties): check each signed report's office and key")
	fs.StringVar(&m.Against, "against", "", "compare with: live (the hub's national state), none, or a canvass report in JSON (default: live when reading the hub, else none)")
	fs.BoolVar(&m.AllowUnsigned, "allow-unsigned", false, "accept unsigned reports of regions whose offices are known")
	fs.BoolVar(&m.JSON, "json", false, "print the whole verification as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := apply(getenv); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if m.Against == "" {
		m.Against = "none"
		if m.Source.hub() {
			m.Against = "live"
		}
	}
	return nil
}

// Run verifies and prints the outcome; it fails when anything differs.
func (m *VerifyMain) Run(ctx context.Context) error {
	defer close(m.done)
	live := m.Against == "live"
	l, nc, js, err := m.Source.read(ctx, live && m.Source.Log == "")
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if nc != nil {
		defer nc.Close()
	}
	e := l.Election
	lists := m.Source.offices
	if m.Offices != "" {
		if lists, err = readOffices(m.Offices); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	offices, err := resolveOffices(e, lists)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	require := len(offices) > 0 && !m.AllowUnsigned
	if m.Source.require != nil && m.Offices == "" {
		require = *m.Source.require && !m.AllowUnsigned
	}
	v := tally.Verify(e, l.Events, tally.VerifyOptions{Offices: offices, RequireSignatures: require, LastSeq: lastSeqs(l)})
	against := "no reference (--against none)"
	switch m.Against {
	case "none":
	case "live":
		if js == nil {
			if nc, js, err = m.Source.connect(); err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			defer nc.Close()
		}
		results, statuses, err := reconciler.NationalState(ctx, js, e)
		if err != nil {
			return fmt.Errorf("verify: national state: %w", err)
		}
		v.CompareResults(results, statuses)
		against = "the live national state at " + m.Source.URL
	default:
		b, err := os.ReadFile(m.Against)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		var c tally.Canvass
		if err := json.Unmarshal(b, &c); err != nil {
			return fmt.Errorf("verify: %s: not a canvass report in JSON: %v", m.Against, err)
		}
		v.CompareCanvass(&c)
		against = "the canvass report " + m.Against
	}
	if m.JSON {
		enc := json.NewEncoder(m.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Source  string `json:"source"`
			Against string `json:"against"`
			*tally.Verification
		}{l.Header.Source, against, v}); err != nil {
			return err
		}
	} else {
		m.summary(v, l.Header.Source, against)
	}
	if d := v.First(); d != nil {
		return fmt.Errorf("verify: %d discrepancies; the first: %s", len(v.Discrepancies)+v.More, d)
	}
	return nil
}

// summary prints the verification for people.
func (m *VerifyMain) summary(v *tally.Verification, source, against string) {
	w := m.out
	fmt.Fprintf(w, "election %s: events from %s\n", v.Election, source)
	for _, r := range v.Regions {
		if r.Messages == 0 {
			fmt.Fprintf(w, "  region %s: no events\n", r.Region)
			continue
		}
		fmt.Fprintf(w, "  region %s: seq %d to %d, %d events (%d reports, %d corrections, %d not valid), %d of %d checkpoints match, last covers seq %d, reconciled %v\n",
			r.Region, r.FirstSeq, r.LastSeq, r.Events, r.Reports, r.Corrections, r.Invalid, r.Matched, r.Checkpoints, r.LastCheckpoint, r.Reconciled)
		fmt.Fprintf(w, "    final hash %s; %d signed reports, %d checked\n", r.Chain.Hex(), r.Signed, r.SignaturesChecked)
	}
	fmt.Fprintf(w, "signatures: %s\n", v.Signatures)
	fmt.Fprintf(w, "compared with %s\n", against)
	if v.OK() {
		fmt.Fprintln(w, "OK: no discrepancy")
		return
	}
	fmt.Fprintf(w, "FAILED: %d discrepancies\n", len(v.Discrepancies)+v.More)
	for i, d := range v.Discrepancies {
		if i == 20 {
			fmt.Fprintf(w, "  … %d more (--json lists them)\n", len(v.Discrepancies)-i+v.More)
			break
		}
		fmt.Fprintf(w, "  %s\n", d)
	}
}

// Done is closed once Run has finished.
func (m *VerifyMain) Done() <-chan struct{} { return m.done }

// Close does nothing: Run closes what it opens.
func (m *VerifyMain) Close() error { return nil }
