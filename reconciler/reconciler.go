// Package reconciler is the hub side of the results federation: it mirrors
// every region's RESULTS stream into the hub's JetStream domain, merges the
// mirrors into national totals exactly once, watches each region's health and
// publishes the national state to a key-value bucket that gateways serve.
package reconciler

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/tallyvote/tally"
)

// mirrorHeartbeat is the idle heartbeat of the consumer a hub mirror creates
// on its region (sourceHealthHB in nats-server's stream.go). While the link
// is up, a mirror's Active never grows much past it.
const mirrorHeartbeat = time.Second

// MinOfflineAfter is the smallest Config.OfflineAfter accepted: two mirror
// heartbeats, so that one late heartbeat does not mark a region offline.
const MinOfflineAfter = 2 * mirrorHeartbeat

// Defaults for the zero values of Config.
const (
	DefaultPublishInterval  = 100 * time.Millisecond
	DefaultHealthInterval   = time.Second
	DefaultOfflineAfter     = 5 * time.Second
	DefaultLagThreshold     = 1000
	DefaultSnapshotInterval = 2 * time.Second
	DefaultCatchUpTimeout   = 30 * time.Second
)

// Config configures a Reconciler.
type Config struct {
	// Election is the election to reconcile; it must have been validated.
	Election *tally.Election
	NATS     NATSConfig
	// PublishInterval bounds how often changed national state is written to
	// the bucket: at most one publish per interval. 0 means 100ms.
	PublishInterval time.Duration
	// HealthInterval is how often region health is checked. 0 means 1s.
	HealthInterval time.Duration
	// OfflineAfter is how long a mirror may go without hearing from its
	// region before the region is offline. A region whose leaf link is known
	// to be down is offline at once. 0 means 5s; at least MinOfflineAfter.
	OfflineAfter time.Duration
	// LagThreshold is how many events a connected region may be behind
	// (mirror lag plus mirrored but unapplied events) before it is lagging.
	// 0 means 1000.
	LagThreshold uint64
	// SnapshotInterval is how often the reconciler's state is saved to
	// the tally.SnapshotBucket object store, when enough changed since the
	// last save: an event for every 64 cells of the state (any event while
	// it has fewer), or a region's status; anything at all once 60
	// intervals have passed. Saves are less frequent while one takes more
	// than a tenth of the time since the last. The state is saved at Close
	// too. After a crash, Open restores the last snapshot and resumes each
	// region at the sequence after the snapshot's. 0 means 2s.
	SnapshotInterval time.Duration
	// CatchUpTimeout bounds how long Open waits, before its first publish,
	// for the consumers to apply what each mirror already holds, so that
	// the national state published after a restart does not go back to the
	// snapshot's. Past it, Open logs a warning and publishes anyway. 0
	// means 30s.
	CatchUpTimeout time.Duration

	// durableMirrors makes new mirrors read a durable consumer that the
	// reconciler creates on the region (see mirror.go). Experimental and
	// off: measured, not adopted, because nats-server 2.15.2 can make such
	// a mirror skip events. Tests set it.
	durableMirrors bool

	// Metrics is where the reconciler registers its Prometheus metrics
	// (tally_mirror_*, tally_region_*, tally_reconciler_*, tally_national_*);
	// nil means a registry of its own, not exposed. One reconciler per
	// registry: a second one's metrics collide and New fails.
	Metrics prometheus.Registerer

	// Logger receives the reconciler's logs and the embedded server's.
	Logger zerolog.Logger
}

// NATSConfig says which NATS the hub runs on: an external one (URL) or an
// embedded server (the rest).
type NATSConfig struct {
	// URL is the client URL of an external hub NATS; when set, nothing is
	// embedded and region health is derived from the mirrors alone.
	URL string
	// Replicas is the replica count of the mirrors and the bucket on an
	// external cluster. 0 means 1.
	Replicas int

	// Host is the embedded server's listen host; default 127.0.0.1.
	Host string
	// Port is the embedded server's client port; 0 picks a free one.
	Port int
	// LeafPort is the embedded server's leaf-node port; 0 picks a free one.
	LeafPort int
	// StoreDir is the embedded server's JetStream directory; required when
	// embedded.
	StoreDir string

	// LeafUser and LeafPassword are the credentials regions' leaf links
	// must present; "" means a random password for user "leaf" (see
	// LeafCredentials). The leaf listener never takes anonymous links.
	// Secrets: never logged.
	LeafUser, LeafPassword string
	// ClientUser and ClientPassword are the credentials of the embedded
	// server's client port, used by the hub's own components and any
	// gateway; "" means a random password for user "hub" (see
	// ClientOptions). With URL set, they are presented to the external
	// server when ClientUser is set. Secrets: never logged.
	ClientUser, ClientPassword string
	// TLS, when set, makes the client port require TLS; LeafTLS the leaf
	// listener.
	TLS, LeafTLS *tls.Config
}

// Reconciler merges the region mirrors into national totals. Create it with
// New, start it with Open and stop it with Close.
type Reconciler struct {
	cfg Config
	e   *tally.Election
	log zerolog.Logger

	ns      *server.Server // embedded server, or nil
	leafURL string
	ncDone  chan struct{} // closed when nc is closed
	nc      *nats.Conn
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	obs     jetstream.ObjectStore // tally.SnapshotBucket

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	consMu    sync.Mutex
	consumers map[tally.RegionID]jetstream.ConsumeContext

	mu             sync.Mutex
	totals         *tally.Totals
	statuses       []tally.RegionStatus // election order
	lastUpdate     map[tally.RegionID]time.Time
	regionContests map[tally.RegionID][]tally.ContestID
	// contestSeq is the stream sequence of the latest results message of
	// each region in each contest, and contestRec whether the region is
	// reconciled in the contest as last published (reconcileLocked).
	// Under mu.
	contestSeq   map[tally.RegionID]map[tally.ContestID]uint64
	contestRec   map[tally.RegionID]map[tally.ContestID]bool
	dirty        map[tally.ContestID]bool
	regionsDirty bool
	regionIdx    map[tally.RegionID]int // index in statuses
	// mirrored reports, per region in election order, that its mirror
	// exists and is consumed (attached, as of the last health check);
	// heard that the region has been live or lagging since Open.
	mirrored, heard []bool
	// chains hash each region's results messages as applied, to compare
	// with the region's checkpoints.
	chains map[tally.RegionID]*tally.Chain
	// audit holds the audit records not yet published; auditedCheckpoint
	// the stream sequence of each region's last checkpoint found in the
	// audit stream at Open.
	audit             []auditMsg
	auditedCheckpoint map[tally.RegionID]uint64
	// gen counts changes to the state that a snapshot holds; savedGen is
	// the gen of the last snapshot saved. unsaved counts the events applied
	// since the state the last snapshot took; urgent counts the changes a
	// restart could not rebuild from the mirrors (region status records),
	// savedUrgent those the last snapshot holds. All under mu.
	gen, savedGen       uint64
	unsaved             uint64
	urgent, savedUrgent uint64

	snapMu sync.Mutex // one snapshot save at a time

	metrics metrics

	pub      publisher                     // owned by the publisher goroutine after Open
	feed     feed                          // under mu
	linkUp   map[tally.RegionID]time.Time  // owned by checkHealth (Open, then the health loop)
	attached map[tally.RegionID]bool       // mirror exists and is consumed; owned like linkUp
	durable  map[tally.RegionID]bool       // the mirror reads a durable consumer; owned like linkUp
	stalls   map[tally.RegionID]stallState // see checkStall; owned like linkUp

	leafUser, leafPassword     string
	clientUser, clientPassword string

	closeOnce sync.Once
	closeErr  error
}

// New checks cfg, fills in its defaults and returns a Reconciler that is not
// yet running. Errors have code EINVALID.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Election == nil {
		return nil, tally.Errorf(tally.EINVALID, "reconciler: election required")
	}
	if len(cfg.Election.Regions) == 0 {
		return nil, tally.Errorf(tally.EINVALID, "reconciler: election: no regions")
	}
	if cfg.PublishInterval == 0 {
		cfg.PublishInterval = DefaultPublishInterval
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.OfflineAfter == 0 {
		cfg.OfflineAfter = DefaultOfflineAfter
	}
	if cfg.LagThreshold == 0 {
		cfg.LagThreshold = DefaultLagThreshold
	}
	if cfg.SnapshotInterval == 0 {
		cfg.SnapshotInterval = DefaultSnapshotInterval
	}
	if cfg.CatchUpTimeout == 0 {
		cfg.CatchUpTimeout = DefaultCatchUpTimeout
	}
	if cfg.NATS.Replicas == 0 {
		cfg.NATS.Replicas = 1
	}
	if cfg.NATS.Host == "" {
		cfg.NATS.Host = "127.0.0.1"
	}
	switch {
	case cfg.PublishInterval < 0:
		return nil, tally.Errorf(tally.EINVALID, "reconciler: publish_interval: must be positive")
	case cfg.HealthInterval < 0:
		return nil, tally.Errorf(tally.EINVALID, "reconciler: health_interval: must be positive")
	case cfg.SnapshotInterval < 0:
		return nil, tally.Errorf(tally.EINVALID, "reconciler: snapshot_interval: must be positive")
	case cfg.CatchUpTimeout < 0:
		return nil, tally.Errorf(tally.EINVALID, "reconciler: catch_up_timeout: must be positive")
	case cfg.OfflineAfter < MinOfflineAfter:
		return nil, tally.Errorf(tally.EINVALID, "reconciler: offline_after: must be at least %s (two mirror heartbeats), got %s", MinOfflineAfter, cfg.OfflineAfter)
	case cfg.NATS.Replicas < 0 || cfg.NATS.Replicas > 5:
		return nil, tally.Errorf(tally.EINVALID, "reconciler: nats.replicas: must be 1 to 5, got %d", cfg.NATS.Replicas)
	case cfg.NATS.URL == "" && cfg.NATS.StoreDir == "":
		return nil, tally.Errorf(tally.EINVALID, "reconciler: nats.store_dir: required for the embedded server")
	case cfg.NATS.Port < 0 || cfg.NATS.LeafPort < 0:
		return nil, tally.Errorf(tally.EINVALID, "reconciler: nats ports: must not be negative")
	}
	r := &Reconciler{
		cfg:            cfg,
		e:              cfg.Election,
		log:            cfg.Logger.With().Str("component", "reconciler").Logger(),
		consumers:      map[tally.RegionID]jetstream.ConsumeContext{},
		totals:         tally.NewTotals(cfg.Election),
		lastUpdate:     map[tally.RegionID]time.Time{},
		dirty:          map[tally.ContestID]bool{},
		ncDone:         make(chan struct{}),
		linkUp:         map[tally.RegionID]time.Time{},
		attached:       map[tally.RegionID]bool{},
		durable:        map[tally.RegionID]bool{},
		regionContests: map[tally.RegionID][]tally.ContestID{},
		contestSeq:     map[tally.RegionID]map[tally.ContestID]uint64{},
		contestRec:     map[tally.RegionID]map[tally.ContestID]bool{},
		regionIdx:      map[tally.RegionID]int{},
		chains:         map[tally.RegionID]*tally.Chain{},
		mirrored:       make([]bool, len(cfg.Election.Regions)),
		heard:          make([]bool, len(cfg.Election.Regions)),

		auditedCheckpoint: map[tally.RegionID]uint64{},
	}
	if err := r.registerMetrics(cfg.Metrics); err != nil {
		return nil, fmt.Errorf("reconciler: metrics: %w", err)
	}
	for _, c := range cfg.Election.Contests {
		for _, reg := range cfg.Election.ContestRegions(c.ID) {
			r.regionContests[reg] = append(r.regionContests[reg], c.ID)
		}
	}
	now := time.Now().UTC()
	for i, reg := range cfg.Election.Regions {
		r.statuses = append(r.statuses, tally.RegionStatus{
			ID: reg.ID, Name: reg.Name, Status: tally.StatusOffline, Since: now,
		})
		r.regionIdx[reg.ID] = i
		r.contestSeq[reg.ID] = map[tally.ContestID]uint64{}
		r.contestRec[reg.ID] = map[tally.ContestID]bool{}
		c := tally.NewChain(reg.ID)
		r.chains[reg.ID] = &c
	}
	r.leafUser, r.leafPassword = cfg.NATS.LeafUser, cfg.NATS.LeafPassword
	if r.leafUser == "" {
		r.leafUser, r.leafPassword = "leaf", randomSecret()
	}
	r.clientUser, r.clientPassword = cfg.NATS.ClientUser, cfg.NATS.ClientPassword
	if r.clientUser == "" && cfg.NATS.URL == "" {
		r.clientUser, r.clientPassword = "hub", randomSecret()
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// bcryptHash returns the bcrypt hash of password, which the server
// compares against, so that no plaintext password sits in its options.
// The cost is low: the passwords are long and random, not guessable.
func bcryptHash(password string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return password // longer than bcrypt takes (72 bytes): the server compares it plainly
	}
	return string(h)
}

func randomSecret() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// LeafCredentials returns the user and password a region's leaf link must
// present to the embedded server's leaf listener: NATS.LeafUser and
// NATS.LeafPassword, or the random ones made by New. Secrets: never log them.
func (r *Reconciler) LeafCredentials() (user, password string) {
	return r.leafUser, r.leafPassword
}

// ClientOptions returns the options a client of the hub's NATS needs to
// authenticate (the gateway, the projector): the client user and password.
// Empty with an external server and no NATS.ClientUser.
func (r *Reconciler) ClientOptions() []nats.Option {
	if r.clientUser == "" {
		return nil
	}
	return []nats.Option{nats.UserInfo(r.clientUser, r.clientPassword)}
}

// Open starts the embedded server (unless NATS.URL is set), creates the
// national bucket, the audit stream and the snapshot bucket, restores the
// last snapshot (see SnapshotInterval), makes sure of one mirror per
// reachable region and starts its consumer after the snapshot's sequence,
// waits for the consumers to apply what the mirrors already hold (see
// CatchUpTimeout), checks region health once, publishes every contest, and
// starts the health loop, the publisher and the snapshots. It returns once
// all of that is set up; ctx bounds setup only. Call it once. On error,
// everything started is stopped again, as by Close. A snapshot of another
// election is an error with code EINVALID naming it.
func (r *Reconciler) Open(ctx context.Context) (err error) {
	start := time.Now()
	defer func() {
		if err != nil {
			if cerr := r.Close(); cerr != nil {
				r.log.Warn().Err(cerr).Msg("close after failed open failed")
			}
		}
	}()
	if err := r.connect(); err != nil {
		return err
	}
	var kv jetstream.KeyValue
	err = r.whileForming(ctx, "create bucket", func() (err error) {
		kv, err = r.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   tally.NationalBucket,
			History:  1,
			Storage:  jetstream.FileStorage,
			Replicas: r.cfg.NATS.Replicas,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", tally.NationalBucket, err)
	}
	r.kv = kv
	// The feed goes on from what the bucket holds.
	if entry, err := kv.Get(ctx, tally.KeyFeed); err == nil {
		if err := json.Unmarshal(entry.Value(), &r.feed.items); err != nil {
			r.log.Warn().Err(err).Msg("feed in the bucket not readable; starting a new one")
			r.feed.items = nil
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("read %s from bucket %s: %w", tally.KeyFeed, tally.NationalBucket, err)
	}
	if err := r.openAudit(ctx); err != nil {
		return err
	}
	// The snapshot before the consumers, which start after its sequences.
	if err := r.openSnapshot(ctx); err != nil {
		return err
	}
	r.dropAudited()
	for _, reg := range r.e.Regions {
		if err := r.attach(ctx, reg.ID); err != nil {
			return err
		}
	}
	r.catchUp(ctx)
	// Health first, so the first publish carries real statuses; then every
	// contest once, so gateways see all of them (zeros included) at once.
	r.checkHealth(ctx)
	r.mu.Lock()
	for _, c := range r.e.Contests {
		r.dirty[c.ID] = true
	}
	r.regionsDirty = true
	r.pub.init(r.js, r.kv)
	r.mu.Unlock()
	if err := r.publish(ctx); err != nil {
		return fmt.Errorf("publish national state: %w", err)
	}
	r.wg.Add(3)
	go r.healthLoop()
	go r.publishLoop()
	go r.snapshotLoop()
	r.log.Info().Str("client_url", r.ClientURL()).Str("leaf_url", r.LeafURL()).
		Int("regions", len(r.e.Regions)).Int64("duration_ms", time.Since(start).Milliseconds()).
		Msg("reconciler opened")
	return nil
}

// connect starts the embedded server if there is one and connects to NATS.
func (r *Reconciler) connect() error {
	n := r.cfg.NATS
	opts := []nats.Option{
		nats.Name("tally-reconciler"),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				r.log.Warn().Err(err).Msg("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { r.log.Info().Msg("nats reconnected") }),
		nats.ClosedHandler(func(*nats.Conn) { close(r.ncDone) }),
	}
	url := n.URL
	if url == "" {
		port, leafPort := n.Port, n.LeafPort
		if port == 0 {
			port = -1
		}
		if leafPort == 0 {
			leafPort = -1
		}
		sopts := &server.Options{
			ServerName:      "hub",
			Host:            n.Host,
			Port:            port,
			JetStream:       true,
			JetStreamDomain: tally.HubDomain,
			StoreDir:        n.StoreDir,
			LeafNode:        server.LeafNodeOpts{Host: n.Host, Port: leafPort, NoAdvertise: true},
			NoSigs:          true,
			// No anonymous clients or leaf links: every client is the hub's
			// user, every leaf link a region with the leaf credentials.
			Users: []*server.User{{Username: r.clientUser, Password: bcryptHash(r.clientPassword)}},
		}
		sopts.LeafNode.Users = []*server.User{{Username: r.leafUser, Password: bcryptHash(r.leafPassword)}}
		if n.TLS != nil {
			sopts.TLS, sopts.TLSConfig, sopts.TLSTimeout = true, n.TLS, 2
		}
		if n.LeafTLS != nil {
			sopts.LeafNode.TLSConfig, sopts.LeafNode.TLSTimeout = n.LeafTLS, 2
		}
		ns, err := server.NewServer(sopts)
		if err != nil {
			return fmt.Errorf("embedded nats: %w", err)
		}
		ns.SetLoggerV2(serverLogger{r.cfg.Logger.With().Str("component", "nats-server").Logger()}, false, false, false)
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			ns.Shutdown()
			return tally.Errorf(tally.EUNAVAILABLE, "embedded nats: not ready after 10s")
		}
		r.ns = ns
		// The server writes the port it picked back into its options
		// before it is ready for connections.
		r.leafURL = "nats-leaf://" + net.JoinHostPort(n.Host, strconv.Itoa(sopts.LeafNode.Port))
		url = ns.ClientURL()
		opts = append(opts, nats.InProcessServer(ns))
		if n.TLS != nil {
			// The in-process connection is a pipe inside this process: the
			// server still speaks TLS on it, but there is no one in between
			// whose certificate could be checked.
			opts = append(opts, nats.Secure(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})) //nolint:gosec // in-process pipe
		}
	}
	opts = append(opts, r.ClientOptions()...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect to hub nats: %w", err)
	}
	r.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	r.js = js
	return nil
}

// attach makes sure region reg's mirror exists and is being consumed. It
// creates a missing mirror only once the region's JetStream answers over the
// link: a mirror created while its region is unreachable sends its consumer
// request into the void, and the server then waits 30 s for an answer before
// it tries again, even if the link comes up meanwhile. A region not yet
// reachable stays detached, and the health loop tries again each interval.
func (r *Reconciler) attach(ctx context.Context, reg tally.RegionID) error {
	if r.attached[reg] {
		return nil
	}
	created, err := r.ensureMirror(ctx, reg)
	if err != nil || !created {
		return err
	}
	if err := r.startConsumer(ctx, reg, 0); err != nil {
		return err
	}
	r.attached[reg] = true
	return nil
}

// reachable reports whether region reg's JetStream answers over the link.
func (r *Reconciler) reachable(reg tally.RegionID) bool {
	_, err := r.nc.Request("$JS."+string(reg)+".API.INFO", nil, time.Second)
	return err == nil
}

// Close stops the consumers (draining what they hold), flushes the national
// state and the audit records one last time, waits for every goroutine,
// saves the last snapshot, closes the connection and shuts the embedded
// server down. It is safe to call more than once; later calls return the
// first call's error.
func (r *Reconciler) Close() error {
	r.closeOnce.Do(func() {
		var errs []error
		r.consMu.Lock()
		ccs := r.consumers
		r.consumers = map[tally.RegionID]jetstream.ConsumeContext{}
		r.consMu.Unlock()
		for _, cc := range ccs {
			cc.Drain()
		}
		for reg, cc := range ccs {
			select {
			case <-cc.Closed():
			case <-time.After(5 * time.Second):
				errs = append(errs, fmt.Errorf("drain consumer of region %s: timed out", reg))
			}
		}
		r.cancel() // the publisher flushes once more on its way out
		r.wg.Wait()
		// A consumer the health loop attached meanwhile.
		r.consMu.Lock()
		late := r.consumers
		r.consumers = map[tally.RegionID]jetstream.ConsumeContext{}
		r.consMu.Unlock()
		for reg, cc := range late {
			cc.Stop()
			select {
			case <-cc.Closed():
			case <-time.After(5 * time.Second):
				errs = append(errs, fmt.Errorf("stop consumer of region %s: timed out", reg))
			}
		}
		if r.obs != nil {
			// Nothing is applied any more: the last snapshot.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := r.saveSnapshot(ctx); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
		if r.nc != nil {
			if err := r.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				errs = append(errs, fmt.Errorf("drain nats connection: %w", err))
			}
			select {
			case <-r.ncDone:
			case <-time.After(5 * time.Second):
				r.nc.Close()
			}
		}
		if r.ns != nil {
			r.ns.Shutdown()
			r.ns.WaitForShutdown()
		}
		r.closeErr = errors.Join(errs...)
		r.log.Info().Msg("reconciler closed")
	})
	return r.closeErr
}

// ClientURL returns the NATS client URL of the hub, which gateways connect
// to: the embedded server's, or NATS.URL.
func (r *Reconciler) ClientURL() string {
	if r.ns != nil {
		return r.ns.ClientURL()
	}
	return r.cfg.NATS.URL
}

// LeafURL returns the nats-leaf://host:port URL that region nodes dial, or
// "" when the hub is not embedded (the external server's own leaf listener
// applies then).
func (r *Reconciler) LeafURL() string {
	return r.leafURL
}

// Server returns the embedded NATS server, or nil with an external one.
func (r *Reconciler) Server() *server.Server { return r.ns }

// Statuses returns the current health of every region, in election order.
func (r *Reconciler) Statuses() []tally.RegionStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]tally.RegionStatus(nil), r.statuses...)
}

// Result returns the current in-memory result of contest c: a contest of
// the election, or the national view of an office (tally.NationalContestID).
// ok is false for an unknown id.
func (r *Reconciler) Result(c tally.ContestID) (res tally.ContestResult, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sm := r.statusMapLocked()
	if r.e.Contest(c) != nil {
		return r.contestResultLocked(c, sm), true
	}
	for _, office := range r.e.Offices() {
		if tally.NationalContestID(office) == c {
			return r.nationalLocked(office, sm), true
		}
	}
	return tally.ContestResult{}, false
}

// Applied returns the last sequence of region reg's stream applied to the
// national totals (0 if none). Consumers resume at Applied+1.
func (r *Reconciler) Applied(reg tally.RegionID) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.totals.LastSeq(reg)
}

func (r *Reconciler) statusMapLocked() map[tally.RegionID]tally.RegionStatus {
	m := make(map[tally.RegionID]tally.RegionStatus, len(r.statuses))
	for _, st := range r.statuses {
		m[st.ID] = st
	}
	return m
}

// contestResultLocked is contest c's result, each region's Reconciled
// being whether it is reconciled in c (contestRec). It sets the statuses
// of c's regions in sm. The caller holds r.mu.
func (r *Reconciler) contestResultLocked(c tally.ContestID, sm map[tally.RegionID]tally.RegionStatus) tally.ContestResult {
	for _, reg := range r.e.ContestRegions(c) {
		if st, ok := sm[reg]; ok {
			st.Reconciled = r.contestRec[reg][c]
			sm[reg] = st
		}
	}
	return r.totals.ContestResult(c, sm)
}

func (r *Reconciler) nationalLocked(office string, sm map[tally.RegionID]tally.RegionStatus) tally.ContestResult {
	var parts []tally.ContestResult
	for _, c := range r.e.OfficeContests(office) {
		parts = append(parts, r.contestResultLocked(c, sm))
	}
	return tally.NationalResult(office, parts)
}

// serverLogger passes the embedded server's log lines to zerolog. Notices
// are lifecycle chatter and go to Debug; debug and trace lines are dropped.
type serverLogger struct{ l zerolog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Debug().Msg(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn().Msg(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error().Msg(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error().Msg(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(string, ...any)           {}
func (s serverLogger) Tracef(string, ...any)           {}
