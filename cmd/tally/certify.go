package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"sigs.k8s.io/yaml"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/reconciler"
)

// eventSource is where tally export, verify and report read stored events:
// an exported event log, or NATS — the hub's mirrors of every region (and
// its audit and calls streams), or one region's stream. It also says which
// election the events are of.
type eventSource struct {
	Log      string // an exported event log (tally export); else NATS
	URL      string
	User     string
	Domain   string // JetStream domain; "" = the server's own
	CA       string
	Region   string // read this region only
	Stream   string // with Region: the stream to read; "" = the hub's mirror of it
	Election ElectionSource

	password string
	// offices are the offices listed by a region config, by region.
	offices map[tally.RegionID][]tally.Office
	require *bool
	// Options are added to the NATS connection's options (tests use them
	// for the in-process hub's credentials).
	Options []nats.Option
}

// flags registers the source's flags on fs. The returned function, called
// once fs is parsed, fills the source from, in rising order of precedence,
// the defaults, the config file, the environment (TALLY_NATS_URL,
// TALLY_NATS_PASSWORD) and the flags the user set, and checks the result.
func (s *eventSource) flags(fs *flag.FlagSet) func(getenv func(string) string) error {
	configPath := fs.String("config", "", "a hub or region config (YAML or JSON): its election, NATS address, user and TLS CA, and a region's offices")
	log := fs.String("log", "", "read an event log written by tally export instead of NATS")
	url := fs.String("nats", "", "NATS URL of the hub (default: the config's, or nats://127.0.0.1:4222); of a region with --stream RESULTS")
	user := fs.String("user", "", "NATS user (default: the config's, or \"hub\"); the password comes from TALLY_NATS_PASSWORD")
	domain := fs.String("domain", "", "JetStream domain (default: the server's own; the region with --stream RESULTS)")
	ca := fs.String("ca", "", "PEM file of CAs to trust for a TLS NATS port")
	region := fs.String("region", "", "read this region only")
	stream := fs.String("stream", "", "with --region: the stream to read (default: the hub's mirror of the region; RESULTS on the region's own server)")
	electionSet := electionFlags(fs, &s.Election)
	return func(getenv func(string) string) error {
		if *configPath != "" {
			if err := s.loadConfig(*configPath); err != nil {
				return err
			}
		}
		if v := getenv("TALLY_NATS_URL"); v != "" {
			s.URL = v
		}
		if v := getenv("TALLY_NATS_PASSWORD"); v != "" {
			s.password = v
		}
		setFlags(fs, electionSet)
		setFlags(fs, map[string]func(){
			"log": func() { s.Log = *log }, "nats": func() { s.URL = *url }, "user": func() { s.User = *user },
			"domain": func() { s.Domain = *domain }, "ca": func() { s.CA = *ca },
			"region": func() { s.Region = *region }, "stream": func() { s.Stream = *stream },
		})
		if fs.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		if s.URL == "" {
			s.URL = "nats://127.0.0.1:4222"
		}
		if s.User == "" {
			s.User = "hub"
		}
		if s.Stream != "" && s.Region == "" {
			return fmt.Errorf("--stream needs --region")
		}
		if s.Stream == tally.ResultsStream && s.Domain == "" {
			s.Domain = s.Region
		}
		if s.Log == "" && s.Election.File == "" && s.Election.Results == "" {
			return fmt.Errorf("which election? set --election, --results or --config")
		}
		return nil
	}
}

// loadConfig takes the election and NATS settings of a hub or a region
// config: a config with a "region" field is a region's.
func (s *eventSource) loadConfig(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(j, &probe); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if _, ok := probe["region"]; ok {
		c := DefaultRegionConfig()
		if err := loadConfigFile(path, &c); err != nil {
			return err
		}
		if err := c.Validate(); err != nil {
			return err
		}
		if err := c.loadOffices(); err != nil {
			return err
		}
		s.Election, s.Region, s.Stream, s.User = c.Election, c.Region, tally.ResultsStream, "tally-node"
		s.URL, s.Domain = c.NATS.URL, c.NATS.Domain
		if s.URL == "" {
			s.URL = fmt.Sprintf("nats://%s:%d", c.NATS.Host, c.NATS.Port)
		}
		if s.Domain == "" {
			s.Domain = c.Region
		}
		s.CA = c.NATS.TLS.CA
		if s.password, err = readSecret(c.NATS.PasswordFile); err != nil {
			return fmt.Errorf("nats.password_file: %w", err)
		}
		if len(c.Offices) > 0 {
			s.offices = map[tally.RegionID][]tally.Office{tally.RegionID(c.Region): c.Offices}
			req := c.requireSignatures()
			s.require = &req
		}
		return nil
	}
	c := DefaultHubConfig()
	if err := loadConfigFile(path, &c); err != nil {
		return err
	}
	s.Election, s.User, s.URL, s.CA = c.Election, c.NATS.User, c.NATS.URL, c.NATS.TLS.CA
	if s.URL == "" {
		s.URL = fmt.Sprintf("nats://%s:%d", c.NATS.Host, c.NATS.Port)
	}
	if s.password, err = readSecret(c.NATS.PasswordFile); err != nil {
		return fmt.Errorf("nats.password_file: %w", err)
	}
	return nil
}

// hub reports whether the source is the hub's mirrors of every region.
func (s *eventSource) hub() bool { return s.Log == "" && s.Region == "" }

// connect connects to NATS and returns the JetStream context of the domain.
func (s *eventSource) connect() (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("tally-certify")}
	if s.password != "" {
		opts = append(opts, nats.UserInfo(s.User, s.password))
	}
	if s.CA != "" {
		tc, err := TLSFiles{CA: s.CA}.client()
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	nc, err := nats.Connect(s.URL, append(opts, s.Options...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("nats %s: %w", s.URL, err)
	}
	var js jetstream.JetStream
	if s.Domain != "" {
		js, err = jetstream.NewWithDomain(nc, s.Domain)
	} else {
		js, err = jetstream.New(nc)
	}
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// read loads the election and reads the events: from the log, or from
// NATS, then closing the connection unless keep is set (the caller closes
// the returned connection then). The log's header says what was read.
func (s *eventSource) read(ctx context.Context, keep bool) (*tally.EventLog, *nats.Conn, jetstream.JetStream, error) {
	if s.Log != "" {
		f, err := os.Open(s.Log)
		if err != nil {
			return nil, nil, nil, err
		}
		defer f.Close()
		l, err := tally.ReadEventLog(f)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", s.Log, err)
		}
		if s.Election.File != "" || s.Election.Results != "" {
			le, err := loadElection(s.Election)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("election: %w", err)
			}
			if le.Election.ID != l.Header.Election {
				return nil, nil, nil, fmt.Errorf("%s: the log is of election %q, not %q", s.Log, l.Header.Election, le.Election.ID)
			}
			l.Election = le.Election
		}
		if l.Election == nil {
			return nil, nil, nil, fmt.Errorf("%s: the log holds no election definition; set --election or --results", s.Log)
		}
		if s.Region != "" {
			r := tally.RegionID(s.Region)
			if l.Election.Region(r) == nil {
				return nil, nil, nil, fmt.Errorf("--region: the election has no region %q", s.Region)
			}
			var evs []tally.StoredEvent
			for _, ev := range l.Events {
				if ev.Region == r {
					evs = append(evs, ev)
				}
			}
			var streams []tally.LogStream
			for _, ls := range l.Header.Streams {
				if ls.Region == r {
					streams = append(streams, ls)
				}
			}
			l.Events, l.Header.Streams, l.Header.Regions = evs, streams, []tally.RegionID{r}
		}
		return l, nil, nil, nil
	}
	le, err := loadElection(s.Election)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("election: %w", err)
	}
	e := le.Election
	if s.Region != "" && e.Region(tally.RegionID(s.Region)) == nil {
		return nil, nil, nil, fmt.Errorf("--region: the election has no region %q", s.Region)
	}
	nc, js, err := s.connect()
	if err != nil {
		return nil, nil, nil, err
	}
	l := &tally.EventLog{Election: e, Header: tally.EventLogHeader{
		Election: e.ID, ElectionName: e.Name, Exported: time.Now().UTC(), Regions: []tally.RegionID{},
	}}
	err = func() error {
		if s.Stream != "" && s.Stream != tally.MirrorStream(tally.RegionID(s.Region)) {
			r := tally.RegionID(s.Region)
			evs, ls, err := reconciler.ReadStream(ctx, js, s.Stream, r)
			if err != nil {
				return err
			}
			l.Events, l.Header.Streams, l.Header.Regions = evs, []tally.LogStream{ls}, []tally.RegionID{r}
			l.Header.Source = fmt.Sprintf("region %s: stream %s at %s", r, s.Stream, s.URL)
			return nil
		}
		h, err := reconciler.ReadHub(ctx, js, e, tally.RegionID(s.Region))
		if err != nil {
			return err
		}
		l.Events, l.Audit, l.Calls, l.Header.Streams = h.Events, h.Audit, h.Calls, h.Streams
		for _, r := range e.Regions {
			if s.Region == "" || string(r.ID) == s.Region {
				l.Header.Regions = append(l.Header.Regions, r.ID)
			}
		}
		l.Header.Source = "hub mirrors at " + s.URL
		if s.Region != "" {
			l.Header.Source = fmt.Sprintf("region %s: hub mirror %s at %s", s.Region, tally.MirrorStream(tally.RegionID(s.Region)), s.URL)
		}
		return nil
	}()
	if err != nil || !keep {
		nc.Close()
		nc, js = nil, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	return l, nc, js, nil
}

// lastSeqs is, per region, the last sequence the streams of l held.
func lastSeqs(l *tally.EventLog) map[tally.RegionID]uint64 {
	m := map[tally.RegionID]uint64{}
	for _, s := range l.Header.Streams {
		if s.Region != "" {
			m[s.Region] = s.LastSeq
		}
	}
	return m
}

// readOffices reads an offices.json (tally keys --counties): the offices
// of every region.
func readOffices(path string) (map[tally.RegionID][]tally.Office, error) {
	var all map[tally.RegionID][]tally.Office
	if err := loadConfigFile(path, &all); err != nil {
		return nil, fmt.Errorf("offices: %w", err)
	}
	return all, nil
}

// resolveOffices resolves each region's offices against e.
func resolveOffices(e *tally.Election, lists map[tally.RegionID][]tally.Office) (map[tally.RegionID]*tally.Offices, error) {
	out := map[tally.RegionID]*tally.Offices{}
	for r, list := range lists {
		if e.Region(r) == nil {
			return nil, fmt.Errorf("offices: the election has no region %q", r)
		}
		offs, err := tally.NewOffices(e, r, list)
		if err != nil {
			return nil, fmt.Errorf("offices: region %s: %s", r, tally.ErrorMessage(err))
		}
		out[r] = offs
	}
	return out, nil
}

// writeOut writes with write to path, or to w when path is "" or "-". A
// file appears whole or not at all: it is written under a temporary name,
// then renamed.
func writeOut(path string, w io.Writer, write func(io.Writer) error) error {
	if path == "" || path == "-" {
		return write(w)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return errors.Join(err, os.Remove(f.Name()))
	}
	return nil
}
