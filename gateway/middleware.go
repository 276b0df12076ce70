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
// is sane, else a random one), echoes it in the response, and puts a logger
// carrying request_id into the request context. It turns a panic into an
// internal error and logs each request at debug level.
func (g *Gateway) requestContext(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		req := c.Request()
		id := req.Header.Get(requestIDHeader)
		if !validRequestID(id) {
			id = newRequestID()
		}
		c.Response().Header().Set(requestIDHeader, id)
		l := g.cfg.Logger.With().Str("request_id", id).Logger()
		c.SetRequest(req.WithContext(l.WithContext(req.Context())))
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
			l.Debug().Str("method", req.Method).Str("path", req.URL.Path).
				Int("status", c.Response().Status).
				Int64("duration_ms", time.Since(start).Milliseconds()).Msg("request served")
		}()
		return next(c)
	}
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
	return hex.EncodeToString(b[:])
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
