package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/gateway"
	"github.com/tallyvote/tally/projector"
	"github.com/tallyvote/tally/reconciler"
	"github.com/tallyvote/tally/regional"
)

// Demo runs `tally demo`: a region node per region (each its own embedded
// JetStream server and domain), the hub with its gateway and projector, all
// in one process, and a replay of real results through the regions' intake.
type Demo struct {
	Config DemoConfig
	Logger zerolog.Logger

	out, logOut io.Writer
	election    *loadedElection
	dataDir     string
	tempDir     bool

	rec     *reconciler.Reconciler
	metrics *prometheus.Registry // the hub's: reconciler, projector and gateway
	gw      *gateway.Gateway
	nc      *nats.Conn
	proj    *projector.Service
	pnc     *nats.Conn
	regions map[tally.RegionID]*regional.Node
	links   map[tally.RegionID]*linkProxy // each region's leaf link to the hub
	keys    *officeKeys

	cancel     context.CancelFunc
	wg         sync.WaitGroup
	done       chan struct{}
	replayErr  error
	replayStat ReplayStats
}

// NewDemo returns a Demo with default config that prints the dashboard URL
// and replay progress to out and logs to logOut.
func NewDemo(out, logOut io.Writer) *Demo {
	return &Demo{Config: DefaultDemoConfig(), out: out, logOut: logOut, Logger: zerolog.Nop(), done: make(chan struct{})}
}

// ParseFlags reads the config file, the environment and the flags, in that
// order of precedence, and validates the result.
func (d *Demo) ParseFlags(args []string, getenv func(string) string) error {
	fs := flagSet("demo", d.logOut)
	configPath := fs.String("config", "", "config file (YAML); see configs/demo.yaml")
	httpAddr := fs.String("http", "", "dashboard listen address (default 127.0.0.1:8080)")
	speed := fs.String("speed", "", "replay speed: times real time, or max (default 80)")
	results := fs.String("results", "", "results CSV file(s) in the normalized format, comma-separated (default: the bundled NH and NM data)")
	regions := fs.Int("regions", 0, "regions per state (default 2)")
	seed := fs.Int64("seed", 0, "reporting order seed (default 1)")
	night := fs.Duration("night", 0, "length of the replayed night (default 4h)")
	corrections := fs.Float64("corrections", -1, "share of precincts whose final count is corrected (default 0.02)")
	outage := fs.String("outage", "", "cut regions' links to the hub during the replay: REGION:AFTER:FOR[,...], e.g. nh-1:30s:20s")
	dataDir := fs.String("data", "", "directory for the JetStream stores (default: a temporary directory, removed at exit)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo: unexpected argument %q", fs.Arg(0))
	}
	c := &d.Config
	return layerConfig(fs, *configPath, c, getenv, map[string]func(string) error{
		"TALLY_HTTP_ADDR":    setString(&c.HTTP.Addr),
		"TALLY_ADMIN_TOKEN":  setString(&c.HTTP.AdminToken),
		"TALLY_REPLAY_SPEED": setString(&c.Replay.Speed),
		"TALLY_LOG_LEVEL":    setString(&c.Log.Level),
	}, map[string]func(){
		"http":        func() { c.HTTP.Addr = *httpAddr },
		"speed":       func() { c.Replay.Speed = *speed },
		"results":     func() { c.Election.Results, c.Election.File = *results, "" },
		"regions":     func() { c.Election.Regions = *regions },
		"seed":        func() { c.Replay.Seed = *seed },
		"night":       func() { c.Replay.Night = Duration(*night) },
		"corrections": func() { c.Replay.Corrections = *corrections },
		"data":        func() { c.DataDir = *dataDir },
		"outage":      func() { c.Outages = *outage },
		"log-level":   func() { c.Log.Level = *logLevel },
	})
}

// Run opens the hub, the gateway, the projector and every region, then
// starts the replay in the background and returns. Done is closed when the
// replay ends. Without an admin token configured, it makes a random one.
func (d *Demo) Run(ctx context.Context) error {
	if d.logOut != nil {
		d.Logger = newLogger(d.logOut, d.Config.Log, "demo")
	}
	le, err := loadElection(d.Config.Election)
	if err != nil {
		return fmt.Errorf("election: %w", err)
	}
	if le.Counts == nil {
		return fmt.Errorf("election: the demo replays a results file; set election.results")
	}
	d.election = le
	d.dataDir = d.Config.DataDir
	if d.dataDir == "" {
		if d.dataDir, err = os.MkdirTemp("", "tally-demo-"); err != nil {
			return err
		}
		d.tempDir = true
	}
	e := le.Election
	if d.Config.HTTP.AdminToken == "" {
		d.Config.HTTP.AdminToken = newAdminToken()
	}
	outages, err := parseOutages(d.Config.Outages, e)
	if err != nil {
		return fmt.Errorf("outage: %w", err)
	}
	d.metrics = newRegistry()
	d.rec, d.gw, d.nc, err = openHub(ctx, e, reconciler.Config{
		Election: e,
		NATS:     reconciler.NATSConfig{StoreDir: filepath.Join(d.dataDir, "hub")},
		Logger:   d.Logger,
	}, gateway.Config{Addr: d.Config.HTTP.Addr, AdminToken: d.Config.HTTP.AdminToken, Links: d, Metrics: d.metrics}, d.Logger)
	if err != nil {
		return err
	}
	// Each region reaches the hub's leaf port through a proxy that the
	// admin API (and --outage) can cut, as a network outage would.
	d.links = map[tally.RegionID]*linkProxy{}
	hubLeaf := strings.TrimPrefix(d.rec.LeafURL(), "nats-leaf://")
	for _, r := range e.Regions {
		p, err := newLinkProxy(hubLeaf)
		if err != nil {
			return fmt.Errorf("region %s: link: %w", r.ID, err)
		}
		d.links[r.ID] = p
	}
	var off string
	d.proj, d.pnc, off, err = openProjector(ctx, le, d.Config.Projector, d.rec.ClientURL(), d.rec.ClientOptions(), d.Logger)
	if err != nil {
		return err
	}
	if err := registerProjector(d.metrics, d.proj); err != nil {
		return err
	}
	// One office per county, with its own key pair in the data directory;
	// the regions require their signatures and the replay signs with them.
	d.keys, err = writeCountyOffices(e, filepath.Join(d.dataDir, "keys-"+time.Now().UTC().Format("20060102T150405.000000000")))
	if err != nil {
		return fmt.Errorf("office keys: %w", err)
	}
	keys := d.keys
	d.regions = map[tally.RegionID]*regional.Node{}
	intake := map[tally.RegionID]string{}
	for _, r := range e.Regions {
		n, err := regional.New(d.regionConfig(r.ID))
		if err == nil {
			err = n.Open(ctx)
		}
		if err != nil {
			return fmt.Errorf("region %s: %w", r.ID, err)
		}
		d.regions[r.ID] = n
		intake[r.ID] = "http://" + n.HTTPAddr()
	}
	var names []string
	for _, r := range e.Regions {
		names = append(names, string(r.ID))
	}
	fmt.Fprintf(d.out, "tally demo: %s, %d precincts, %d contests, regions %s\n",
		e.Name, len(e.Precincts), len(e.Contests), strings.Join(names, ", "))
	fmt.Fprintf(d.out, "dashboard: %s\n", d.URL())
	switch {
	case off != "":
		fmt.Fprintf(d.out, "projections: off: %s\n", off)
	case d.Config.Projector.ManualCalls:
		fmt.Fprintf(d.out, "projections: on, baseline %d; manual calls: POST %sapi/v1/admin/calls with Authorization: Bearer %s\n",
			baselineYear(e), d.URL(), d.Config.HTTP.AdminToken)
	default:
		fmt.Fprintf(d.out, "projections: on, baseline %d; manual calls off\n", baselineYear(e))
	}
	fmt.Fprintf(d.out, "take a region offline and back: curl -X POST -H 'Authorization: Bearer %s' -d '{\"up\":false}' %sapi/v1/admin/regions/%s/link (then {\"up\":true})\n",
		d.Config.HTTP.AdminToken, d.URL(), e.Regions[0].ID)

	rctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	offices := 0
	for _, list := range keys.Offices {
		offices += len(list)
	}
	fmt.Fprintf(d.out, "office keys: %d offices (one per county) in %s; every report is signed\n", offices, keys.dir)
	rp := &Replayer{Election: e, Counts: le.Counts, Intake: intake, Config: d.Config.Replay, Progress: d.out, Signers: keys.signers}
	for _, o := range outages {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.runOutage(rctx, o)
		}()
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(d.done)
		d.replayStat, d.replayErr = rp.Run(rctx)
		if d.replayErr != nil {
			if !errors.Is(d.replayErr, errReplayIncomplete) || rctx.Err() == nil {
				fmt.Fprintf(d.out, "replay failed: %v\n", d.replayErr)
			}
			return
		}
		fmt.Fprintf(d.out, "replay finished: %d reports (%d corrections) in %s; the dashboard keeps running (Ctrl-C to stop): %s\n",
			d.replayStat.Reports, d.replayStat.Corrections, d.replayStat.Elapsed.Truncate(time.Millisecond), d.URL())
	}()
	return nil
}

// regionConfig is the demo's config of region r's node: its store in the
// data directory, a leaf link to the hub with the hub's credentials, and its
// county offices, whose signatures it requires.
func (d *Demo) regionConfig(r tally.RegionID) regional.Config {
	leafUser, leafPassword := d.rec.LeafCredentials()
	return regional.Config{
		Region:   r,
		Election: d.election.Election,
		NATS: regional.NATSConfig{
			StoreDir:    filepath.Join(d.dataDir, "region-"+string(r)),
			HubURL:      "nats-leaf://" + d.links[r].Addr(),
			HubUser:     leafUser,
			HubPassword: leafPassword,
		},
		HTTP: regional.HTTPConfig{Addr: "127.0.0.1:0"},
		// Checkpoints every 2 s, so the dashboard shows a region verified
		// (or not) within moments of a change; the store syncs as a
		// region's default does (always).
		CheckpointInterval: 2 * time.Second,
		Offices:            d.keys.Offices[r],
		RequireSignatures:  true,
		Logger:             d.Logger.With().Str("component", "region").Logger(),
	}
}

// URL is the dashboard's address.
func (d *Demo) URL() string {
	if d.gw == nil {
		return ""
	}
	return "http://" + d.gw.Addr() + "/"
}

// ReplayDone is closed when the replay has ended; ReplayResult then tells how.
func (d *Demo) ReplayDone() <-chan struct{} { return d.done }

// ReplayResult returns the replay's statistics and error, once ReplayDone is closed.
func (d *Demo) ReplayResult() (ReplayStats, error) { return d.replayStat, d.replayErr }

// Close stops the replay, closes the regions, the projector, the gateway and
// the hub, and removes a temporary data directory. It is safe to call more
// than once.
func (d *Demo) Close() error {
	if d.cancel != nil {
		d.cancel()
		d.wg.Wait()
		d.cancel = nil
	}
	var errs []error
	for id, n := range d.regions {
		if err := n.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close region %s: %w", id, err))
		}
	}
	d.regions = nil
	for _, p := range d.links {
		errs = append(errs, p.Close())
	}
	d.links = nil
	errs = append(errs, closeProjector(d.proj, d.pnc), closeHub(d.rec, d.gw, d.nc))
	d.proj, d.pnc, d.rec, d.gw, d.nc = nil, nil, nil, nil, nil
	if d.tempDir {
		errs = append(errs, os.RemoveAll(d.dataDir))
		d.tempDir = false
	}
	return errors.Join(errs...)
}

// SetRegionLink cuts region r's link to the hub (up false) or restores it:
// the admin API's POST /api/v1/admin/regions/{id}/link. The region keeps
// taking reports while cut off; the hub marks it offline and its contests
// partial, and catches up when the link returns.
func (d *Demo) SetRegionLink(r tally.RegionID, up bool) error {
	p := d.links[r]
	if p == nil {
		return tally.Errorf(tally.ENOTFOUND, "region %q: no link to cut", r)
	}
	if p.Up() != up {
		fmt.Fprintf(d.out, "region %s: link to the hub %s\n", r, map[bool]string{true: "restored", false: "cut"}[up])
	}
	p.SetUp(up)
	return nil
}

// outage is one scheduled cut of a region's link: After the replay starts,
// For as long.
type outage struct {
	Region     tally.RegionID
	After, For time.Duration
}

// parseOutages reads REGION:AFTER:FOR[,...].
func parseOutages(s string, e *tally.Election) ([]outage, error) {
	var out []outage
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		parts := strings.Split(item, ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("%q: want REGION:AFTER:FOR, e.g. nh-1:30s:20s", item)
		}
		o := outage{Region: tally.RegionID(parts[0])}
		if e.Region(o.Region) == nil {
			return nil, fmt.Errorf("%q: no region %q in the election", item, parts[0])
		}
		var err error
		if o.After, err = time.ParseDuration(parts[1]); err != nil || o.After < 0 {
			return nil, fmt.Errorf("%q: after: want a duration like 30s", item)
		}
		if o.For, err = time.ParseDuration(parts[2]); err != nil || o.For <= 0 {
			return nil, fmt.Errorf("%q: for: want a positive duration like 20s", item)
		}
		out = append(out, o)
	}
	return out, nil
}

// runOutage cuts o.Region's link after o.After and restores it o.For later,
// or when ctx ends.
func (d *Demo) runOutage(ctx context.Context, o outage) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(o.After):
	}
	_ = d.SetRegionLink(o.Region, false)
	select {
	case <-ctx.Done():
	case <-time.After(o.For):
	}
	_ = d.SetRegionLink(o.Region, true)
}
