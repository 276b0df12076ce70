package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"
)

const requestIDHeader = "X-Request-Id"

// requestContext gives each request an id (the caller's X-Request-Id when it
// is sane, else a random one) and echoes it in the response. It turns a
// panic into an internal error and logs each request at debug level.
//
// It does not put a logger into the request context: building one costs
// allocations that most requests, cached reads above all, never use. Code
// that logs for a request takes requestLogger, which carries request_id.
func (g *Gateway) requestContext(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		req := c.Request()
		var id string
		if v := req.Header[requestIDHeader]; len(v) > 0 && validRequestID(v[0]) {
			id = v[0]
		} else {
			id = newRequestID()
		}
		c.Response().Header()[requestIDHeader] = []string{id}
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				err = fmt.Errorf("panic: %v", r)
			}
			if err != nil {
				c.Error(err)
				err = nil
			}
			if g.cfg.Logger.GetLevel() <= zerolog.DebugLevel && zerolog.GlobalLevel() <= zerolog.DebugLevel {
				l := requestLogger(g.cfg.Logger, c)
				l.Debug().Str("method", req.Method).Str("path", req.URL.Path).
					Int("status", c.Response().Status).
					Int64("duration_ms", time.Since(start).Milliseconds()).Msg("request served")
			}
		}()
		return next(c)
	}
}

// requestLogger returns l with the request's request_id, the one
// requestContext set on the response.
func requestLogger(l zerolog.Logger, c echo.Context) *zerolog.Logger {
	rl := l.With().Str("request_id", c.Response().Header().Get(requestIDHeader)).Logger()
	return &rl
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	var h [24]byte
	hex.Encode(h[:], b[:])
	return string(h[:])
}

// serverLogWriter sends the http.Server's own log lines (TLS handshake
// errors and the like) to zerolog.
type serverLogWriter struct{ l zerolog.Logger }

func (w serverLogWriter) Write(p []byte) (int, error) {
	w.l.Warn().Str("component", "http").Str("error", string(trimNewline(p))).Msg("http server error")
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
