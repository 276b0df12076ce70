package main

import (
	"context"
	"fmt"
	"io"
)

// ExportMain runs `tally export`: it writes every stored message of the
// hub's mirrors of every region (or of one region's stream), with the hub's
// audit records and calls and the election definition, as an event log
// (JSON Lines, see tally.EventLogWriter), so that tally verify and tally
// report can run offline, on the log alone.
type ExportMain struct {
	Source eventSource
	Out    string

	out, errOut io.Writer
	apply       func(func(string) string) error
	done        chan struct{}
}

// NewExportMain returns an ExportMain writing the log to out (unless --out
// is set) and its summary to errOut.
func NewExportMain(out, errOut io.Writer) *ExportMain {
	return &ExportMain{out: out, errOut: errOut, done: make(chan struct{})}
}

// ParseFlags reads the flags, the config file and the environment.
func (m *ExportMain) ParseFlags(args []string, getenv func(string) string) error {
	fs := flagSet("export", m.errOut)
	apply := m.Source.flags(fs)
	fs.StringVar(&m.Out, "out", "", "file to write the log to (default: standard output)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := apply(getenv); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if m.Source.Log != "" {
		return fmt.Errorf("export: --log: export reads NATS; copy the log instead")
	}
	return nil
}

// Run reads the streams and writes the log.
func (m *ExportMain) Run(ctx context.Context) error {
	defer close(m.done)
	l, _, _, err := m.Source.read(ctx, false)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	err = writeOut(m.Out, m.out, func(w io.Writer) error {
		_, err := l.WriteTo(w)
		return err
	})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	for _, s := range l.Header.Streams {
		fmt.Fprintf(m.errOut, "exported %s: %d messages, seq %d to %d\n", s.Stream, s.Messages, s.FirstSeq, s.LastSeq)
	}
	if len(l.Header.Streams) == 0 {
		fmt.Fprintf(m.errOut, "exported nothing: no stream of %s found\n", l.Header.Source)
	}
	return nil
}

// Done is closed once Run has finished.
func (m *ExportMain) Done() <-chan struct{} { return m.done }

// Close does nothing: Run closes what it opens.
func (m *ExportMain) Close() error { return nil }
