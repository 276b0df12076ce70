package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/regional"
)

// RegionMain runs `tally region`: one region node.
type RegionMain struct {
	Config RegionConfig
	Logger zerolog.Logger

	logOut io.Writer
	node   *regional.Node
}

// NewRegionMain returns a RegionMain with default config, logging to w.
func NewRegionMain(w io.Writer) *RegionMain {
	return &RegionMain{Config: DefaultRegionConfig(), logOut: w, Logger: zerolog.Nop()}
}

// ParseFlags reads the config file, the environment and the flags, in that
// order of precedence, and validates the result.
func (m *RegionMain) ParseFlags(args []string, getenv func(string) string) error {
	fs := flagSet("region", m.logOut)
	configPath := fs.String("config", "", "config file (YAML); see configs/region.yaml")
	region := fs.String("region", "", "region id")
	c := &m.Config
	electionSet := electionFlags(fs, &c.Election)
	httpAddr := fs.String("http", "", "intake listen address")
	natsURL := fs.String("nats-url", "", "external NATS URL (default: embedded server)")
	natsPort := fs.Int("nats-port", 0, "embedded NATS client port")
	store := fs.String("store", "", "JetStream store directory")
	hub := fs.String("hub", "", "the hub's leaf-node URL, e.g. nats-leaf://hub.example:7422")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return layerConfig(fs, *configPath, c, getenv, map[string]func(string) error{
		"TALLY_REGION":         setString(&c.Region),
		"TALLY_NATS_URL":       setString(&c.NATS.URL),
		"TALLY_NATS_STORE_DIR": setString(&c.NATS.StoreDir),
		"TALLY_NATS_HUB":       setString(&c.NATS.Hub),
		"TALLY_NATS_PORT":      setInt(&c.NATS.Port),
		"TALLY_NATS_REPLICAS":  setInt(&c.NATS.Replicas),
		"TALLY_NATS_SYNC":      setString(&c.NATS.Sync),
		"TALLY_HTTP_ADDR":      setString(&c.HTTP.Addr),
		"TALLY_LOG_LEVEL":      setString(&c.Log.Level),
		// Secrets: from the environment or files only.
		"TALLY_NATS_HUB_PASSWORD": setString(&c.NATS.HubPassword),
		"TALLY_NATS_PASSWORD":     setString(&c.NATS.Password),
	}, electionSet, map[string]func(){
		"region":    func() { c.Region = *region },
		"http":      func() { c.HTTP.Addr = *httpAddr },
		"nats-url":  func() { c.NATS.URL = *natsURL },
		"nats-port": func() { c.NATS.Port = *natsPort },
		"store":     func() { c.NATS.StoreDir = *store },
		"hub":       func() { c.NATS.Hub = *hub },
		"log-level": func() { c.Log.Level = *logLevel },
	})
}

// Run loads the election and opens the node.
func (m *RegionMain) Run(ctx context.Context) error {
	if m.logOut != nil {
		m.Logger = newLogger(m.logOut, m.Config.Log, "region")
	}
	le, err := loadElection(m.Config.Election)
	if err != nil {
		return fmt.Errorf("election: %w", err)
	}
	if le.Election.Region(tally.RegionID(m.Config.Region)) == nil {
		return fmt.Errorf("region: %q is not a region of election %s", m.Config.Region, le.Election.ID)
	}
	c := m.Config
	require := c.requireSignatures()
	if err := c.loadOffices(); err != nil {
		return err
	}
	nc := regional.NATSConfig{
		URL: c.NATS.URL, Domain: c.NATS.Domain, Replicas: c.NATS.Replicas, Host: c.NATS.Host, Port: c.NATS.Port,
		StoreDir: c.NATS.StoreDir, HubURL: c.NATS.Hub, HubUser: c.NATS.HubUser,
		HubPassword: c.NATS.HubPassword, InternalPassword: c.NATS.Password,
	}
	hc := regional.HTTPConfig{Addr: c.HTTP.Addr, MaxBody: c.HTTP.MaxBody, MaxBatch: c.HTTP.MaxBatch}
	if err := loadRegionSecrets(&c, &nc, &hc); err != nil {
		return err
	}
	if nc.Sync, err = parseSync(c.NATS.Sync); err != nil {
		return fmt.Errorf("nats.sync: %w", err)
	}
	node, err := regional.New(regional.Config{
		Region:             tally.RegionID(c.Region),
		Election:           le.Election,
		NATS:               nc,
		HTTP:               hc,
		DuplicateWindow:    time.Duration(c.DuplicateWindow),
		Offices:            c.Offices,
		RequireSignatures:  require,
		OfficeRate:         c.HTTP.OfficeRate,
		OfficeBurst:        c.HTTP.OfficeBurst,
		CheckpointInterval: time.Duration(c.CheckpointInterval),
		Metrics:            newRegistry(),
		Logger:             m.Logger,
	})
	if err != nil {
		return err
	}
	if err := node.Open(ctx); err != nil {
		return err
	}
	m.node = node
	scheme := "http://"
	if hc.TLS != nil {
		scheme = "https://"
	}
	m.Logger.Info().Str("intake", scheme+node.HTTPAddr()).Str("nats", node.ClientURL()).
		Str("hub", c.NATS.Hub).Str("hub_user", c.NATS.HubUser).Str("hub_password", redacted(nc.HubPassword)).
		Int("offices", len(c.Offices)).Bool("require_signatures", require).
		Str("sync", c.NATS.Sync).Dur("checkpoint_interval", time.Duration(c.CheckpointInterval)).
		Bool("nats_tls", nc.TLS != nil).Bool("hub_tls", nc.HubTLS != nil).Msg("region node opened")
	return nil
}

// parseSync reads nats.sync: "always" (regional.SyncAlways), or a positive
// duration between background fsyncs.
func parseSync(s string) (time.Duration, error) {
	if s == "always" {
		return regional.SyncAlways, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("want \"always\" or a positive duration such as \"1s\", got %q", s)
	}
	return d, nil
}

// loadRegionSecrets reads the password files and the TLS files of c.
func loadRegionSecrets(c *RegionConfig, nc *regional.NATSConfig, hc *regional.HTTPConfig) error {
	var err error
	if nc.HubPassword == "" {
		if nc.HubPassword, err = readSecret(c.NATS.HubPasswordFile); err != nil {
			return fmt.Errorf("nats.hub_password_file: %w", err)
		}
	}
	if c.NATS.HubUser != "" && c.NATS.Hub != "" && nc.HubPassword == "" {
		return fmt.Errorf("nats.hub_user: set its password with nats.hub_password_file or TALLY_NATS_HUB_PASSWORD")
	}
	if nc.InternalPassword == "" {
		if nc.InternalPassword, err = readSecret(c.NATS.PasswordFile); err != nil {
			return fmt.Errorf("nats.password_file: %w", err)
		}
	}
	if nc.TLS, err = c.NATS.TLS.server(); err != nil {
		return fmt.Errorf("nats.tls: %w", err)
	}
	if hc.TLS, err = c.HTTP.TLS.server(); err != nil {
		return fmt.Errorf("http.tls: %w", err)
	}
	if t := c.NATS.HubTLS; t.CA != "" || t.enabled() {
		if nc.HubTLS, err = t.client(); err != nil {
			return fmt.Errorf("nats.hub_tls: %w", err)
		}
	}
	return nil
}

// Close closes the node.
func (m *RegionMain) Close() error {
	if m.node == nil {
		return nil
	}
	err := m.node.Close()
	m.node = nil
	return err
}
