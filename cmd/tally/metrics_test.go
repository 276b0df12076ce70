package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/gateway"
	"github.com/tallyvote/tally/reconciler"
	"github.com/tallyvote/tally/regional"
)

// metricsElection is a small election: two regions, two precincts each, one
// contest.
func metricsElection(tb testing.TB) *tally.Election {
	tb.Helper()
	e := &tally.Election{
		ID: "metrics-2024", Name: "Metrics test", Date: "2024-11-05", Test: true,
		Regions: []tally.Region{{ID: "r1", Name: "Region 1"}, {ID: "r2", Name: "Region 2"}},
		Contests: []tally.Contest{{ID: "pres", Name: "President", Office: "President", Candidates: []tally.Candidate{
			{ID: "alice", Name: "Alice"}, {ID: "bob", Name: "Bob"}}}},
		Precincts: []tally.Precinct{
			{ID: "p1", Name: "P1", County: "A", Region: "r1", Contests: []tally.ContestID{"pres"}},
			{ID: "p2", Name: "P2", County: "A", Region: "r1", Contests: []tally.ContestID{"pres"}},
			{ID: "p3", Name: "P3", County: "B", Region: "r2", Contests: []tally.ContestID{"pres"}},
			{ID: "p4", Name: "P4", County: "B", Region: "r2", Contests: []tally.ContestID{"pres"}},
		},
	}
	if err := e.Validate(); err != nil {
		tb.Fatal(err)
	}
	return e
}

// linkedHub is a hub (reconciler and gateway, as tally hub wires them) and a
// region node per region, each linked to the hub through a link proxy the
// test can cut.
type linkedHub struct {
	rec     *reconciler.Reconciler
	gw      *gateway.Gateway
	api     string
	regions map[tally.RegionID]*regional.Node
	links   map[tally.RegionID]*linkProxy
}

// MustRunLinkedHub starts a linkedHub for e whose regions go offline after
// offlineAfter without their mirror hearing from them.
func MustRunLinkedHub(tb testing.TB, e *tally.Election, offlineAfter time.Duration) *linkedHub {
	tb.Helper()
	l := zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)
	dir := tb.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := &linkedHub{regions: map[tally.RegionID]*regional.Node{}, links: map[tally.RegionID]*linkProxy{}}
	rec, gw, nc, err := openHub(ctx, e, reconciler.Config{
		Election:     e,
		NATS:         reconciler.NATSConfig{StoreDir: filepath.Join(dir, "hub")},
		OfflineAfter: offlineAfter,
		Logger:       l,
	}, gateway.Config{Addr: "127.0.0.1:0"}, l)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := closeHub(rec, gw, nc); err != nil {
			tb.Error(err)
		}
	})
	h.rec, h.gw, h.api = rec, gw, "http://"+gw.Addr()
	leafUser, leafPassword := rec.LeafCredentials()
	for _, r := range e.Regions {
		p, err := newLinkProxy(strings.TrimPrefix(rec.LeafURL(), "nats-leaf://"))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { p.Close() })
		h.links[r.ID] = p
		h.regions[r.ID] = MustOpenRegion(tb, ctx, regional.Config{
			Region:   r.ID,
			Election: e,
			NATS: regional.NATSConfig{StoreDir: filepath.Join(dir, string(r.ID)), HubURL: "nats-leaf://" + p.Addr(),
				HubUser: leafUser, HubPassword: leafPassword},
			HTTP:               regional.HTTPConfig{Addr: "127.0.0.1:0"},
			CheckpointInterval: -1, // the stream holds only what the test sends
			Logger:             l,
		})
	}
	return h
}

// scrapeMetrics reads a /metrics endpoint in the text format.
func scrapeMetrics(tb testing.TB, url string) map[string]*dto.MetricFamily {
	tb.Helper()
	res, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		tb.Fatalf("GET %s = %s %s", url, res.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		tb.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// metricSum sums the samples of family name whose labels include labels:
// counter and gauge values, histogram counts. found is false when none do.
func metricSum(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (sum float64, found bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, found
}

// metricsReport is a report of precinct p in the contest pres.
func metricsReport(e *tally.Election, id string, p tally.PrecinctID, alice, bob int64) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": string(e.Precinct(p).Region) + "-" + id, "precinct": p, "contest": "pres",
		"votes": map[string]int64{"alice": alice, "bob": bob}, "complete": true,
	})
	return b
}

// TestHubMetrics submits reports to two regions, a refused one among them,
// and checks each region's /metrics and the hub's: accepted and refused
// counts, the mirrors' sequences equal to the regions' streams', the applied
// events, the national revision, the request durations by route, and the
// live viewers while one is connected.
func TestHubMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three JetStream servers")
	}
	e := metricsElection(t)
	h := MustRunLinkedHub(t, e, reconciler.DefaultOfflineAfter)
	intake := func(r tally.RegionID) string { return "http://" + h.regions[r].HTTPAddr() }
	for _, rep := range []struct {
		p    tally.PrecinctID
		id   string
		a, b int64
	}{{"p1", "a", 10, 5}, {"p2", "b", 7, 9}, {"p1", "c", 12, 6}, {"p3", "d", 3, 4}} {
		r := e.Precinct(rep.p).Region
		if st, body := post(t, intake(r)+"/api/v1/reports", metricsReport(e, rep.id, rep.p, rep.a, rep.b)); st != http.StatusOK {
			t.Fatalf("report %s: %d %v", rep.id, st, body)
		}
	}
	// p3 is not a precinct of r1.
	st, body := post(t, intake("r1")+"/api/v1/reports", metricsReport(e, "x", "p3", 1, 1))
	refusedCode, _ := body["error"].(map[string]any)["code"].(string)
	if st/100 != 4 || refusedCode == "" {
		t.Fatalf("report of another region's precinct: %d %v, want 4xx", st, body)
	}

	wantSeq := map[tally.RegionID]float64{"r1": 3, "r2": 1}
	for r, n := range wantSeq {
		fams := scrapeMetrics(t, intake(r)+"/metrics")
		if got, _ := metricSum(fams, "tally_intake_reports_accepted_total", map[string]string{"region": string(r), "duplicate": "false"}); got != n {
			t.Errorf("region %s: accepted = %v, want %v", r, got, n)
		}
		if got, _ := metricSum(fams, "tally_region_stream_last_seq", map[string]string{"region": string(r)}); got != n {
			t.Errorf("region %s: stream last seq = %v, want %v", r, got, n)
		}
	}
	if got, _ := metricSum(scrapeMetrics(t, intake("r1")+"/metrics"), "tally_intake_requests_refused_total",
		map[string]string{"transport": "http", "code": refusedCode}); got != 1 {
		t.Errorf("r1: refused with code %s = %v, want 1", refusedCode, got)
	}

	// The hub: mirrors caught up with the regions' streams, all applied.
	hubMetrics := h.api + "/metrics"
	waitFor(t, 30*time.Second, func() string {
		fams := scrapeMetrics(t, hubMetrics)
		for r, n := range wantSeq {
			l := map[string]string{"region": string(r)}
			for _, name := range []string{"tally_mirror_last_seq", "tally_region_applied_seq"} {
				if got, _ := metricSum(fams, name, l); got != n {
					return fmt.Sprintf("%s{region=%s} = %v, want %v", name, r, got, n)
				}
			}
			if got, _ := metricSum(fams, "tally_region_status", map[string]string{"region": string(r), "status": tally.StatusLive}); got != 1 {
				return fmt.Sprintf("region %s not live", r)
			}
		}
		if got, _ := metricSum(fams, "tally_reconciler_apply_duration_seconds", nil); got < 4 {
			return fmt.Sprintf("applied %v events, want at least 4", got)
		}
		if got, _ := metricSum(fams, "tally_national_revision", nil); got <= 0 {
			return fmt.Sprintf("national revision %v, want > 0", got)
		}
		return ""
	})
	fams := scrapeMetrics(t, hubMetrics)
	for _, name := range []string{"tally_mirror_lag", "tally_mirror_last_active_seconds", "tally_region_leaf_up", "tally_region_checkpoint_alert", "go_goroutines"} {
		if _, found := metricSum(fams, name, map[string]string{}); !found {
			t.Errorf("hub /metrics has no %s", name)
		}
	}
	if got, _ := metricSum(fams, "tally_mirror_last_active_seconds", map[string]string{"region": "r1"}); got > 5 {
		t.Errorf("r1 mirror last active %vs ago, want recent", got)
	}

	// A viewer of the live stream counts while connected.
	if got, _ := metricSum(fams, "tally_sse_viewers", nil); got != 0 {
		t.Errorf("viewers before any = %v, want 0", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.api+"/api/v1/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(res.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() string {
		if got, _ := metricSum(scrapeMetrics(t, hubMetrics), "tally_sse_viewers", nil); got != 1 {
			return fmt.Sprintf("viewers = %v while one is connected, want 1", got)
		}
		return ""
	})
	cancel()
	res.Body.Close()
	waitFor(t, 10*time.Second, func() string {
		fams := scrapeMetrics(t, hubMetrics)
		if got, _ := metricSum(fams, "tally_sse_viewers", nil); got != 0 {
			return fmt.Sprintf("viewers = %v after the viewer left, want 0", got)
		}
		if got, _ := metricSum(fams, "tally_http_request_duration_seconds", map[string]string{"route": "/api/v1/stream", "method": "GET", "status": "2xx"}); got != 1 {
			return fmt.Sprintf("stream requests observed = %v, want 1", got)
		}
		return ""
	})
	getJSON(t, h.api+"/api/v1/contests/pres", nil)
	getJSON(t, h.api+"/no/such/page", nil)
	fams = scrapeMetrics(t, hubMetrics)

	for _, l := range []map[string]string{
		{"route": "/api/v1/contests/:id", "method": "GET", "status": "2xx"},
		{"route": "/metrics", "method": "GET", "status": "2xx"},
		{"route": "/:file", "status": "4xx"}, // an unknown path: the template echo matched it to
	} {
		if got, _ := metricSum(fams, "tally_http_request_duration_seconds", l); got < 1 {
			t.Errorf("tally_http_request_duration_seconds%v = %v, want at least 1", l, got)
		}
	}
}

// readyz returns the hub's /readyz status and body.
func readyz(tb testing.TB, api string) (int, string) {
	tb.Helper()
	res, err := http.Get(api + "/readyz")
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// TestHubReadyzRegionCut cuts a region's leaf link: the hub's /readyz turns
// 503 naming the region once it has been offline past OfflineAfter, and
// 200 again once the region is back; /healthz stays 200 throughout.
func TestHubReadyzRegionCut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three JetStream servers and cuts a link")
	}
	e := metricsElection(t)
	const offlineAfter = 2 * time.Second
	h := MustRunLinkedHub(t, e, offlineAfter)
	waitFor(t, 30*time.Second, func() string {
		if st, body := readyz(t, h.api); st != http.StatusOK {
			return fmt.Sprintf("readyz = %d %s before any cut, want 200", st, body)
		}
		return ""
	})

	h.links["r2"].SetUp(false)
	cut := time.Now()
	var unready struct {
		Status string `json:"status"`
		Error  struct {
			Code string `json:"code"`
		} `json:"error"`
		Regions []struct {
			ID     tally.RegionID `json:"id"`
			Reason string         `json:"reason"`
		} `json:"regions"`
	}
	waitFor(t, 30*time.Second, func() string {
		st, body := readyz(t, h.api)
		if st != http.StatusServiceUnavailable {
			return fmt.Sprintf("readyz = %d %s with r2 cut off, want 503", st, body)
		}
		if err := json.Unmarshal([]byte(body), &unready); err != nil {
			return fmt.Sprintf("readyz body %q: %v", body, err)
		}
		return ""
	})
	if d := time.Since(cut); d < offlineAfter {
		t.Errorf("readyz turned 503 %s after the cut, before offline_after (%s)", d, offlineAfter)
	}
	if unready.Status != "unready" || unready.Error.Code != tally.EUNAVAILABLE || len(unready.Regions) != 1 ||
		unready.Regions[0].ID != "r2" || !strings.Contains(unready.Regions[0].Reason, "offline since") {
		t.Errorf("readyz body = %+v, want r2 alone, offline", unready)
	}
	if st := getJSON(t, h.api+"/healthz", nil); st != http.StatusOK {
		t.Errorf("healthz = %d while a region is cut off, want 200", st)
	}
	// Reports taken meanwhile reach the hub once the link is back.
	if st, body := post(t, "http://"+h.regions["r2"].HTTPAddr()+"/api/v1/reports", metricsReport(e, "late", "p4", 2, 2)); st != http.StatusOK {
		t.Fatalf("report while cut off: %d %v", st, body)
	}

	h.links["r2"].SetUp(true)
	waitFor(t, 90*time.Second, func() string {
		if st, body := readyz(t, h.api); st != http.StatusOK {
			return fmt.Sprintf("readyz = %d %s after the link returned, want 200", st, body)
		}
		return ""
	})
	waitFor(t, 30*time.Second, func() string {
		if got := h.rec.Applied("r2"); got != 1 {
			return fmt.Sprintf("r2 applied %d, want 1", got)
		}
		return ""
	})
}

// TestDemoMetrics runs tally demo for a moment: the hub's /metrics serves
// the reconciler's, the projector's and the gateway's metrics, and each
// region's intake its own.
func TestDemoMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	d := MustRunDemo(t)
	if d.proj == nil {
		t.Fatalf("the demo runs no projector:\n%s", d.out.(*syncBuffer).String())
	}
	waitFor(t, time.Minute, func() string {
		fams := scrapeMetrics(t, "http://"+d.gw.Addr()+"/metrics")
		for _, name := range []string{"tally_reconciler_apply_duration_seconds", "tally_projector_recompute_duration_seconds"} {
			if got, _ := metricSum(fams, name, nil); got == 0 {
				return name + ": nothing observed yet"
			}
		}
		for _, name := range []string{"tally_sse_viewers", "tally_national_revision", "process_cpu_seconds_total"} {
			if _, found := metricSum(fams, name, nil); !found {
				return "no " + name
			}
		}
		for _, r := range d.election.Election.Regions {
			if _, found := metricSum(fams, "tally_mirror_last_seq", map[string]string{"region": string(r.ID)}); !found {
				return "no tally_mirror_last_seq for " + string(r.ID)
			}
		}
		return ""
	})
	r := d.election.Election.Regions[0].ID
	waitFor(t, time.Minute, func() string {
		fams := scrapeMetrics(t, "http://"+d.regions[r].HTTPAddr()+"/metrics")
		if got, _ := metricSum(fams, "tally_intake_reports_accepted_total", map[string]string{"region": string(r)}); got == 0 {
			return "region " + string(r) + ": no report accepted yet"
		}
		return ""
	})
}

// TestGrafanaDashboard checks configs/grafana-dashboard.json: valid JSON, a
// Prometheus datasource variable, and only metrics the README lists.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "configs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Templating struct {
			List []struct {
				Name, Type, Query string
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Templating.List) == 0 || d.Templating.List[0].Type != "datasource" || d.Templating.List[0].Query != "prometheus" {
		t.Errorf("templating = %+v, want a prometheus datasource variable first", d.Templating.List)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`tally_[a-z_]+`)
	listed := map[string]bool{}
	for _, m := range name.FindAllString(string(readme), -1) {
		listed[m] = true
	}
	used := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				used++
				base := strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count")
				if !listed[base] {
					t.Errorf("panel %q uses %s, which the README does not list", p.Title, base)
				}
			}
		}
	}
	if used == 0 {
		t.Error("the dashboard queries no tally metric")
	}
}
