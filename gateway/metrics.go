package gateway

import (
	"errors"
	"maps"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tallyvote/tally"
)

// httpBuckets are the request duration buckets, in seconds. An event
// stream's request lasts as long as its viewer stays, and lands in +Inf.
var httpBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// registerMetrics registers the gateway's metrics on reg: the request
// durations, observed by the middleware, and the viewers, read from the
// hub at scrape time.
func (g *Gateway) registerMetrics(reg prometheus.Registerer) error {
	g.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tally_http_request_duration_seconds",
		Help:    "HTTP request durations, by route template (\"unmatched\" for no route), method and status class (2xx, 4xx, ...).",
		Buckets: httpBuckets,
	}, []string{"route", "method", "status"})
	viewers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tally_sse_viewers",
		Help: "Viewers connected to the live event stream (GET /api/v1/stream).",
	}, func() float64 { return float64(g.hub.clients.Load()) })
	dropped := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tally_sse_viewers_dropped_total",
		Help: "Viewers disconnected from the live event stream as too slow (their queue was full).",
	}, func() float64 { return float64(g.hub.dropped.Load()) })
	for _, c := range []prometheus.Collector{g.httpDuration, viewers, dropped} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// observe records every request's duration once its response is final: it
// runs outside requestContext, which renders errors.
func (g *Gateway) observe(next echo.HandlerFunc) echo.HandlerFunc {
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
		g.observer(route, tally.MethodLabel(c.Request().Method), tally.StatusClass(status)).Observe(time.Since(start).Seconds())
		return err
	}
}

// maxObservers bounds the label sets kept by observer.
const maxObservers = 1024

// observerKey is one label set of httpDuration.
type observerKey struct{ route, method, status string }

// observer returns httpDuration's observer of a label set. The label sets
// are bounded (routes x methods x status classes), so each one's observer
// is looked up once and kept in a map that is replaced, never modified:
// the request path reads it without a lock or an allocation.
func (g *Gateway) observer(route, method, status string) prometheus.Observer {
	k := observerKey{route, method, status}
	if m := g.observers.Load(); m != nil {
		if o, ok := (*m)[k]; ok {
			return o
		}
	}
	g.observersMu.Lock()
	defer g.observersMu.Unlock()
	var m map[observerKey]prometheus.Observer
	if old := g.observers.Load(); old != nil {
		if o, ok := (*old)[k]; ok {
			return o
		}
		m = maps.Clone(*old)
	} else {
		m = map[observerKey]prometheus.Observer{}
	}
	o := g.httpDuration.WithLabelValues(route, method, status)
	if len(m) >= maxObservers {
		return o // a bound that the route templates never reach
	}
	m[k] = o
	g.observers.Store(&m)
	return o
}

// metricsHandler serves the gateway's registry (with tally hub, the
// reconciler's and the projector's metrics too).
func (g *Gateway) metricsHandler() echo.HandlerFunc {
	return echo.WrapHandler(promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
}
