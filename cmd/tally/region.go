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
		"TALLY_HTTP_ADDR":      setString(&c.HTTP.Addr),
		"TALLY_LOG_LEVEL":      setString(&c.Log.Level),
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
	node, err := regional.New(regional.Config{
		Region:   tally.RegionID(c.Region),
		Election: le.Election,
		NATS: regional.NATSConfig{
			URL: c.NATS.URL, Domain: c.NATS.Domain, Host: c.NATS.Host, Port: c.NATS.Port,
			StoreDir: c.NATS.StoreDir, HubURL: c.NATS.Hub,
		},
		HTTP:            regional.HTTPConfig{Addr: c.HTTP.Addr, MaxBody: c.HTTP.MaxBody, MaxBatch: c.HTTP.MaxBatch},
		DuplicateWindow: time.Duration(c.DuplicateWindow),
		Logger:          m.Logger,
	})
	if err != nil {
		return err
	}
	if err := node.Open(ctx); err != nil {
		return err
	}
	m.node = node
	m.Logger.Info().Str("intake", "http://"+node.HTTPAddr()).Str("nats", node.ClientURL()).
		Str("hub", c.NATS.Hub).Msg("region node opened")
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
