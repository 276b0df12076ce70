package gateway

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tallyvote/tally"
)

// routes builds the echo instance with every route.
func (g *Gateway) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = g.handleError
	e.Use(g.observe) // outermost: sees the final status
	e.Use(g.requestContext)

	// Not an echo Group: a group with middleware answers 404 for every
	// unmatched path under it, hiding 405s. The routes' own middleware is
	// applied here, once: echo applies a route's middleware on every
	// request.
	api := func(path string, h echo.HandlerFunc) { e.GET("/api/v1"+path, publicAPI(h)) }
	api("/election", g.getElection)
	api("/contests", g.getContests)
	api("/contests/:id", g.getContest)
	api("/contests/:id/counties", g.getContestCounties)
	api("/contests/:id/precincts", g.getContestPrecincts)
	api("/feed", g.getFeed)
	api("/regions", g.getRegions)
	api("/precincts/:id", g.getPrecinct)
	api("/stream", g.stream)
	// Admin routes are not public: no CORS, and a bearer token.
	e.POST("/api/v1/admin/calls", g.adminAuth(g.postAdminCall))
	e.POST("/api/v1/admin/regions/:id/link", g.adminAuth(g.postRegionLink))

	e.GET("/healthz", g.healthz)
	e.GET("/readyz", g.readyz)
	e.GET("/metrics", g.metricsHandler())
	// The dashboard's files sit at the root, with no subdirectories.
	e.GET("/", g.serveStatic)
	e.GET("/:file", g.serveStatic)
	return e
}

// Header values of publicAPI, shared by every response (see
// publicCacheControlHdr).
var (
	allowOriginHdr   = []string{"*"}
	exposeHeadersHdr = []string{"ETag, X-Request-Id"}
	nosniffHdr       = []string{"nosniff"}
)

// publicAPI marks the API as public, read-only data any site may fetch.
// The allowed origin is "*", the same for every request, so a cache needs
// no Vary: Origin.
func publicAPI(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h["Access-Control-Allow-Origin"] = allowOriginHdr
		h["Access-Control-Expose-Headers"] = exposeHeadersHdr
		h["X-Content-Type-Options"] = nosniffHdr
		return next(c)
	}
}

// currentView returns the cached state, or EUNAVAILABLE until it is loaded.
func (g *Gateway) currentView() (*view, error) {
	v := g.view.Load()
	if v == nil {
		return nil, tally.Errorf(tally.EUNAVAILABLE, "national results not available yet")
	}
	return v, nil
}

func (g *Gateway) getElection(c echo.Context) error { return serve(c, g.election) }

func (g *Gateway) getContests(c echo.Context) error {
	v, err := g.currentView()
	if err != nil {
		return err
	}
	return serve(c, v.list)
}

func (g *Gateway) getContest(c echo.Context) error {
	v, err := g.currentView()
	if err != nil {
		return err
	}
	id := tally.ContestID(c.Param("id"))
	r := v.contests[id]
	if r == nil {
		if g.cfg.Election.Contest(id) != nil {
			return tally.Errorf(tally.ENOTFOUND, "contest %q has no results yet", id)
		}
		return tally.Errorf(tally.ENOTFOUND, "unknown contest %q", id)
	}
	return serve(c, r)
}

func (g *Gateway) getRegions(c echo.Context) error {
	v, err := g.currentView()
	if err != nil {
		return err
	}
	return serve(c, v.regions)
}

type statusJSON struct {
	Status string `json:"status"`
}

func (g *Gateway) healthz(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, statusJSON{Status: "ok"})
}

// unreadyJSON is /readyz's answer while regions are not ready: the usual
// error body, and each region with its reason.
type unreadyJSON struct {
	tally.ErrorBody
	Status  string          `json:"status"`
	Regions []unreadyRegion `json:"regions"`
}

type unreadyRegion struct {
	ID     tally.RegionID `json:"id"`
	Reason string         `json:"reason"`
}

// readyz answers 200 once the national bucket is loaded and, with
// Config.Health, no region is unready; else 503. A 503 is not logged as an
// error: a probe polls it.
func (g *Gateway) readyz(c echo.Context) error {
	if !g.ready() {
		return tally.Errorf(tally.EUNAVAILABLE, "national bucket not loaded")
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	if g.cfg.Health != nil {
		if why := g.cfg.Health.Unready(); len(why) > 0 {
			body := unreadyJSON{Status: "unready"}
			ids := make([]string, 0, len(why))
			for _, r := range g.cfg.Election.Regions { // election order
				if reason, ok := why[r.ID]; ok {
					body.Regions = append(body.Regions, unreadyRegion{ID: r.ID, Reason: reason})
					ids = append(ids, string(r.ID))
				}
			}
			body.Error = tally.ErrorDetail{Code: tally.EUNAVAILABLE, Message: "regions not ready: " + strings.Join(ids, ", ")}
			h.Set("Retry-After", "2")
			return c.JSON(http.StatusServiceUnavailable, body)
		}
	}
	return c.JSON(http.StatusOK, statusJSON{Status: "ready"})
}
