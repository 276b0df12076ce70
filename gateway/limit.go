package gateway

import (
	"net"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"

	"github.com/tallyvote/tally"
)

// Defaults of the per-client rate limit.
const (
	DefaultRateLimit = 50  // requests per second per client IP
	DefaultRateBurst = 200 // requests
)

// rateLimiter limits each client, by the IP address of its connection, to
// cfg.RateLimit requests per second with bursts of cfg.RateBurst; more get
// 429 with the usual JSON error (code rate_limited). The address is the
// peer's, not X-Forwarded-For, which a client could forge; behind a proxy
// give the limit to the proxy. A live event stream is one request however
// long it lasts. Health checks (/healthz, /readyz) and /metrics are not
// limited: a load balancer or Prometheus polling them must not lock itself
// out. A negative RateLimit turns the limit off.
func (g *Gateway) rateLimiter() echo.MiddlewareFunc {
	if g.cfg.RateLimit < 0 {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	store := middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
		Rate: rate.Limit(g.cfg.RateLimit), Burst: g.cfg.RateBurst,
	})
	return middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Skipper: func(c echo.Context) bool {
			p := c.Request().URL.Path
			return p == "/healthz" || p == "/readyz" || p == "/metrics"
		},
		Store: store,
		IdentifierExtractor: func(c echo.Context) (string, error) {
			host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
			if err != nil {
				return c.Request().RemoteAddr, nil
			}
			return host, nil
		},
		ErrorHandler: func(c echo.Context, err error) error {
			return tally.Errorf(tally.EINTERNAL, "rate limiter: %v", err)
		},
		DenyHandler: func(c echo.Context, id string, err error) error {
			c.Response().Header().Set("Retry-After", "1")
			return tally.Errorf(tally.ERATELIMIT, "too many requests from this address; slow down")
		},
	})
}
