package reconciler

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tallyvote/tally"
)

// applyBuckets are the buckets of the apply latency, in seconds: decoding,
// validating and merging one event takes microseconds, waiting for the lock
// behind a publish longer.
var applyBuckets = []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1}

// metrics are the reconciler's Prometheus metrics: the apply latency,
// observed on the hot path, and a collector reading the region statuses the
// health loop keeps and the last national revision, at scrape time.
type metrics struct {
	apply prometheus.Histogram
	// rev is the revision of the last key written to the national bucket.
	rev atomic.Uint64
}

func (r *Reconciler) registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		reg = prometheus.NewRegistry() // counted, not exposed
	}
	r.metrics.apply = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tally_reconciler_apply_duration_seconds",
		Help:    "Time to apply one mirrored event to the national totals (decode, validate, wait for the state lock, merge).",
		Buckets: applyBuckets,
	})
	for _, c := range []prometheus.Collector{r.metrics.apply, regionCollector{r}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

var (
	descMirrorLastSeq = prometheus.NewDesc("tally_mirror_last_seq",
		"The last region stream sequence in the hub's mirror of the region (as of the last health check).", []string{"region"}, nil)
	descMirrorLag = prometheus.NewDesc("tally_mirror_lag",
		"Events the mirror is behind the region, as the mirror last learned it (stale while the region is cut off).", []string{"region"}, nil)
	descMirrorActive = prometheus.NewDesc("tally_mirror_last_active_seconds",
		"Seconds since the mirror last heard from the region (an event or an idle heartbeat); absent until it has.", []string{"region"}, nil)
	descApplied = prometheus.NewDesc("tally_region_applied_seq",
		"The last region stream sequence applied to the national totals.", []string{"region"}, nil)
	descStatus = prometheus.NewDesc("tally_region_status",
		"1 for the region's current status (live, lagging or offline), 0 for the others.", []string{"region", "status"}, nil)
	descLeaf = prometheus.NewDesc("tally_region_leaf_up",
		"1 when the region's leaf link to the hub is up (with an external hub: heard from within offline_after).", []string{"region"}, nil)
	descAlert = prometheus.NewDesc("tally_region_checkpoint_alert",
		"1 when a checkpoint of the region did not match what the hub applied: its totals cannot be trusted.", []string{"region"}, nil)
	descRevision = prometheus.NewDesc("tally_national_revision",
		"The revision of the last key the reconciler wrote to the national bucket (TALLY_NATIONAL); the gateways' event ids.", nil, nil)
)

var regionStatuses = []string{tally.StatusLive, tally.StatusLagging, tally.StatusOffline}

// regionCollector reads the reconciler's state at scrape time: nothing is
// updated on the hot path for it.
type regionCollector struct{ r *Reconciler }

func (c regionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMirrorLastSeq, descMirrorLag, descMirrorActive, descApplied, descStatus, descLeaf, descAlert, descRevision} {
		ch <- d
	}
}

func (c regionCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.r
	now := time.Now()
	r.mu.Lock()
	sts := append([]tally.RegionStatus(nil), r.statuses...)
	applied := make([]uint64, len(sts))
	for i, st := range sts {
		applied[i] = r.totals.LastSeq(st.ID)
	}
	r.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for i, st := range sts {
		id := string(st.ID)
		gauge(descMirrorLastSeq, float64(st.LastSeq), id)
		gauge(descMirrorLag, float64(st.Lag), id)
		if !st.LastActive.IsZero() {
			gauge(descMirrorActive, max(0, now.Sub(st.LastActive).Seconds()), id)
		}
		gauge(descApplied, float64(applied[i]), id)
		for _, s := range regionStatuses {
			gauge(descStatus, float64(b2i(st.Status == s)), id, s)
		}
		gauge(descLeaf, float64(b2i(st.Leaf)), id)
		gauge(descAlert, float64(b2i(st.Alert != nil)), id)
	}
	gauge(descRevision, float64(r.metrics.rev.Load()))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Unready says why the hub is not ready to serve national results, region
// by region: a region whose mirror is not set up yet (its JetStream has not
// answered over a leaf link since the hub started, so nothing of it can be
// applied), that has not been live or lagging since the hub started, or that
// has been offline for longer than OfflineAfter (a shorter outage does not
// flap readiness). It is nil when every region is ready; a lagging region is
// ready (connected and catching up). Gateways answer /readyz with it.
func (r *Reconciler) Unready() map[tally.RegionID]string {
	now := time.Now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out map[tally.RegionID]string
	add := func(id tally.RegionID, why string) {
		if out == nil {
			out = map[tally.RegionID]string{}
		}
		out[id] = why
	}
	for i, st := range r.statuses {
		switch {
		case !r.mirrored[i]:
			add(st.ID, "no mirror yet: the region has not answered over a leaf link")
		case !r.heard[i]:
			add(st.ID, "not heard from yet: the mirror has not caught up with the region since the hub started")
		case st.Status == tally.StatusOffline && now.Sub(st.Since) >= r.cfg.OfflineAfter:
			why := "leaf link down"
			if st.Leaf {
				why = "mirror not heard from"
				if !st.LastActive.IsZero() {
					why += " for " + now.Sub(st.LastActive).Round(time.Second).String()
				}
			}
			add(st.ID, fmt.Sprintf("offline since %s (%s, over %s): %s, applied up to seq %d",
				st.Since.Format(time.RFC3339), now.Sub(st.Since).Round(time.Second), r.cfg.OfflineAfter, why, st.Applied))
		}
	}
	return out
}
