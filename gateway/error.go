package gateway

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tallyvote/tally"
)

// handleError is the echo HTTPErrorHandler: the one place errors become
// responses. Coded errors get their status and message; echo's own errors
// (unknown route, bad method) keep their status; anything else is logged
// once, with the request id, and shown as "internal error".
func (g *Gateway) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return // an event stream that failed mid-way: nothing more to send
	}
	log := requestLogger(g.cfg.Logger, c)
	status, body := http.StatusInternalServerError, tally.ErrorDetail{Code: tally.EINTERNAL, Message: "internal error"}
	var he *echo.HTTPError
	switch {
	case errors.As(err, &he):
		status = he.Code
		body.Code = tally.CodeForHTTPStatus(he.Code)
		body.Message = http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok && m != "" {
			body.Message = m
		}
		if status >= 500 {
			log.Error().Err(err).Msg("request failed")
		}
	case tally.ErrorCode(err) != tally.EINTERNAL:
		code := tally.ErrorCode(err)
		status = tally.HTTPStatus(code)
		body = tally.ErrorReply(err).Error
		if status >= 500 && status != http.StatusServiceUnavailable {
			log.Error().Err(err).Msg("request failed")
		}
	default:
		log.Error().Err(err).Msg("request failed")
	}
	if status == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", "2")
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	var werr error
	if c.Request().Method == http.MethodHead {
		werr = c.NoContent(status)
	} else {
		werr = c.JSON(status, tally.ErrorBody{Error: body})
	}
	if werr != nil {
		log.Debug().Err(werr).Msg("error response not sent")
	}
}
