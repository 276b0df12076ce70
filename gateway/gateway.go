// Package gateway serves the national results to viewers: a JSON API, a live
// stream of updates (Server-Sent Events) and the dashboard of package web.
//
// The gateway is stateless: it watches the hub's national key-value bucket
// (tally.NationalBucket), keeps the latest value of every key in memory as
// pre-encoded responses, and fans each change out to the connected viewers.
// A contest's response merges its result with the projector's projection
// and call for it. Precinct audit trails are read on demand from the hub's
// mirror streams. The admin API, enabled by a token, passes manual calls to
// the projector as NATS requests.
// Any number of gateways can serve the same hub.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
)

// Defaults for the zero values of Config.
const (
	DefaultSSEBuffer    = 10000
	DefaultClientBuffer = 256
	DefaultAdminTimeout = 5 * time.Second
)

const (
	shutdownTimeout = 5 * time.Second
	// readTimeout bounds reading a request, its headers and its body
	// alike. The gateway's requests are GETs and small POSTs; with one
	// bound for both, net/http sets one read deadline per request, not
	// two (a timer update each, a few percent of a cached read's CPU).
	readTimeout      = 10 * time.Second
	writeTimeout     = 30 * time.Second // not for the event stream, which clears it
	idleTimeout      = 120 * time.Second
	auditTimeout     = 5 * time.Second // bound on reading one precinct's audit trail
	auditConcurrency = 64              // audit trails read at once; more get 503
)

// Config configures a Gateway.
type Config struct {
	// Addr is the listen address, e.g. ":8080"; "127.0.0.1:0" picks a port.
	Addr string
	// Election is the election served, validated by the caller. It answers
	// /api/v1/election and maps precincts to their regions.
	Election *tally.Election
	// Logger receives the gateway's logs; request logs carry request_id.
	Logger zerolog.Logger
	// SSEBuffer is how many recent events are kept so a reconnecting viewer
	// can resume with Last-Event-ID; 0 means DefaultSSEBuffer.
	SSEBuffer int
	// ClientBuffer is how many sends (an event, or the events that
	// arrived together) may be queued for one viewer before it is
	// disconnected as too slow; 0 means DefaultClientBuffer.
	ClientBuffer int
	// AdminToken enables the admin API (POST /api/v1/admin/calls) for
	// requests bearing it (Authorization: Bearer <token>); empty disables
	// it. It is a secret: never log it.
	AdminToken string
	// AdminTimeout bounds the wait for the projector's answer to a manual
	// call; 0 means DefaultAdminTimeout.
	AdminTimeout time.Duration
	// TLS, when set, serves HTTPS.
	TLS *tls.Config
	// RateLimit is each client IP's request rate (per second) and
	// RateBurst its burst; 0 means DefaultRateLimit and DefaultRateBurst,
	// a negative RateLimit no limit. See rateLimiter.
	RateLimit float64
	RateBurst int
	// Links, when set, lets the admin API take a region's link to the hub
	// down and up again (POST /api/v1/admin/regions/{id}/link): tally demo
	// sets it to show an outage. Nil in production: the endpoint answers
	// 404.
	Links RegionLinks
	// Health, when set, is asked by /readyz once the bucket is loaded:
	// while it names regions, /readyz answers 503 naming them and why.
	// tally hub sets it to the reconciler. Nil: ready once loaded.
	Health RegionHealth
	// Metrics is the registry the gateway registers its metrics on and
	// that GET /metrics serves; nil means a registry of its own. tally hub
	// passes the one its reconciler and projector register on. One
	// gateway per registry: a second one's metrics collide and New fails.
	Metrics *prometheus.Registry
}

// RegionHealth is the hub's view of its regions' readiness.
type RegionHealth interface {
	// Unready returns why each region that is not ready is not (nil when
	// all are): no mirror yet, or offline past the hub's bound.
	Unready() map[tally.RegionID]string
}

// RegionLinks cuts and restores regions' links to the hub.
type RegionLinks interface {
	// SetRegionLink cuts region r's link (up false) or restores it.
	// Unknown regions are an ENOTFOUND error.
	SetRegionLink(r tally.RegionID, up bool) error
}

// Gateway is the viewers' HTTP server. Create it with New, start it with
// Open and stop it with Close.
type Gateway struct {
	cfg      Config
	log      zerolog.Logger
	nc       *nats.Conn
	js       jetstream.JetStream
	echo     *echo.Echo
	srv      *http.Server
	hub      *hub
	election *resource
	static   map[string]*staticFile

	reg          *prometheus.Registry
	httpDuration *prometheus.HistogramVec
	observers    atomic.Pointer[map[observerKey]prometheus.Observer] // see observer
	observersMu  sync.Mutex                                          // held to add to observers

	view     atomic.Pointer[view] // nil until the bucket's values are loaded
	auditSem chan struct{}

	mu        sync.Mutex
	opened    bool
	closed    bool
	ln        net.Listener
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeErr  error
	closeOnce sync.Once
}

// New returns a gateway for cfg reading the national state through nc (and
// sending manual calls to the projector through it). It does not connect or
// listen until Open. A missing election or connection, or a negative buffer
// or timeout, is EINVALID.
func New(cfg Config, nc *nats.Conn) (*Gateway, error) {
	if cfg.Election == nil {
		return nil, tally.Errorf(tally.EINVALID, "gateway: election required")
	}
	if nc == nil {
		return nil, tally.Errorf(tally.EINVALID, "gateway: nats connection required")
	}
	if cfg.SSEBuffer < 0 || cfg.ClientBuffer < 0 {
		return nil, tally.Errorf(tally.EINVALID, "gateway: buffers must not be negative")
	}
	if cfg.AdminTimeout < 0 {
		return nil, tally.Errorf(tally.EINVALID, "gateway: admin timeout must not be negative")
	}
	if cfg.AdminTimeout == 0 {
		cfg.AdminTimeout = DefaultAdminTimeout
	}
	if cfg.SSEBuffer == 0 {
		cfg.SSEBuffer = DefaultSSEBuffer
	}
	if cfg.ClientBuffer == 0 {
		cfg.ClientBuffer = DefaultClientBuffer
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = DefaultRateBurst
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("gateway: jetstream: %w", err)
	}
	election, err := newResource(electionView(cfg.Election))
	if err != nil {
		return nil, fmt.Errorf("gateway: encode election: %w", err)
	}
	static, err := loadStatic()
	if err != nil {
		return nil, fmt.Errorf("gateway: load dashboard: %w", err)
	}
	g := &Gateway{
		cfg:      cfg,
		log:      cfg.Logger.With().Str("component", "gateway").Logger(),
		nc:       nc,
		js:       js,
		hub:      newHub(cfg.SSEBuffer, cfg.ClientBuffer, cfg.Logger.With().Str("component", "sse").Logger()),
		election: election,
		static:   static,
		auditSem: make(chan struct{}, auditConcurrency),
	}
	g.reg = cfg.Metrics
	if g.reg == nil {
		g.reg = prometheus.NewRegistry()
	}
	if err := g.registerMetrics(g.reg); err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	g.echo = g.routes()
	g.echo.Use(g.rateLimiter())
	g.srv = &http.Server{
		Handler:           g.echo,
		ReadHeaderTimeout: readTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(serverLogWriter{cfg.Logger}, "", 0),
	}
	return g, nil
}

// Open starts watching the national bucket and serving HTTP. It returns once
// the listener is open; the bucket is bound in the background (retrying
// until it exists), and until its values are loaded the results routes and
// /readyz answer 503. ctx bounds the setup only. It fails if Addr cannot be
// listened on, or if the gateway was opened or closed before.
func (g *Gateway) Open(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.opened || g.closed {
		return tally.Errorf(tally.EINVALID, "gateway: already opened")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", g.cfg.Addr)
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w", g.cfg.Addr, err)
	}
	g.opened = true
	g.ln = ln
	if g.cfg.TLS != nil {
		ln = tls.NewListener(ln, g.cfg.TLS)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.wg.Add(3)
	go func() { defer g.wg.Done(); g.hub.run(runCtx) }()
	go func() { defer g.wg.Done(); g.watch(runCtx) }()
	go func() {
		defer g.wg.Done()
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error().Err(err).Msg("http server stopped")
		}
	}()
	g.log.Info().Str("addr", ln.Addr().String()).Msg("gateway opened")
	return nil
}

// Close disconnects the live viewers, stops watching the bucket and shuts
// the HTTP server down, waiting at most a few seconds for requests in
// flight. It is safe to call more than once, and without Open.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		opened := g.opened
		g.mu.Unlock()
		if !opened {
			return
		}
		g.cancel() // ends the watcher and the hub, which ends every event stream
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := g.srv.Shutdown(ctx); err != nil {
			g.closeErr = fmt.Errorf("gateway: shutdown: %w", err)
			_ = g.srv.Close() // the shutdown error is the one reported
		}
		g.wg.Wait()
		g.log.Info().Msg("gateway closed")
	})
	return g.closeErr
}

// Addr returns the address the gateway listens on, with the actual port when
// Config.Addr asked for port 0; "" before Open.
func (g *Gateway) Addr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln == nil {
		return ""
	}
	return g.ln.Addr().String()
}

// Handler returns the gateway's HTTP handler (the echo instance), for tests
// and for embedding in another server. The results routes answer 503 and the
// event stream is unavailable until Open.
func (g *Gateway) Handler() http.Handler { return g.echo }

// ready reports whether the bucket is bound and its values loaded.
func (g *Gateway) ready() bool { return g.view.Load() != nil }
