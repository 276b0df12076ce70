package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/regional"
)

// VerifyMain runs `tally verify`: it reads a region's stored events (its
// RESULTS stream, or the hub's mirror of it) and checks that every one
// carries a valid signature of an office allowed to send it, using the
// offices of the region's config. It prints the audit and fails when an
// event does not pass.
type VerifyMain struct {
	Config RegionConfig
	URL    string
	Domain string
	Stream string
	User   string

	password string
	ca       string
	out      io.Writer
	done     chan struct{}
}

// NewVerifyMain returns a VerifyMain printing to out.
func NewVerifyMain(out io.Writer) *VerifyMain {
	return &VerifyMain{Config: DefaultRegionConfig(), out: out, done: make(chan struct{})}
}

// ParseFlags reads the region config (for the election and the offices)
// and the flags. The NATS password comes from TALLY_NATS_PASSWORD.
func (m *VerifyMain) ParseFlags(args []string, getenv func(string) string) error {
	fs := flagSet("verify", m.out)
	configPath := fs.String("config", "", "the region's config file, with its offices (required)")
	fs.StringVar(&m.URL, "nats", "", "NATS URL of the region, or of the hub with --stream MIRROR_<region> (default: the config's embedded server)")
	fs.StringVar(&m.Domain, "domain", "", "JetStream domain (default: the region id; \"hub\" for a hub mirror)")
	fs.StringVar(&m.Stream, "stream", tally.ResultsStream, "the stream to check")
	fs.StringVar(&m.User, "user", "tally-node", "NATS user; its password comes from TALLY_NATS_PASSWORD")
	fs.StringVar(&m.ca, "ca", "", "PEM file of CAs to trust for a TLS NATS port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *configPath == "" {
		return fmt.Errorf("verify: --config required: the region's config, which lists its offices")
	}
	if err := loadConfigFile(*configPath, &m.Config); err != nil {
		return err
	}
	if err := m.Config.Validate(); err != nil {
		return err
	}
	if err := m.Config.loadOffices(); err != nil {
		return err
	}
	if len(m.Config.Offices) == 0 {
		return fmt.Errorf("verify: the config lists no offices")
	}
	m.password = getenv("TALLY_NATS_PASSWORD")
	if m.URL == "" {
		m.URL = fmt.Sprintf("nats://%s:%d", m.Config.NATS.Host, m.Config.NATS.Port)
	}
	if m.Domain == "" {
		m.Domain = m.Config.Region
	}
	return nil
}

// Run reads the stream and prints the audit.
func (m *VerifyMain) Run(ctx context.Context) error {
	defer close(m.done)
	le, err := loadElection(m.Config.Election)
	if err != nil {
		return fmt.Errorf("election: %w", err)
	}
	offs, err := tally.NewOffices(le.Election, tally.RegionID(m.Config.Region), m.Config.Offices)
	if err != nil {
		return err
	}
	opts := []nats.Option{nats.Name("tally-verify")}
	if m.password != "" {
		opts = append(opts, nats.UserInfo(m.User, m.password))
	}
	if m.ca != "" {
		tc, err := TLSFiles{CA: m.ca}.client()
		if err != nil {
			return err
		}
		opts = append(opts, nats.Secure(tc))
	}
	nc, err := nats.Connect(m.URL, opts...)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, m.Domain)
	if err != nil {
		return err
	}
	audit, err := regional.Verify(ctx, js, m.Stream, offs)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(m.out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(audit); err != nil {
		return err
	}
	if len(audit.Problems) > 0 {
		return fmt.Errorf("verify: %d of %d events fail", len(audit.Problems), audit.Events)
	}
	return nil
}

// Done is closed once Run has finished.
func (m *VerifyMain) Done() <-chan struct{} { return m.done }

// Close does nothing.
func (m *VerifyMain) Close() error { return nil }
