// Package regional runs a region node: the region's NATS JetStream server
// (embedded, or an external one), its RESULTS stream in the region's own
// JetStream domain, the HTTP intake for reports and corrections, and the
// region's own running totals. The hub mirrors the RESULTS stream over a
// leaf-node link; a region cut off from the hub keeps taking reports.
package regional

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultHost            = "127.0.0.1"
	DefaultHTTPAddr        = "127.0.0.1:8081"
	DefaultMaxBody         = 8 << 20 // bytes
	DefaultMaxBatch        = 5000    // reports per request
	DefaultDuplicateWindow = time.Hour
	DefaultOfficeRate      = 2000  // reports per second per office
	DefaultOfficeBurst     = 20000 // reports
	// DefaultCheckpointInterval is how often a node stores a checkpoint
	// when events arrived since the last one.
	DefaultCheckpointInterval = 10 * time.Second
)

// SyncAlways is the NATSConfig.Sync value that makes the embedded server
// fsync every message before acknowledging it. It is the default.
const SyncAlways time.Duration = 0

// Config configures a region node. The zero value of each optional field
// means its default; see DefaultConfig.
type Config struct {
	// Region is the region this node serves. It must be a region of Election.
	Region tally.RegionID
	// Election is the election definition; it must have been validated.
	Election *tally.Election
	NATS     NATSConfig
	HTTP     HTTPConfig
	// DuplicateWindow is the RESULTS stream's duplicate window: a retried
	// submission within it is answered with its original sequence.
	// 0 means one hour.
	DuplicateWindow time.Duration
	// Offices are the region's reporting offices: their keys and the
	// precincts each may report for (see tally.NewOffices). Each is also a
	// NATS user of the embedded server (nkey authentication) that may
	// publish only to its precincts' intake subjects.
	Offices []tally.Office
	// RequireSignatures refuses unsigned reports (401). Signed reports are
	// verified whenever Offices is set, required or not.
	RequireSignatures bool
	// OfficeRate and OfficeBurst are each office's token bucket, in reports
	// per second and reports; 0 means DefaultOfficeRate/DefaultOfficeBurst,
	// a negative OfficeRate means no limit. Unsigned reports are not
	// limited per office.
	OfficeRate  float64
	OfficeBurst int
	// CheckpointInterval is how often the node stores a checkpoint of its
	// totals and event chain in its RESULTS stream (see Node.Checkpoint),
	// only when events arrived since the last one. 0 means
	// DefaultCheckpointInterval; a negative value turns the periodic
	// checkpoints off. Either way the node makes one at Open when the
	// stream ends with an event (after a crash) and a last one at Close.
	CheckpointInterval time.Duration
	// Metrics is the registry the node's metrics are registered on, each
	// labelled region=<Region>, and that GET /metrics on the intake serves;
	// nil means a registry of the node's own. One node per registry: a
	// second one's metrics collide and New fails.
	Metrics *prometheus.Registry
	// Logger receives the node's logs. The zero value logs nothing.
	Logger zerolog.Logger
}

// NATSConfig says which NATS server holds the region's RESULTS stream.
type NATSConfig struct {
	// URL is the client URL of an external NATS server or cluster
	// (comma-separated URLs). When it is set, nothing is embedded and the
	// fields below it are ignored, except InternalPassword.
	URL string
	// Domain is the JetStream domain of the external server; "" means the
	// region id. Ignored when embedded (the domain is then the region id).
	Domain string
	// Replicas is the RESULTS stream's replica count on an external
	// cluster; 0 means 1. An embedded server always uses 1.
	Replicas int

	// Host is the embedded server's client listen host; "" means 127.0.0.1.
	Host string
	// Port is the embedded server's client port; 0 means a random free port.
	Port int
	// StoreDir is the embedded server's JetStream store. Required when
	// embedded.
	StoreDir string
	// Sync is when the embedded server fsyncs the store. SyncAlways (0, the
	// default) fsyncs each message before the server acknowledges it, so
	// an acknowledged report survives a crash of the process and a power
	// loss or kernel crash. A positive duration fsyncs in the background at
	// that interval instead: faster, and a report acknowledged less than
	// that long before a power loss or kernel crash can be lost (a crash of
	// the process alone loses nothing: the server has written it to the
	// operating system before acknowledging). See DURABILITY.md. With an
	// external server its own sync_interval setting applies.
	Sync time.Duration
	// HubURL is the hub's leaf-node URL, e.g. nats-leaf://127.0.0.1:7422.
	// "" means no leaf link: the region runs standalone.
	HubURL string
	// HubUser and HubPassword are the leaf link's credentials, which the
	// hub's leaf listener requires. Secrets: never logged.
	HubUser, HubPassword string
	// HubTLS, when set, makes the leaf link use TLS (RootCAs checks the
	// hub's certificate).
	HubTLS *tls.Config
	// TLS, when set, makes the embedded server's client port require TLS.
	TLS *tls.Config
	// InternalPassword is the password of the node's own user
	// ("tally-node"), the only user besides the offices; "" means a random
	// one. Connect uses it. With an external server (URL), the node logs
	// in as "tally-node" with it when it is set. A secret: never logged.
	InternalPassword string
}

// HTTPConfig configures the intake API.
type HTTPConfig struct {
	// Addr is the listen address; "" means 127.0.0.1:8081. Use
	// "127.0.0.1:0" for a random port (see Node.HTTPAddr).
	Addr string
	// MaxBody is the largest request body accepted, in bytes; 0 means 8 MiB.
	MaxBody int64
	// MaxBatch is the most reports accepted in one request; 0 means 5000.
	MaxBatch int
	// TLS, when set, serves the intake over HTTPS.
	TLS *tls.Config
}

// DefaultConfig returns a configuration with every default filled in. Region,
// Election and NATS.StoreDir (or NATS.URL) must still be set.
func DefaultConfig() Config {
	return Config{
		NATS:               NATSConfig{Host: DefaultHost, Replicas: 1},
		HTTP:               HTTPConfig{Addr: DefaultHTTPAddr, MaxBody: DefaultMaxBody, MaxBatch: DefaultMaxBatch},
		DuplicateWindow:    DefaultDuplicateWindow,
		CheckpointInterval: DefaultCheckpointInterval,
		Logger:             zerolog.Nop(),
	}
}

// withDefaults returns c with its zero optional fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.NATS.Host == "" {
		c.NATS.Host = DefaultHost
	}
	if c.NATS.Replicas == 0 {
		c.NATS.Replicas = 1
	}
	if c.NATS.URL != "" && c.NATS.Domain == "" {
		c.NATS.Domain = string(c.Region)
	}
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = DefaultHTTPAddr
	}
	if c.HTTP.MaxBody == 0 {
		c.HTTP.MaxBody = DefaultMaxBody
	}
	if c.HTTP.MaxBatch == 0 {
		c.HTTP.MaxBatch = DefaultMaxBatch
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.OfficeRate == 0 {
		c.OfficeRate = DefaultOfficeRate
	}
	if c.OfficeBurst == 0 {
		c.OfficeBurst = DefaultOfficeBurst
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	return c
}

// Validate reports whether c can run a node, after defaults are applied.
// Errors have code EINVALID and name the field.
func (c Config) Validate() error {
	if err := tally.ValidToken(string(c.Region)); err != nil {
		return tally.Errorf(tally.EINVALID, "region: %s", err)
	}
	if c.Election == nil {
		return tally.Errorf(tally.EINVALID, "election: required")
	}
	if c.Election.Region(c.Region) == nil {
		return tally.Errorf(tally.EINVALID, "region: %q is not a region of election %q", c.Region, c.Election.ID)
	}
	if c.DuplicateWindow < 0 {
		return tally.Errorf(tally.EINVALID, "duplicate_window: must not be negative")
	}
	n := c.NATS
	if n.URL != "" {
		if err := tally.ValidToken(n.Domain); n.Domain != "" && err != nil {
			return tally.Errorf(tally.EINVALID, "nats.domain: %s", err)
		}
		if n.Replicas < 1 || n.Replicas > 5 {
			return tally.Errorf(tally.EINVALID, "nats.replicas: must be 1 to 5, got %d", n.Replicas)
		}
	} else {
		if n.StoreDir == "" {
			return tally.Errorf(tally.EINVALID, "nats.store_dir: required with an embedded server")
		}
		if n.Port < 0 || n.Port > 65535 {
			return tally.Errorf(tally.EINVALID, "nats.port: must be 0 to 65535, got %d", n.Port)
		}
		if n.Replicas != 1 {
			return tally.Errorf(tally.EINVALID, "nats.replicas: an embedded server holds 1 replica, got %d", n.Replicas)
		}
		if n.Sync < 0 {
			return tally.Errorf(tally.EINVALID, "nats.sync: must be always (0) or a positive interval, got %s", n.Sync)
		}
		if n.HubURL != "" {
			u, err := url.Parse(n.HubURL)
			if err != nil || u.Host == "" {
				return tally.Errorf(tally.EINVALID, "nats.hub_url: %q is not a URL like nats-leaf://host:7422", n.HubURL)
			}
		}
	}
	if c.HTTP.MaxBody < 0 {
		return tally.Errorf(tally.EINVALID, "http.max_body: must not be negative")
	}
	if c.HTTP.MaxBatch < 0 {
		return tally.Errorf(tally.EINVALID, "http.max_batch: must not be negative")
	}
	if c.RequireSignatures && len(c.Offices) == 0 {
		return tally.Errorf(tally.EINVALID, "require_signatures: no offices listed to sign")
	}
	if c.OfficeBurst < 0 {
		return tally.Errorf(tally.EINVALID, "office_burst: must not be negative")
	}
	if _, err := tally.NewOffices(c.Election, c.Region, c.Offices); err != nil {
		return err
	}
	return nil
}

// Node is a region node. Create it with New, start it with Open, stop it
// with Close.
type Node struct {
	cfg    Config
	region tally.RegionID
	e      *tally.Election
	log    zerolog.Logger

	// contests are the contests on the region's ballots, in definition
	// order; precincts counts the region's precincts per contest.
	contests  []tally.ContestID
	precincts map[tally.ContestID]int

	ns     *server.Server
	nc     *nats.Conn
	ncDone chan struct{} // closed when nc is closed
	js     jetstream.JetStream
	stream jetstream.Stream
	cc     jetstream.ConsumeContext

	ln  net.Listener
	srv *http.Server
	wg  sync.WaitGroup

	reg     *prometheus.Registry
	metrics *metrics
	// streamOK is set once the RESULTS stream exists, for /readyz.
	streamOK atomic.Bool

	offices  *tally.Offices
	limits   *officeLimits
	password string             // the internal user's
	sub      *nats.Subscription // the NATS intake

	mu      sync.Mutex // guards totals, applied, chain and the last checkpoint
	totals  *tally.Totals
	applied chan struct{} // closed and replaced whenever totals move on
	chain   tally.Chain   // over every results message applied
	cp      tally.Checkpoint
	cpAt    uint64 // stream sequence of cp, the last checkpoint seen; 0 if none

	// gate is the publish gate: intake publishes hold it for reading
	// around publish and acknowledgement, a checkpoint holds it for
	// writing, so nothing is stored between the totals it describes and
	// itself. closing, set by the final checkpoint, refuses later
	// publishes.
	gate    sync.RWMutex
	closing bool
	// lastStored is the highest stream sequence known to be stored: the
	// intake's acknowledgements and the stream's last sequence at Open.
	lastStored atomic.Uint64
	// cpMu makes checkpoints one at a time; cpStop and cpDone stop and
	// wait for the checkpoint loop.
	cpMu   sync.Mutex
	cpStop context.CancelFunc
	cpDone chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// New returns a node for cfg, with defaults applied. It does not start
// anything; call Open. Errors have code EINVALID and name the field.
func New(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:       cfg,
		region:    cfg.Region,
		e:         cfg.Election,
		log:       cfg.Logger.With().Str("region", string(cfg.Region)).Logger(),
		precincts: map[tally.ContestID]int{},
		totals:    tally.NewTotals(cfg.Election),
		applied:   make(chan struct{}),
		chain:     tally.NewChain(cfg.Region),
		password:  cfg.NATS.InternalPassword,
	}
	if n.password == "" {
		n.password = randomSecret()
	}
	n.reg = cfg.Metrics
	if n.reg == nil {
		n.reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(n.reg, n)
	if err != nil {
		return nil, fmt.Errorf("region %s: metrics: %w", cfg.Region, err)
	}
	n.metrics = m
	n.offices, _ = tally.NewOffices(cfg.Election, cfg.Region, cfg.Offices) // checked by Validate
	n.limits = newOfficeLimits(cfg.OfficeRate, cfg.OfficeBurst)
	for _, p := range cfg.Election.RegionPrecincts(cfg.Region) {
		for _, c := range cfg.Election.Precinct(p).Contests {
			n.precincts[c]++
		}
	}
	for _, c := range cfg.Election.Contests {
		if n.precincts[c.ID] > 0 {
			n.contests = append(n.contests, c.ID)
		}
	}
	return n, nil
}

// Open starts the node: the embedded NATS server (if any, with JetStream
// domain = region id and a leaf-node link to the hub), the RESULTS stream
// (created or updated), the totals consumer and the HTTP intake. It returns
// once the intake is listening and the totals have caught up with the
// stream as it was at start. ctx bounds setup only. On error everything
// started is stopped again.
func (n *Node) Open(ctx context.Context) error {
	start := time.Now()
	if err := n.open(ctx); err != nil {
		if cerr := n.Close(); cerr != nil {
			n.log.Warn().Err(cerr).Msg("cleanup after failed open failed")
		}
		return err
	}
	n.log.Info().Str("stream", tally.ResultsStream).Str("nats", n.ClientURL()).Str("http", n.HTTPAddr()).
		Int64("duration_ms", time.Since(start).Milliseconds()).Msg("region node opened")
	return nil
}

func (n *Node) open(ctx context.Context) error {
	if n.cfg.NATS.URL == "" {
		if err := n.startServer(ctx); err != nil {
			return err
		}
	}
	if err := n.connect(); err != nil {
		return err
	}
	if err := n.createStream(ctx); err != nil {
		return err
	}
	if err := n.startTotals(ctx); err != nil {
		return err
	}
	// After a crash the stream ends with events no checkpoint covers:
	// account for them before taking new ones.
	n.logCheckpoint(n.checkpoint(ctx, false))
	if err := n.startNATSIntake(); err != nil {
		return err
	}
	if err := n.startHTTP(); err != nil {
		return err
	}
	n.startCheckpoints()
	return nil
}

func (n *Node) startServer(ctx context.Context) error {
	c := n.cfg.NATS
	opts := &server.Options{
		ServerName:      "region-" + string(n.region),
		Host:            c.Host,
		Port:            c.Port,
		JetStream:       true,
		JetStreamDomain: string(n.region),
		StoreDir:        c.StoreDir,
		NoSigs:          true,
		NoLog:           true,
	}
	// Durability (see DURABILITY.md): with SyncAlways the server fsyncs
	// each message before its acknowledgement; otherwise it writes it to
	// the operating system before the acknowledgement and fsyncs every
	// SyncInterval.
	if c.Sync == SyncAlways {
		opts.SyncAlways = true
	} else {
		opts.SyncInterval = c.Sync
	}
	n.serverAuth(opts)
	if c.TLS != nil {
		opts.TLSConfig, opts.TLS, opts.TLSTimeout = c.TLS, true, 2
	}
	if opts.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	if c.HubURL != "" {
		u, err := url.Parse(c.HubURL)
		if err != nil {
			return tally.Errorf(tally.EINVALID, "nats.hub_url: %v", err)
		}
		if c.HubUser != "" {
			u.User = url.UserPassword(c.HubUser, c.HubPassword)
		}
		remote := &server.RemoteLeafOpts{URLs: []*url.URL{u}}
		if c.HubTLS != nil {
			remote.TLS, remote.TLSConfig, remote.TLSTimeout = true, c.HubTLS, 2
		}
		opts.LeafNode = server.LeafNodeOpts{
			Remotes:           []*server.RemoteLeafOpts{remote},
			ReconnectInterval: time.Second,
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("start nats server: %w", err)
	}
	n.ns = ns
	go ns.Start()
	wait := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if !ns.ReadyForConnections(wait) {
		return tally.Errorf(tally.EUNAVAILABLE, "nats server: not ready after %s", wait.Round(time.Millisecond))
	}
	return nil
}

func (n *Node) connect() error {
	n.ncDone = make(chan struct{})
	done := n.ncDone
	opts := []nats.Option{
		nats.Name("tally-region-" + string(n.region)),
		nats.ClosedHandler(func(*nats.Conn) { close(done) }),
	}
	url := n.cfg.NATS.URL
	if n.ns != nil {
		opts = append(opts, nats.InProcessServer(n.ns), nats.UserInfo(internalUser, n.password))
	} else {
		opts = append(opts, nats.MaxReconnects(-1), nats.RetryOnFailedConnect(false))
		if n.cfg.NATS.InternalPassword != "" {
			// The external server's user for the node, as embedded.
			opts = append(opts, nats.UserInfo(internalUser, n.cfg.NATS.InternalPassword))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		n.ncDone = nil
		return tally.Errorf(tally.EUNAVAILABLE, "nats: connect: %v", err)
	}
	n.nc = nc
	domain := n.cfg.NATS.Domain
	if n.ns != nil {
		domain = string(n.region)
	}
	js, err := jetstream.NewWithDomain(nc, domain)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	n.js = js
	return nil
}

// formingRetry is how long a node on an external cluster retries creating
// its stream while the cluster forms.
const formingRetry = 30 * time.Second

// streamConfig is the RESULTS stream: every report and correction of the
// region, and the node's checkpoints, kept forever (a region must outlast
// its longest outage).
func (n *Node) streamConfig() jetstream.StreamConfig {
	replicas := n.cfg.NATS.Replicas
	if n.ns != nil {
		replicas = 1
	}
	return jetstream.StreamConfig{
		Name:        tally.ResultsStream,
		Description: "reports, corrections and checkpoints of region " + string(n.region),
		Subjects:    []string{tally.ResultsSubjects(n.region), tally.CheckpointSubject(n.region)},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      0, // keep everything
		Duplicates:  n.cfg.DuplicateWindow,
		Replicas:    replicas,
		// Durability is the server's sync setting (NATSConfig.Sync).
	}
}

// createStream creates the RESULTS stream, or updates it: a store made
// before checkpoints existed gets the checkpoint subject added.
func (n *Node) createStream(ctx context.Context) error {
	s, err := n.js.CreateOrUpdateStream(ctx, n.streamConfig())
	// An external cluster that is still forming refuses to place replicas
	// on a node it does not yet know to be up ("no suitable peers for
	// placement") or has no JetStream leader yet: a node started with its
	// servers retries, once a second, for up to formingRetry.
	for deadline := time.Now().Add(formingRetry); err != nil && n.ns == nil && time.Now().Before(deadline); {
		n.log.Warn().Err(err).Msg("create stream failed: retrying while the cluster forms")
		select {
		case <-ctx.Done():
			return fmt.Errorf("create stream %s: %w", tally.ResultsStream, err)
		case <-time.After(time.Second):
		}
		s, err = n.js.CreateOrUpdateStream(ctx, n.streamConfig())
	}
	if err != nil {
		return fmt.Errorf("create stream %s: %w", tally.ResultsStream, err)
	}
	n.stream = s
	n.streamOK.Store(true)
	return nil
}

// Close stops the node: the HTTP and NATS intake (in-flight requests
// finish), the checkpoint loop, then it stores a final checkpoint when
// events arrived since the last one, and stops the totals consumer, the
// NATS connection (drained) and the embedded server. It is safe to call
// more than once and returns the first call's error.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	var errs []error
	if n.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := n.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		cancel()
		n.wg.Wait()
	}
	if n.sub != nil {
		closed := n.sub.StatusChanged(nats.SubscriptionClosed)
		if err := n.sub.Drain(); err != nil {
			errs = append(errs, fmt.Errorf("nats intake: drain: %w", err))
		} else {
			// Requests already received are served before the final
			// checkpoint; any later publish is refused (n.closing).
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				errs = append(errs, errors.New("nats intake: drain timed out"))
			}
		}
	}
	if n.cpStop != nil {
		n.cpStop()
		<-n.cpDone
	}
	if n.cc != nil {
		// The totals consumer is running: the final checkpoint can wait for it.
		ctx, cancel := context.WithTimeout(context.Background(), checkpointTimeout)
		n.logCheckpoint(n.checkpoint(ctx, true))
		cancel()
	}
	if n.cc != nil {
		n.cc.Drain()
		select {
		case <-n.cc.Closed():
		case <-time.After(10 * time.Second):
			errs = append(errs, errors.New("totals consumer: drain timed out"))
		}
	}
	if n.nc != nil {
		if err := n.nc.Drain(); err != nil {
			n.nc.Close()
		}
		select {
		case <-n.ncDone:
		case <-time.After(10 * time.Second):
			n.nc.Close()
			errs = append(errs, errors.New("nats: drain timed out"))
		}
	}
	if n.ns != nil {
		n.ns.Shutdown()
		n.ns.WaitForShutdown()
	}
	err := errors.Join(errs...)
	n.log.Info().Err(err).Msg("region node closed")
	return err
}

// HTTPAddr returns the intake's actual host:port, or "" before Open.
func (n *Node) HTTPAddr() string {
	if n.ln == nil {
		return ""
	}
	return n.ln.Addr().String()
}

// ClientURL returns the NATS client URL: the embedded server's, or the
// external URL.
func (n *Node) ClientURL() string {
	if n.ns != nil {
		return n.ns.ClientURL()
	}
	return n.cfg.NATS.URL
}

// Server returns the embedded NATS server, or nil with an external one.
func (n *Node) Server() *server.Server { return n.ns }
