package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/projector"
)

// bundledCrosswalks are the crosswalks of the bundled results.
var bundledCrosswalks = []string{"data/nh_crosswalk_2016_2020.csv", "data/nm_crosswalk_2016_2020.csv"}

// ProjectorConfig configures the projector that `tally hub` and `tally demo`
// run next to the reconciler. It runs only when the election names a
// baseline (an earlier year of the same contests, in the results files) and
// crosswalks are configured.
type ProjectorConfig struct {
	Enabled bool `json:"enabled"`
	// Crosswalks are crosswalk CSV files, comma-separated, or "bundled".
	// A file named "<st>_..." (nh_crosswalk_2016_2020.csv) is that
	// state's; see projector.LoadBaseline.
	Crosswalks string `json:"crosswalks"`
	// Interval is how often projections are brought up to date, at most.
	Interval Duration `json:"interval"`
	// ManualCalls lets admins call and retract races (POST /api/v1/admin/calls,
	// with the gateway's admin token); otherwise the projector refuses them.
	ManualCalls bool `json:"manual_calls"`
}

// DefaultProjectorConfig returns the projector defaults: on, with the
// bundled crosswalks, updating every second, manual calls as given.
func DefaultProjectorConfig(manualCalls bool) ProjectorConfig {
	return ProjectorConfig{Enabled: true, Crosswalks: "bundled", Interval: Duration(time.Second), ManualCalls: manualCalls}
}

func (p ProjectorConfig) validate(field string) error {
	if p.Interval <= 0 {
		return fmt.Errorf("%s.interval: must be positive", field)
	}
	return nil
}

// openProjector opens the projector for le on the hub at hubURL, on its own
// connection. When there is nothing to project, it returns no service and
// off says why. On error, whatever was opened is closed.
func openProjector(ctx context.Context, le *loadedElection, pc ProjectorConfig, hubURL string, natsOpts []nats.Option, l zerolog.Logger) (svc *projector.Service, nc *nats.Conn, off string, err error) {
	year := baselineYear(le.Election)
	switch {
	case !pc.Enabled:
		return nil, nil, "disabled by projector.enabled", nil
	case year == 0:
		return nil, nil, "the election has no earlier year to measure swing against", nil
	case le.Rows == nil:
		return nil, nil, "the election definition comes without earlier results (use election.results)", nil
	case strings.TrimSpace(pc.Crosswalks) == "":
		return nil, nil, "no crosswalks configured (projector.crosswalks)", nil
	}
	cw, err := readCrosswalks(pc.Crosswalks)
	if err != nil {
		return nil, nil, "", fmt.Errorf("projector: %w", err)
	}
	base, err := projector.LoadBaseline(le.Election, le.Rows, year, cw)
	if err != nil {
		return nil, nil, "", fmt.Errorf("projector: baseline %d: %w", year, err)
	}
	if len(base.Contests) == 0 {
		return nil, nil, fmt.Sprintf("the results hold no %d rows for the election's contests", year), nil
	}
	nc, err = nats.Connect(hubURL, append([]nats.Option{nats.Name("tally-projector"), nats.MaxReconnects(-1)}, natsOpts...)...)
	if err != nil {
		return nil, nil, "", fmt.Errorf("connect projector to hub: %w", err)
	}
	svc, err = projector.New(projector.Config{
		Election:    le.Election,
		Baselines:   *base,
		Interval:    time.Duration(pc.Interval),
		AllowManual: pc.ManualCalls,
		Logger:      l.With().Str("component", "projector").Logger(),
	}, nc)
	if err == nil {
		err = svc.Open(ctx)
	}
	if err != nil {
		nc.Close()
		return nil, nil, "", fmt.Errorf("open projector: %w", err)
	}
	return svc, nc, "", nil
}

// closeProjector closes the projector, then drains its connection.
func closeProjector(svc *projector.Service, nc *nats.Conn) error {
	var errs []error
	if svc != nil {
		errs = append(errs, svc.Close())
	}
	if nc != nil {
		errs = append(errs, nc.Drain())
	}
	return errors.Join(errs...)
}

// baselineYear returns the year of the earlier election the contests are
// measured against (the first contest's that names one), or 0.
func baselineYear(e *tally.Election) int {
	for _, c := range e.Contests {
		if c.Baseline != nil && c.Baseline.Year != 0 {
			return c.Baseline.Year
		}
	}
	return 0
}

// readCrosswalks reads the comma-separated crosswalk files of list (or the
// bundled ones), keyed by their names.
func readCrosswalks(list string) (map[string]io.Reader, error) {
	out := map[string]io.Reader{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if name == "bundled" {
			for _, n := range bundledCrosswalks {
				b, err := bundled.ReadFile(n)
				if err != nil {
					return nil, fmt.Errorf("crosswalks: %w", err)
				}
				out[n] = bytes.NewReader(b)
			}
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("crosswalks: %w", err)
		}
		out[name] = bytes.NewReader(b)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("crosswalks: no files named")
	}
	return out, nil
}

// newAdminToken returns a random admin token, for the demo.
func newAdminToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
