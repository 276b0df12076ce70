package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/gateway"
	"github.com/tallyvote/tally/projector"
	"github.com/tallyvote/tally/reconciler"
)

// HubMain runs `tally hub`: the reconciler with its embedded (or external)
// NATS, the projector when the election has a baseline, and a gateway
// reading the national state from it.
type HubMain struct {
	Config HubConfig
	Logger zerolog.Logger

	logOut io.Writer
	rec    *reconciler.Reconciler
	nc     *nats.Conn
	gw     *gateway.Gateway
	proj   *projector.Service
	pnc    *nats.Conn
}

// NewHubMain returns a HubMain with default config, logging to w.
func NewHubMain(w io.Writer) *HubMain {
	return &HubMain{Config: DefaultHubConfig(), logOut: w, Logger: zerolog.Nop()}
}

// ParseFlags reads the config file, the environment and the flags, in that
// order of precedence, and validates the result.
func (m *HubMain) ParseFlags(args []string, getenv func(string) string) error {
	fs := flagSet("hub", m.logOut)
	configPath := fs.String("config", "", "config file (YAML); see configs/hub.yaml")
	c := &m.Config
	electionSet := electionFlags(fs, &c.Election)
	httpAddr := fs.String("http", "", "dashboard and API listen address")
	natsURL := fs.String("nats-url", "", "external NATS URL (default: embedded server)")
	natsPort := fs.Int("nats-port", 0, "embedded NATS client port")
	leafPort := fs.Int("leaf-port", 0, "embedded NATS leaf-node port, for regions")
	store := fs.String("store", "", "JetStream store directory")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return layerConfig(fs, *configPath, c, getenv, map[string]func(string) error{
		"TALLY_NATS_URL":       setString(&c.NATS.URL),
		"TALLY_NATS_STORE_DIR": setString(&c.NATS.StoreDir),
		"TALLY_NATS_PORT":      setInt(&c.NATS.Port),
		"TALLY_NATS_LEAF_PORT": setInt(&c.NATS.LeafPort),
		"TALLY_NATS_REPLICAS":  setInt(&c.NATS.Replicas),
		"TALLY_HTTP_ADDR":      setString(&c.HTTP.Addr),
		"TALLY_LOG_LEVEL":      setString(&c.Log.Level),
		// Secrets: from the environment or files only.
		"TALLY_ADMIN_TOKEN":        setString(&c.HTTP.AdminToken),
		"TALLY_NATS_PASSWORD":      setString(&c.NATS.Password),
		"TALLY_NATS_LEAF_PASSWORD": setString(&c.NATS.LeafPassword),
	}, electionSet, map[string]func(){
		"http":      func() { c.HTTP.Addr = *httpAddr },
		"nats-url":  func() { c.NATS.URL = *natsURL },
		"nats-port": func() { c.NATS.Port = *natsPort },
		"leaf-port": func() { c.NATS.LeafPort = *leafPort },
		"store":     func() { c.NATS.StoreDir = *store },
		"log-level": func() { c.Log.Level = *logLevel },
	})
}

// Run loads the election and opens the reconciler, the gateway and the
// projector.
func (m *HubMain) Run(ctx context.Context) error {
	if m.logOut != nil {
		m.Logger = newLogger(m.logOut, m.Config.Log, "hub")
	}
	le, err := loadElection(m.Config.Election)
	if err != nil {
		return fmt.Errorf("election: %w", err)
	}
	c := m.Config
	nc := reconciler.NATSConfig{
		URL: c.NATS.URL, Replicas: c.NATS.Replicas, Host: c.NATS.Host, Port: c.NATS.Port, LeafPort: c.NATS.LeafPort, StoreDir: c.NATS.StoreDir,
		LeafUser: c.NATS.LeafUser, LeafPassword: c.NATS.LeafPassword,
	}
	if c.NATS.PasswordFile != "" || c.NATS.Password != "" || c.NATS.URL != "" {
		nc.ClientUser, nc.ClientPassword = c.NATS.User, c.NATS.Password
	}
	gc := gateway.Config{Addr: c.HTTP.Addr, AdminToken: c.HTTP.AdminToken, RateLimit: c.HTTP.RateLimit, RateBurst: c.HTTP.RateBurst,
		Metrics: newRegistry()}
	clientTLS, err := loadHubSecrets(&c, &nc, &gc)
	if err != nil {
		return err
	}
	rec, gw, hnc, err := openHub(ctx, le.Election, reconciler.Config{
		Election:         le.Election,
		NATS:             nc,
		PublishInterval:  time.Duration(c.PublishInterval),
		OfflineAfter:     time.Duration(c.OfflineAfter),
		SnapshotInterval: time.Duration(c.SnapshotInterval),
		CatchUpTimeout:   time.Duration(c.CatchUpTimeout),
		Logger:           m.Logger,
	}, gc, m.Logger, clientTLS...)
	if err != nil {
		return err
	}
	m.rec, m.gw, m.nc = rec, gw, hnc
	proj, pnc, off, err := openProjector(ctx, le, c.Projector, rec.ClientURL(), append(rec.ClientOptions(), clientTLS...), m.Logger)
	if err != nil {
		return err // Close closes the hub
	}
	m.proj, m.pnc = proj, pnc
	if err := registerProjector(gc.Metrics, proj); err != nil {
		return err // Close closes the hub and the projector
	}
	if off != "" {
		m.Logger.Info().Str("reason", off).Msg("projections off")
	}
	ev := m.Logger.Info().Str("dashboard", "http://"+gw.Addr()+"/").Str("leaf", rec.LeafURL()).
		Str("nats", rec.ClientURL()).Bool("projections", proj != nil).
		Bool("admin_api", gc.AdminToken != "").Str("leaf_user", nc.LeafUser).Str("leaf_password", redacted(nc.LeafPassword)).
		Bool("nats_tls", nc.TLS != nil).Bool("leaf_tls", nc.LeafTLS != nil).Bool("http_tls", gc.TLS != nil).
		Float64("rate_limit", gc.RateLimit)
	if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		ev = ev.Int64("memory_limit", limit) // GOMEMLIMIT
	}
	ev.Msg("hub opened")
	return nil
}

// loadHubSecrets reads the password and token files and the TLS files of c.
// It returns the options a client of the hub's NATS needs for its TLS.
func loadHubSecrets(c *HubConfig, nc *reconciler.NATSConfig, gc *gateway.Config) ([]nats.Option, error) {
	var err error
	if nc.LeafPassword == "" {
		if nc.LeafPassword, err = readSecret(c.NATS.LeafPasswordFile); err != nil {
			return nil, fmt.Errorf("nats.leaf_password_file: %w", err)
		}
		if nc.LeafPassword == "" {
			nc.LeafUser = "" // a random password, for in-process regions only
		}
	}
	if nc.ClientUser != "" && nc.ClientPassword == "" {
		if nc.ClientPassword, err = readSecret(c.NATS.PasswordFile); err != nil {
			return nil, fmt.Errorf("nats.password_file: %w", err)
		}
	}
	if gc.AdminToken == "" {
		if gc.AdminToken, err = readSecret(c.HTTP.AdminTokenFile); err != nil {
			return nil, fmt.Errorf("http.admin_token_file: %w", err)
		}
	}
	if nc.TLS, err = c.NATS.TLS.server(); err != nil {
		return nil, fmt.Errorf("nats.tls: %w", err)
	}
	if nc.LeafTLS, err = c.NATS.LeafTLS.server(); err != nil {
		return nil, fmt.Errorf("nats.leaf_tls: %w", err)
	}
	if gc.TLS, err = c.HTTP.TLS.server(); err != nil {
		return nil, fmt.Errorf("http.tls: %w", err)
	}
	if nc.TLS == nil && c.NATS.TLS.CA == "" {
		return nil, nil
	}
	tc, err := c.NATS.TLS.client()
	if err != nil {
		return nil, fmt.Errorf("nats.tls: %w", err)
	}
	return []nats.Option{nats.Secure(tc)}, nil
}

// openHub opens a reconciler and a gateway connected to it. On error,
// whatever was opened is closed.
// gc sets the gateway's address and admin token; its election and logger
// are e and l.
// natsOpts are added to the gateway's connection options (TLS).
// The reconciler registers its metrics on gc.Metrics (a new registry when
// nil), which the gateway serves on /metrics, and the gateway's /readyz
// asks the reconciler about the regions.
func openHub(ctx context.Context, e *tally.Election, rc reconciler.Config, gc gateway.Config, l zerolog.Logger, natsOpts ...nats.Option) (*reconciler.Reconciler, *gateway.Gateway, *nats.Conn, error) {
	if gc.Metrics == nil {
		gc.Metrics = newRegistry()
	}
	rc.Metrics = gc.Metrics
	rec, err := reconciler.New(rc)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := rec.Open(ctx); err != nil {
		return nil, nil, nil, fmt.Errorf("open reconciler: %w", err)
	}
	opts := append([]nats.Option{nats.Name("tally-gateway"), nats.MaxReconnects(-1)}, rec.ClientOptions()...)
	nc, err := nats.Connect(rec.ClientURL(), append(opts, natsOpts...)...)
	if err != nil {
		return nil, nil, nil, errors.Join(fmt.Errorf("connect gateway to hub: %w", err), rec.Close())
	}
	gc.Election, gc.Logger, gc.Health = e, l, rec
	gw, err := gateway.New(gc, nc)
	if err == nil {
		err = gw.Open(ctx)
	}
	if err != nil {
		nc.Close()
		return nil, nil, nil, errors.Join(fmt.Errorf("open gateway: %w", err), rec.Close())
	}
	return rec, gw, nc, nil
}

// Close closes the projector, the gateway, its connection and the
// reconciler, in that order. It is safe to call more than once.
func (m *HubMain) Close() error {
	err := errors.Join(closeProjector(m.proj, m.pnc), closeHub(m.rec, m.gw, m.nc))
	m.proj, m.pnc, m.rec, m.gw, m.nc = nil, nil, nil, nil, nil
	return err
}

func closeHub(rec *reconciler.Reconciler, gw *gateway.Gateway, nc *nats.Conn) error {
	var errs []error
	if gw != nil {
		errs = append(errs, gw.Close())
	}
	if nc != nil {
		errs = append(errs, nc.Drain())
	}
	if rec != nil {
		errs = append(errs, rec.Close())
	}
	return errors.Join(errs...)
}
