package regional

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tallyvote/tally"
)

// The intake's transports, the transport label of the intake metrics.
const (
	viaHTTP = iota
	viaNATS
)

var transportNames = [2]string{"http", "nats"}

// intakeBuckets are the intake latency buckets, in seconds: from a report
// acknowledged out of the page cache to a large batch fsynced report by
// report.
var intakeBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// refusalCodes are the error codes an intake request can be refused with;
// their counters are made up front so that each reads 0 until it happens.
var refusalCodes = []string{
	tally.EINVALID, tally.ENOTFOUND, tally.ECONFLICT, tally.ETOOLARGE, tally.EUNAVAILABLE,
	tally.EUNAUTHORIZED, tally.EFORBIDDEN, tally.ERATELIMIT, tally.EINTERNAL,
	tally.CodeForHTTPStatus(http.StatusUnsupportedMediaType),
}

// metrics are a node's Prometheus metrics. Every labelled child the intake
// uses is resolved once, in newMetrics, so that counting a request
// allocates nothing.
type metrics struct {
	// accepted[transport][correction][duplicate]
	accepted [2][2][2]prometheus.Counter
	refused  *prometheus.CounterVec
	// refusedBy[transport] by code, for refusalCodes
	refusedBy [2]map[string]prometheus.Counter
	// latency[transport][refused]
	latency [2][2]prometheus.Observer
	http    *httpMetrics
}

// newMetrics registers the node's metrics on reg, each labelled with the
// node's region.
func newMetrics(reg prometheus.Registerer, n *Node) (*metrics, error) {
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"region": string(n.region)}, reg)
	accepted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tally_intake_reports_accepted_total",
		Help: "Reports and corrections the intake answered with a sequence, by transport, kind (report or correction) and whether the stream already held them (duplicate).",
	}, []string{"transport", "kind", "duplicate"})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tally_intake_requests_refused_total",
		Help: "Intake requests refused, by transport and error code; a refused request stores none of its reports (or, when the stream failed midway, says how many it did).",
	}, []string{"transport", "code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tally_intake_duration_seconds",
		Help:    "Time to answer an intake request (validation, publish and acknowledgement), by transport and result (accepted or refused).",
		Buckets: intakeBuckets,
	}, []string{"transport", "result"})
	lastSeq := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tally_region_stream_last_seq",
		Help: "The highest sequence of the region's RESULTS stream the node knows stored (reports, corrections and checkpoints).",
	}, func() float64 { return float64(n.lastStored.Load()) })
	hm := newHTTPMetrics()
	for _, c := range []prometheus.Collector{accepted, refused, latency, lastSeq, hm.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m := &metrics{refused: refused, http: hm}
	kinds := [2]string{"report", "correction"}
	for t, tn := range transportNames {
		for k, kn := range kinds {
			m.accepted[t][k][0] = accepted.WithLabelValues(tn, kn, "false")
			m.accepted[t][k][1] = accepted.WithLabelValues(tn, kn, "true")
		}
		m.refusedBy[t] = map[string]prometheus.Counter{}
		for _, code := range refusalCodes {
			m.refusedBy[t][code] = refused.WithLabelValues(tn, code)
		}
		m.latency[t][0] = latency.WithLabelValues(tn, "accepted")
		m.latency[t][1] = latency.WithLabelValues(tn, "refused")
	}
	return m, nil
}

// countAccepted counts the reports of a submission that was answered.
func (m *metrics) countAccepted(via int, items []*prepared) {
	for _, p := range items {
		m.accepted[via][b2i(p.rep.IsCorrection())][b2i(p.dup)].Inc()
	}
}

// done records an intake request's latency, and its refusal when err is set.
func (m *metrics) done(via int, start time.Time, err error) {
	if err == nil {
		m.latency[via][0].Observe(time.Since(start).Seconds())
		return
	}
	m.latency[via][1].Observe(time.Since(start).Seconds())
	code := tally.ErrorCode(err)
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code = tally.CodeForHTTPStatus(he.Code)
	}
	c, ok := m.refusedBy[via][code]
	if !ok {
		c = m.refused.WithLabelValues(transportNames[via], tally.EINTERNAL)
	}
	c.Inc()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// metricsHandler serves the registry in the Prometheus text format.
func metricsHandler(g prometheus.Gatherer) echo.HandlerFunc {
	return echo.WrapHandler(promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
}

// httpMetrics observes the intake server's requests. (The gateway has the
// same middleware: a little copying rather than a shared package.)
type httpMetrics struct {
	duration *prometheus.HistogramVec
}

func newHTTPMetrics() *httpMetrics {
	return &httpMetrics{duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tally_http_request_duration_seconds",
		Help:    "HTTP request durations, by route template (\"unmatched\" for no route), method and status class (2xx, 4xx, ...).",
		Buckets: intakeBuckets,
	}, []string{"route", "method", "status"})}
}

// middleware observes every request, once its response is final: it must
// run outside the middleware that renders errors.
func (h *httpMetrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		status := c.Response().Status
		if err != nil {
			status = http.StatusInternalServerError
			var he *echo.HTTPError
			if errors.As(err, &he) {
				status = he.Code
			}
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		h.duration.WithLabelValues(route, tally.MethodLabel(c.Request().Method), tally.StatusClass(status)).Observe(time.Since(start).Seconds())
		return err
	}
}
