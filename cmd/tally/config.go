package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/tallyvote/tally"
)

// Duration is a time.Duration written as "5s", "250ms" or "4h" in config files.
type Duration time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"5s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"5s\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// ElectionSource says where a role gets its election definition. Exactly one
// of File and Results is set; Results "bundled" is the data shipped with Tally.
// Every role of one election must use the same source, so that they agree on
// ids.
type ElectionSource struct {
	File    string `json:"file,omitempty"`    // an election definition, JSON or YAML
	Results string `json:"results,omitempty"` // normalized results CSV files, comma-separated, or "bundled"
	Year    int    `json:"year,omitempty"`    // with Results: the year to run; 0 = the latest
	Regions int    `json:"regions,omitempty"` // with Results: regions per state; 0 = 2
}

func (s ElectionSource) validate(field string) error {
	if s.File != "" && s.Results != "" {
		return fmt.Errorf("%s: set file or results, not both", field)
	}
	if s.File == "" && s.Results == "" {
		return fmt.Errorf("%s: set file (an election definition) or results (a results CSV, or \"bundled\")", field)
	}
	if s.Regions < 0 {
		return fmt.Errorf("%s.regions: must be positive, got %d", field, s.Regions)
	}
	return nil
}

// LogConfig sets up logging.
type LogConfig struct {
	Level  string `json:"level"`  // debug, info, warn, error
	Format string `json:"format"` // json, console, or auto (console on a terminal)
}

func (l LogConfig) validate() error {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: want debug, info, warn or error, got %q", l.Level)
	}
	switch l.Format {
	case "json", "console", "auto":
	default:
		return fmt.Errorf("log.format: want json, console or auto, got %q", l.Format)
	}
	return nil
}

// RegionConfig configures `tally region`.
type RegionConfig struct {
	Region   string         `json:"region"`
	Election ElectionSource `json:"election"`
	NATS     struct {
		URL    string `json:"url,omitempty"`    // external NATS (comma-separated URLs of a cluster); empty = embedded server
		Domain string `json:"domain,omitempty"` // JetStream domain on external NATS; empty = the region id
		// Replicas is the RESULTS stream's replica count on external NATS
		// (3 on a three-node cluster); 0 = 1. An embedded server holds one.
		Replicas int    `json:"replicas,omitempty"`
		Host     string `json:"host"`
		Port     int    `json:"port"`      // client port; 0 = random
		StoreDir string `json:"store_dir"` // JetStream store of the embedded server
		// Sync is when the embedded server fsyncs the store: "always"
		// (before each acknowledgement: acknowledged reports survive a
		// power loss) or an interval such as "1s" (faster; a power loss
		// can lose what was acknowledged within it). See DURABILITY.md.
		Sync string `json:"sync"`
		Hub  string `json:"hub"` // the hub's leaf-node URL; empty = no link
		// HubUser is the leaf link's user; its password comes from
		// HubPasswordFile or TALLY_NATS_HUB_PASSWORD, never the config.
		HubUser         string   `json:"hub_user,omitempty"`
		HubPasswordFile string   `json:"hub_password_file,omitempty"`
		HubPassword     string   `json:"-"`
		HubTLS          TLSFiles `json:"hub_tls"` // ca: to check the hub's certificate; cert+key or ca turn TLS on
		TLS             TLSFiles `json:"tls"`     // the client port
		// PasswordFile (or TALLY_NATS_PASSWORD) sets the password of the
		// node's own NATS user, "tally-node", for tools such as tally
		// verify; unset = a random one per run.
		PasswordFile string `json:"password_file,omitempty"`
		Password     string `json:"-"`
	} `json:"nats"`
	HTTP struct {
		Addr     string   `json:"addr"`
		MaxBody  int64    `json:"max_body"`
		MaxBatch int      `json:"max_batch"`
		TLS      TLSFiles `json:"tls"`
		// OfficeRate and OfficeBurst are each office's token bucket on the
		// intake (HTTP and NATS together): reports per second, and reports.
		OfficeRate  float64 `json:"office_rate"`
		OfficeBurst int     `json:"office_burst"`
	} `json:"http"`
	// Offices are the region's reporting offices, each with its public key
	// and the precincts (or counties) it may report for.
	Offices []tally.Office `json:"offices,omitempty"`
	// OfficesFile is an offices.json made by `tally keys --counties`: the
	// offices of every region, of which this region's are added to Offices.
	OfficesFile string `json:"offices_file,omitempty"`
	// RequireSignatures refuses unsigned reports; unset = true when offices
	// are listed.
	RequireSignatures *bool    `json:"require_signatures,omitempty"`
	DuplicateWindow   Duration `json:"duplicate_window"`
	// CheckpointInterval is how often the node stores a checkpoint of its
	// totals in its stream, when reports arrived since the last one.
	CheckpointInterval Duration  `json:"checkpoint_interval"`
	Log                LogConfig `json:"log"`
}

// requireSignatures is RequireSignatures with its default applied.
func (c *RegionConfig) requireSignatures() bool {
	if c.RequireSignatures != nil {
		return *c.RequireSignatures
	}
	return len(c.Offices) > 0 || c.OfficesFile != ""
}

// loadOffices adds this region's offices from OfficesFile to Offices.
func (c *RegionConfig) loadOffices() error {
	if c.OfficesFile == "" {
		return nil
	}
	var all map[tally.RegionID][]tally.Office
	if err := loadConfigFile(c.OfficesFile, &all); err != nil {
		return fmt.Errorf("offices_file: %w", err)
	}
	if len(all[tally.RegionID(c.Region)]) == 0 {
		return fmt.Errorf("offices_file: %s lists no office of region %q", c.OfficesFile, c.Region)
	}
	c.Offices = append(c.Offices, all[tally.RegionID(c.Region)]...)
	c.OfficesFile = ""
	return nil
}

// DefaultRegionConfig returns the defaults of `tally region`.
func DefaultRegionConfig() RegionConfig {
	var c RegionConfig
	c.NATS.Host = "127.0.0.1"
	c.NATS.Port = 4222
	c.NATS.StoreDir = "tally-data/region"
	c.NATS.Sync = "always"
	c.NATS.HubUser = "leaf"
	c.HTTP.Addr = "127.0.0.1:8081"
	c.HTTP.MaxBody = 8 << 20
	c.HTTP.MaxBatch = 5000
	c.HTTP.OfficeRate = 2000
	c.HTTP.OfficeBurst = 20000
	c.DuplicateWindow = Duration(time.Hour)
	c.CheckpointInterval = Duration(10 * time.Second) // regional.DefaultCheckpointInterval
	c.Log = LogConfig{Level: "info", Format: "auto"}
	return c
}

// Validate reports the first problem of c, naming the field.
func (c *RegionConfig) Validate() error {
	if err := tally.ValidToken(c.Region); err != nil {
		return fmt.Errorf("region: %v", err)
	}
	if err := c.Election.validate("election"); err != nil {
		return err
	}
	if c.NATS.URL == "" {
		if c.NATS.StoreDir == "" {
			return fmt.Errorf("nats.store_dir: required with an embedded server")
		}
		if c.NATS.Port < 0 || c.NATS.Port > 65535 {
			return fmt.Errorf("nats.port: %d is not a port", c.NATS.Port)
		}
	}
	if err := validReplicas(c.NATS.Replicas, c.NATS.URL); err != nil {
		return err
	}
	if _, err := parseSync(c.NATS.Sync); err != nil {
		return fmt.Errorf("nats.sync: %v", err)
	}
	if c.CheckpointInterval <= 0 {
		return fmt.Errorf("checkpoint_interval: must be positive")
	}
	if c.HTTP.Addr == "" {
		return fmt.Errorf("http.addr: required")
	}
	if c.HTTP.MaxBody <= 0 {
		return fmt.Errorf("http.max_body: must be positive")
	}
	if c.HTTP.MaxBatch <= 0 {
		return fmt.Errorf("http.max_batch: must be positive")
	}
	if c.DuplicateWindow <= 0 {
		return fmt.Errorf("duplicate_window: must be positive")
	}
	if c.requireSignatures() && len(c.Offices) == 0 && c.OfficesFile == "" {
		return fmt.Errorf("require_signatures: true, but no offices are listed")
	}
	if c.HTTP.OfficeRate == 0 || c.HTTP.OfficeBurst <= 0 {
		return fmt.Errorf("http.office_rate, http.office_burst: must be positive (office_rate -1 = no limit)")
	}
	for _, t := range []struct {
		f string
		v TLSFiles
	}{{"nats.tls", c.NATS.TLS}, {"nats.hub_tls", c.NATS.HubTLS}, {"http.tls", c.HTTP.TLS}} {
		if err := t.v.validate(t.f); err != nil {
			return err
		}
	}
	return c.Log.validate()
}

// HubConfig configures `tally hub`: the reconciler and a gateway.
type HubConfig struct {
	Election ElectionSource `json:"election"`
	NATS     struct {
		URL string `json:"url,omitempty"` // external NATS (comma-separated URLs of a cluster); empty = embedded server
		// Replicas is the replica count of the hub's streams and buckets on
		// external NATS (3 on a three-node cluster); 0 = 1.
		Replicas int    `json:"replicas,omitempty"`
		Host     string `json:"host"`
		Port     int    `json:"port"`      // client port, for gateways
		LeafPort int    `json:"leaf_port"` // leaf-node port, for regions
		StoreDir string `json:"store_dir"`
		// LeafUser is the user regions' leaf links log in as; its password
		// comes from LeafPasswordFile or TALLY_NATS_LEAF_PASSWORD.
		LeafUser         string `json:"leaf_user"`
		LeafPasswordFile string `json:"leaf_password_file,omitempty"`
		LeafPassword     string `json:"-"`
		// User is the client port's user (gateways, projector); its
		// password comes from PasswordFile or TALLY_NATS_PASSWORD; no
		// password = a random one per run (in-process clients only).
		User         string   `json:"user"`
		PasswordFile string   `json:"password_file,omitempty"`
		Password     string   `json:"-"`
		TLS          TLSFiles `json:"tls"`      // the client port
		LeafTLS      TLSFiles `json:"leaf_tls"` // the leaf-node port
	} `json:"nats"`
	HTTP struct {
		Addr string `json:"addr"` // the gateway: dashboard and API
		// AdminTokenFile (or TALLY_ADMIN_TOKEN) holds the token that the
		// admin API requires; none disables the admin API.
		AdminTokenFile string   `json:"admin_token_file,omitempty"`
		AdminToken     string   `json:"-"`
		TLS            TLSFiles `json:"tls"`
		RateLimit      float64  `json:"rate_limit"` // requests per second per client IP; -1 = no limit
		RateBurst      int      `json:"rate_burst"`
	} `json:"http"`
	Projector       ProjectorConfig `json:"projector"`
	PublishInterval Duration        `json:"publish_interval"`
	OfflineAfter    Duration        `json:"offline_after"`
	// SnapshotInterval is how often the reconciler saves its state (when
	// enough changed, reconciler.Config.SnapshotInterval) to resume from
	// after a crash; CatchUpTimeout
	// bounds how long a restarted hub applies what its mirrors hold before
	// it first publishes.
	SnapshotInterval Duration  `json:"snapshot_interval"`
	CatchUpTimeout   Duration  `json:"catch_up_timeout"`
	Log              LogConfig `json:"log"`
}

// DefaultHubConfig returns the defaults of `tally hub`.
func DefaultHubConfig() HubConfig {
	var c HubConfig
	c.NATS.Host = "127.0.0.1"
	c.NATS.Port = 4222
	c.NATS.LeafPort = 7422
	c.NATS.StoreDir = "tally-data/hub"
	c.NATS.LeafUser = "leaf"
	c.NATS.User = "hub"
	c.HTTP.Addr = "127.0.0.1:8080"
	c.HTTP.RateLimit = 50
	c.HTTP.RateBurst = 200
	c.PublishInterval = Duration(100 * time.Millisecond)
	c.OfflineAfter = Duration(5 * time.Second)
	c.SnapshotInterval = Duration(2 * time.Second) // reconciler.DefaultSnapshotInterval
	c.CatchUpTimeout = Duration(30 * time.Second)  // reconciler.DefaultCatchUpTimeout
	c.Projector = DefaultProjectorConfig(false)
	c.Log = LogConfig{Level: "info", Format: "auto"}
	return c
}

// Validate reports the first problem of c, naming the field.
func (c *HubConfig) Validate() error {
	if err := c.Election.validate("election"); err != nil {
		return err
	}
	if c.NATS.URL == "" {
		if c.NATS.StoreDir == "" {
			return fmt.Errorf("nats.store_dir: required with an embedded server")
		}
		for _, p := range []struct {
			name string
			v    int
		}{{"nats.port", c.NATS.Port}, {"nats.leaf_port", c.NATS.LeafPort}} {
			if p.v < 0 || p.v > 65535 {
				return fmt.Errorf("%s: %d is not a port", p.name, p.v)
			}
		}
	}
	if err := validReplicas(c.NATS.Replicas, c.NATS.URL); err != nil {
		return err
	}
	if c.HTTP.Addr == "" {
		return fmt.Errorf("http.addr: required")
	}
	if c.HTTP.RateLimit == 0 || c.HTTP.RateBurst <= 0 {
		return fmt.Errorf("http.rate_limit, http.rate_burst: must be positive (rate_limit -1 = no limit)")
	}
	for _, t := range []struct {
		f string
		v TLSFiles
	}{{"nats.tls", c.NATS.TLS}, {"nats.leaf_tls", c.NATS.LeafTLS}, {"http.tls", c.HTTP.TLS}} {
		if err := t.v.validate(t.f); err != nil {
			return err
		}
	}
	if c.PublishInterval <= 0 {
		return fmt.Errorf("publish_interval: must be positive")
	}
	if c.OfflineAfter <= 0 {
		return fmt.Errorf("offline_after: must be positive")
	}
	if c.SnapshotInterval <= 0 {
		return fmt.Errorf("snapshot_interval: must be positive")
	}
	if c.CatchUpTimeout <= 0 {
		return fmt.Errorf("catch_up_timeout: must be positive")
	}
	if err := c.Projector.validate("projector"); err != nil {
		return err
	}
	return c.Log.validate()
}

// validReplicas checks nats.replicas: 0 (one) to 5, and more than one only
// on external NATS (url set).
func validReplicas(n int, url string) error {
	if n < 0 || n > 5 {
		return fmt.Errorf("nats.replicas: want 1 to 5, got %d", n)
	}
	if n > 1 && url == "" {
		return fmt.Errorf("nats.replicas: %d needs an external NATS cluster (nats.url); the embedded server holds one replica", n)
	}
	return nil
}

// DemoConfig configures `tally demo`: regions, hub, gateway and a replay in
// one process.
type DemoConfig struct {
	Election ElectionSource `json:"election"`
	HTTP     struct {
		Addr string `json:"addr"` // the dashboard
		// AdminToken is the admin API's token, from TALLY_ADMIN_TOKEN;
		// empty = a random one, printed.
		AdminToken string `json:"-"`
	} `json:"http"`
	DataDir string `json:"data_dir,omitempty"` // JetStream stores; empty = a temporary directory
	// Outages cuts regions' links to the hub during the replay:
	// REGION:AFTER:FOR[,...] (see tally demo -h).
	Outages   string          `json:"outages,omitempty"`
	Projector ProjectorConfig `json:"projector"`
	Replay    ReplayConfig    `json:"replay"`
	Log       LogConfig       `json:"log"`
}

// ReplayConfig says how results are replayed through the intake.
type ReplayConfig struct {
	Speed       string   `json:"speed"`       // times real time, or "max"
	Night       Duration `json:"night"`       // how long the replayed night lasts in real time
	Seed        int64    `json:"seed"`        // reporting order; the same seed gives the same order
	Batch       int      `json:"batch"`       // reports per request, at most
	Partial     float64  `json:"partial"`     // share of precincts that send a partial count first
	Corrections float64  `json:"corrections"` // share of precincts whose final count is corrected
	// Retries is the share of batches sent a second time after they were
	// accepted, as by an office that missed the answer; the intake must
	// answer every report as a duplicate of its first sequence.
	Retries float64 `json:"retries"`
}

func (r ReplayConfig) validate(field string) error {
	if _, err := parseSpeed(r.Speed); err != nil {
		return fmt.Errorf("%s.speed: %v", field, err)
	}
	if r.Night <= 0 {
		return fmt.Errorf("%s.night: must be positive", field)
	}
	if r.Batch <= 0 {
		return fmt.Errorf("%s.batch: must be positive", field)
	}
	if r.Partial < 0 || r.Partial > 1 {
		return fmt.Errorf("%s.partial: must be between 0 and 1", field)
	}
	if r.Corrections < 0 || r.Corrections > 1 {
		return fmt.Errorf("%s.corrections: must be between 0 and 1", field)
	}
	if r.Retries < 0 || r.Retries > 1 {
		return fmt.Errorf("%s.retries: must be between 0 and 1", field)
	}
	return nil
}

// parseSpeed reads a replay speed: a positive factor, or "max" (returned as 0).
func parseSpeed(s string) (float64, error) {
	if s == "max" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("want a positive number or \"max\", got %q", s)
	}
	return f, nil
}

// DefaultReplayConfig returns the replay defaults: a four-hour night at 80
// times real time (three minutes).
func DefaultReplayConfig() ReplayConfig {
	return ReplayConfig{Speed: "80", Night: Duration(4 * time.Hour), Seed: 1, Batch: 200, Partial: 0.6, Corrections: 0.02, Retries: 0.02}
}

// DefaultDemoConfig returns the defaults of `tally demo`.
func DefaultDemoConfig() DemoConfig {
	var c DemoConfig
	c.Election = ElectionSource{Results: "bundled", Regions: 2}
	c.HTTP.Addr = "127.0.0.1:8080"
	c.Replay = DefaultReplayConfig()
	c.Projector = DefaultProjectorConfig(true)
	c.Log = LogConfig{Level: "info", Format: "auto"}
	return c
}

// Validate reports the first problem of c, naming the field.
func (c *DemoConfig) Validate() error {
	if err := c.Election.validate("election"); err != nil {
		return err
	}
	if c.HTTP.Addr == "" {
		return fmt.Errorf("http.addr: required")
	}
	if err := c.Replay.validate("replay"); err != nil {
		return err
	}
	if err := c.Projector.validate("projector"); err != nil {
		return err
	}
	return c.Log.validate()
}

// loadConfigFile reads a YAML (or JSON) config file into v, refusing unknown
// fields so that a misspelt setting is an error, not a silent default.
func loadConfigFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %v", path, strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// applyEnv sets fields from TALLY_* environment variables. Each entry maps a
// variable to a setter; an unparsable value is an error naming the variable.
func applyEnv(getenv func(string) string, setters map[string]func(string) error) error {
	for name, set := range setters {
		if v := getenv(name); v != "" {
			if err := set(v); err != nil {
				return fmt.Errorf("%s: %v", name, err)
			}
		}
	}
	return nil
}

func setString(p *string) func(string) error { return func(v string) error { *p = v; return nil } }

func setInt(p *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", v)
		}
		*p = n
		return nil
	}
}

// electionFlags registers --election, --results and --regions on fs and
// returns, by flag name, what applies each to src once the flags are parsed.
func electionFlags(fs *flag.FlagSet, src *ElectionSource) map[string]func() {
	election := fs.String("election", "", "election definition file (JSON or YAML)")
	results := fs.String("results", "", "results CSV file(s), comma-separated, or \"bundled\", to build the election from")
	regions := fs.Int("regions", 0, "with --results: regions per state")
	return map[string]func(){
		"election": func() { *src = ElectionSource{File: *election} },
		"results":  func() { *src = ElectionSource{Results: *results, Regions: src.Regions, Year: src.Year} },
		"regions":  func() { src.Regions = *regions },
	}
}

// layerConfig fills cfg from, in rising order of precedence, the config
// file at path (when set), the environment and the flags the user set on fs
// (already parsed), then validates it.
func layerConfig(fs *flag.FlagSet, path string, cfg interface{ Validate() error }, getenv func(string) string, env map[string]func(string) error, flags ...map[string]func()) error {
	if path != "" {
		if err := loadConfigFile(path, cfg); err != nil {
			return err
		}
	}
	if err := applyEnv(getenv, env); err != nil {
		return err
	}
	for _, f := range flags {
		setFlags(fs, f)
	}
	return cfg.Validate()
}
