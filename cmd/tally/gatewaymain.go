package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally/gateway"
)

// GatewayConfig configures `tally gateway`: a gateway replica that serves
// the dashboard and the API from the national state a hub keeps in its
// JetStream (the KV bucket TALLY_NATIONAL), without a reconciler of its own.
type GatewayConfig struct {
	Election ElectionSource `json:"election"`
	NATS     struct {
		// URL is the hub's client URL (comma-separated for a cluster).
		URL string `json:"url"`
		// User is the hub's client user; its password comes from
		// PasswordFile or TALLY_NATS_PASSWORD, never the config.
		User         string   `json:"user"`
		PasswordFile string   `json:"password_file,omitempty"`
		Password     string   `json:"-"`
		TLS          TLSFiles `json:"tls"` // ca: what to trust; cert and key: a client certificate
	} `json:"nats"`
	HTTP struct {
		Addr           string   `json:"addr"`
		AdminTokenFile string   `json:"admin_token_file,omitempty"`
		AdminToken     string   `json:"-"`
		TLS            TLSFiles `json:"tls"`
		RateLimit      float64  `json:"rate_limit"` // requests per second per client IP; -1 = no limit
		RateBurst      int      `json:"rate_burst"`
	} `json:"http"`
	Log LogConfig `json:"log"`
}

// DefaultGatewayConfig returns the defaults of `tally gateway`.
func DefaultGatewayConfig() GatewayConfig {
	var c GatewayConfig
	c.NATS.URL = "nats://127.0.0.1:4222"
	c.NATS.User = "hub"
	c.HTTP.Addr = "127.0.0.1:8090"
	c.HTTP.RateLimit = 50
	c.HTTP.RateBurst = 200
	c.Log = LogConfig{Level: "info", Format: "auto"}
	return c
}

// Validate checks every setting and names the first wrong one.
func (c *GatewayConfig) Validate() error {
	if err := c.Election.validate("election"); err != nil {
		return err
	}
	if strings.TrimSpace(c.NATS.URL) == "" {
		return fmt.Errorf("nats.url: required: the hub's client URL")
	}
	if c.NATS.User == "" {
		return fmt.Errorf("nats.user: required: the hub's client user")
	}
	if c.HTTP.Addr == "" {
		return fmt.Errorf("http.addr: required")
	}
	if c.HTTP.RateLimit == 0 || c.HTTP.RateLimit < -1 || (c.HTTP.RateLimit > 0 && c.HTTP.RateBurst <= 0) {
		return fmt.Errorf("http.rate_limit, http.rate_burst: must be positive (rate_limit -1 = no limit)")
	}
	for _, t := range []struct {
		f string
		v TLSFiles
	}{{"nats.tls", c.NATS.TLS}, {"http.tls", c.HTTP.TLS}} {
		if err := t.v.validate(t.f); err != nil {
			return err
		}
	}
	return c.Log.validate()
}

// GatewayMain runs `tally gateway`.
type GatewayMain struct {
	Config GatewayConfig
	Logger zerolog.Logger

	logOut io.Writer
	nc     *nats.Conn
	gw     *gateway.Gateway
}

// NewGatewayMain returns a GatewayMain with default config, logging to w.
func NewGatewayMain(w io.Writer) *GatewayMain {
	return &GatewayMain{Config: DefaultGatewayConfig(), logOut: w, Logger: zerolog.Nop()}
}

// ParseFlags reads the config file, the environment and the flags, in that
// order of precedence, and validates the result.
func (m *GatewayMain) ParseFlags(args []string, getenv func(string) string) error {
	fs := flagSet("gateway", m.logOut)
	configPath := fs.String("config", "", "config file (YAML); see configs/gateway.yaml")
	c := &m.Config
	electionSet := electionFlags(fs, &c.Election)
	httpAddr := fs.String("http", "", "dashboard and API listen address")
	natsURL := fs.String("nats-url", "", "the hub's client URL (comma-separated for a cluster)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return layerConfig(fs, *configPath, c, getenv, map[string]func(string) error{
		"TALLY_NATS_URL":  setString(&c.NATS.URL),
		"TALLY_HTTP_ADDR": setString(&c.HTTP.Addr),
		"TALLY_LOG_LEVEL": setString(&c.Log.Level),
		// Secrets: from the environment or files only.
		"TALLY_ADMIN_TOKEN":   setString(&c.HTTP.AdminToken),
		"TALLY_NATS_PASSWORD": setString(&c.NATS.Password),
	}, electionSet, map[string]func(){
		"http":      func() { c.HTTP.Addr = *httpAddr },
		"nats-url":  func() { c.NATS.URL = *natsURL },
		"log-level": func() { c.Log.Level = *logLevel },
	})
}

// Run loads the election, connects to the hub and opens the gateway.
func (m *GatewayMain) Run(ctx context.Context) error {
	if m.logOut != nil {
		m.Logger = newLogger(m.logOut, m.Config.Log, "gateway")
	}
	c := m.Config
	le, err := loadElection(c.Election)
	if err != nil {
		return fmt.Errorf("election: %w", err)
	}
	password := c.NATS.Password
	if password == "" {
		if password, err = readSecret(c.NATS.PasswordFile); err != nil {
			return fmt.Errorf("nats.password_file: %w", err)
		}
	}
	if password == "" {
		return fmt.Errorf("nats.password_file: the hub's client password is required (or TALLY_NATS_PASSWORD)")
	}
	adminToken := c.HTTP.AdminToken
	if adminToken == "" {
		if adminToken, err = readSecret(c.HTTP.AdminTokenFile); err != nil {
			return fmt.Errorf("http.admin_token_file: %w", err)
		}
	}
	httpTLS, err := c.HTTP.TLS.server()
	if err != nil {
		return fmt.Errorf("http.tls: %w", err)
	}
	opts := []nats.Option{nats.Name("tally-gateway"), nats.MaxReconnects(-1), nats.UserInfo(c.NATS.User, password)}
	if c.NATS.TLS.CA != "" || c.NATS.TLS.enabled() {
		tc, err := c.NATS.TLS.client()
		if err != nil {
			return fmt.Errorf("nats.tls: %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	start := time.Now()
	nc, err := nats.Connect(c.NATS.URL, opts...)
	if err != nil {
		return fmt.Errorf("nats.url: connect to the hub at %s: %w", c.NATS.URL, err)
	}
	gw, err := gateway.New(gateway.Config{
		Addr: c.HTTP.Addr, Election: le.Election, Logger: m.Logger.With().Str("component", "gateway").Logger(),
		AdminToken: adminToken, TLS: httpTLS, RateLimit: c.HTTP.RateLimit, RateBurst: c.HTTP.RateBurst,
		Metrics: newRegistry(),
	}, nc)
	if err == nil {
		err = gw.Open(ctx)
	}
	if err != nil {
		nc.Close()
		return fmt.Errorf("open gateway: %w", err)
	}
	m.nc, m.gw = nc, gw
	m.Logger.Info().Str("nats", c.NATS.URL).Str("nats_user", c.NATS.User).Str("nats_password", redacted(password)).
		Str("http", gw.Addr()).Bool("admin_api", adminToken != "").Str("election", le.Election.ID).
		Dur("duration_ms", time.Since(start)).Msg("gateway replica opened")
	return nil
}

// Addr is the gateway's listen address, once Run has returned.
func (m *GatewayMain) Addr() string {
	if m.gw == nil {
		return ""
	}
	return m.gw.Addr()
}

// Close closes the gateway and its connection. It is safe to call more
// than once.
func (m *GatewayMain) Close() error {
	var errs []error
	if m.gw != nil {
		errs = append(errs, m.gw.Close())
	}
	if m.nc != nil {
		errs = append(errs, m.nc.Drain())
	}
	m.gw, m.nc = nil, nil
	return errors.Join(errs...)
}
