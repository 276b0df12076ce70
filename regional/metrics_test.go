package regional_test

import (
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tallyvote/tally/regional"
)

// scrape reads the node's /metrics in the text format.
func scrape(tb testing.TB, n *regional.Node) map[string]*dto.MetricFamily {
	tb.Helper()
	res := get(tb, n, "/metrics")
	if res.Status != http.StatusOK {
		tb.Fatalf("GET /metrics = %d %s", res.Status, res.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(res.Body)))
	if err != nil {
		tb.Fatalf("parse /metrics: %v\n%s", err, res.Body)
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

// TestMetricsAndHealth submits reports, a retry and a bad report, and reads
// the node's counters, latency, stream sequence and request durations from
// /metrics; /healthz and /readyz answer 200.
func TestMetricsAndHealth(t *testing.T) {
	n := MustOpenNode(t, func(c *regional.Config) { c.CheckpointInterval = -1 })
	post(t, n, "/api/v1/reports", "["+reportN1+","+reportN2+"]").results(t)
	if res := post(t, n, "/api/v1/reports", reportN1).results(t); !res[0].Duplicate {
		t.Fatalf("retry = %+v, want a duplicate", res)
	}
	bad := strings.Replace(reportG1, `"precinct":"n1"`, `"precinct":"nowhere"`, 1)
	if res := post(t, n, "/api/v1/reports", bad); res.Status/100 != 4 {
		t.Fatalf("bad report = %d %s, want 4xx", res.Status, res.Body)
	}
	code, _ := post(t, n, "/api/v1/reports", bad).errorBody(t)
	if res := do(t, http.MethodPost, "http://"+n.HTTPAddr()+"/api/v1/reports", "text/plain", []byte(reportG1)); res.Status != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain = %d, want 415", res.Status)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if res := get(t, n, p); res.Status != http.StatusOK {
			t.Errorf("GET %s = %d %s, want 200", p, res.Status, res.Body)
		}
	}

	fams := scrape(t, n)
	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"Stored", "tally_intake_reports_accepted_total", map[string]string{"region": "north", "transport": "http", "kind": "report", "duplicate": "false"}, 2},
		{"Duplicates", "tally_intake_reports_accepted_total", map[string]string{"transport": "http", "duplicate": "true"}, 1},
		{"Corrections", "tally_intake_reports_accepted_total", map[string]string{"kind": "correction"}, 0},
		{"RefusedByCode", "tally_intake_requests_refused_total", map[string]string{"transport": "http", "code": code}, 2},
		{"RefusedMediaType", "tally_intake_requests_refused_total", map[string]string{"code": "unsupported_media_type"}, 1},
		{"RefusedNATS", "tally_intake_requests_refused_total", map[string]string{"transport": "nats"}, 0},
		{"LatencyAccepted", "tally_intake_duration_seconds", map[string]string{"transport": "http", "result": "accepted"}, 2},
		{"LatencyRefused", "tally_intake_duration_seconds", map[string]string{"transport": "http", "result": "refused"}, 3},
		{"StreamLastSeq", "tally_region_stream_last_seq", map[string]string{"region": "north"}, 2},
		{"HTTPReports2xx", "tally_http_request_duration_seconds", map[string]string{"route": "/api/v1/reports", "method": "POST", "status": "2xx"}, 2},
		{"HTTPReports4xx", "tally_http_request_duration_seconds", map[string]string{"route": "/api/v1/reports", "method": "POST", "status": "4xx"}, 3},
		{"HTTPReadyz", "tally_http_request_duration_seconds", map[string]string{"route": "/readyz", "status": "2xx"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := metricSum(fams, tt.metric, tt.labels)
			if !found || got != tt.want {
				t.Errorf("%s%v = %v (found %v), want %v", tt.metric, tt.labels, got, found, tt.want)
			}
		})
	}
	if code == "" || code == "internal" {
		t.Errorf("bad report refused with code %q", code)
	}
}
