package regional

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
)

// SubmitResult is the outcome of one submitted report, in request order.
type SubmitResult struct {
	ID        tally.EventID `json:"id"`
	Seq       uint64        `json:"seq"`
	Duplicate bool          `json:"duplicate"`
}

// SubmitResponse is the body of a successful submission.
type SubmitResponse struct {
	Results []SubmitResult `json:"results"`
}

func (n *Node) startHTTP() error {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = n.handleError
	e.Use(n.metrics.http.middleware) // outermost: sees the final status
	e.Use(n.requestLogger)

	e.GET("/healthz", func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", n.readyz)
	e.GET("/metrics", metricsHandler(n.reg))
	e.POST("/api/v1/reports", func(c echo.Context) error { return n.handleSubmit(c, false) })
	e.POST("/api/v1/corrections", func(c echo.Context) error { return n.handleSubmit(c, true) })
	e.GET("/api/v1/totals", func(c echo.Context) error {
		return c.JSON(http.StatusOK, n.AllTotals())
	})
	e.GET("/api/v1/totals/:contest", func(c echo.Context) error {
		id := tally.ContestID(c.Param("contest"))
		res, ok := n.Totals(id)
		if !ok {
			return tally.Errorf(tally.ENOTFOUND, "contest %q is not on the ballot in region %q", id, n.region)
		}
		return c.JSON(http.StatusOK, res)
	})

	ln, err := net.Listen("tcp", n.cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", n.cfg.HTTP.Addr, err)
	}
	n.ln = ln
	if n.cfg.HTTP.TLS != nil {
		ln = tls.NewListener(ln, n.cfg.HTTP.TLS)
	}
	n.srv = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error().Err(err).Msg("http server stopped")
		}
	}()
	return nil
}

// readyzTimeout bounds /readyz's look at the stream.
const readyzTimeout = 2 * time.Second

// readyz answers 200 when the RESULTS stream answers (its info is read),
// else 503 with the usual error body. A region cut off from the hub is
// ready: it keeps taking reports. The failure is not logged as an error
// (a probe polls it), only at debug level.
func (n *Node) readyz(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyzTimeout)
	defer cancel()
	err := tally.Errorf(tally.EUNAVAILABLE, "results stream: not created yet")
	if n.streamOK.Load() {
		if _, ierr := n.stream.Info(ctx); ierr != nil {
			err = tally.Errorf(tally.EUNAVAILABLE, "results stream: not answering: %v", ierr)
		} else {
			err = nil
		}
	}
	if err != nil {
		zerolog.Ctx(c.Request().Context()).Debug().Err(err).Msg("not ready")
		return c.JSON(http.StatusServiceUnavailable, tally.ErrorReply(err))
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// requestLogger gives each request an id (X-Request-Id, or a new one) and a
// logger carrying it, and logs the request at debug level.
func (n *Node) requestLogger(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		req := c.Request()
		id := req.Header.Get(echo.HeaderXRequestID)
		if id == "" || len(id) > 128 {
			id = nuid.Next()
		}
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		l := n.log.With().Str("request_id", id).Logger()
		c.SetRequest(req.WithContext(l.WithContext(req.Context())))
		err := next(c)
		if err != nil {
			c.Error(err) // renders the error so the status below is final
		}
		l.Debug().Str("method", req.Method).Str("path", req.URL.Path).Int("status", c.Response().Status).
			Int64("duration_ms", time.Since(start).Milliseconds()).Msg("request served")
		return nil
	}
}

// handleError renders every error as {"error":{"code","message"}}: tally
// errors with the status of their code, echo's own errors (unknown route,
// bad method) with theirs. Internal errors are logged here, once.
func (n *Node) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var status int
	var body tally.ErrorBody
	var he *echo.HTTPError
	if errors.As(err, &he) {
		status = he.Code
		body.Error.Code = tally.CodeForHTTPStatus(status)
		body.Error.Message = fmt.Sprint(he.Message)
	} else {
		body = tally.ErrorReply(err)
		status = tally.HTTPStatus(body.Error.Code)
	}
	if status >= http.StatusInternalServerError {
		zerolog.Ctx(c.Request().Context()).Error().Err(err).Str("path", c.Request().URL.Path).Msg("request failed")
	}
	var werr error
	if c.Request().Method == http.MethodHead {
		werr = c.NoContent(status)
	} else {
		werr = c.JSON(status, body)
	}
	if werr != nil {
		zerolog.Ctx(c.Request().Context()).Debug().Err(werr).Msg("error response not written")
	}
}

// readBody reads the request body, refusing a non-JSON content type and a
// body over the limit.
func (n *Node) readBody(c echo.Context) ([]byte, error) {
	req := c.Request()
	if ct := req.Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "application/json" || strings.HasSuffix(mt, "+json")) {
			return nil, echo.NewHTTPError(http.StatusUnsupportedMediaType, fmt.Sprintf("content-type: %q is not supported; send application/json", ct))
		}
	}
	max := n.cfg.HTTP.MaxBody
	if req.ContentLength > max {
		return nil, tally.Errorf(tally.ETOOLARGE, "body: %d bytes, at most %d allowed", req.ContentLength, max)
	}
	b, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tally.Errorf(tally.ETOOLARGE, "body: more than %d bytes", max)
		}
		return nil, tally.Errorf(tally.EINVALID, "body: %v", err)
	}
	return b, nil
}
