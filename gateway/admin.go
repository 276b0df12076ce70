package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go"

	"github.com/tallyvote/tally"
)

const maxAdminBody = 16 << 10

// adminCallJSON is the body of POST /api/v1/admin/calls.
type adminCallJSON struct {
	Contest tally.ContestID   `json:"contest"`
	Action  string            `json:"action"` // "call" or "retract"
	Winner  tally.CandidateID `json:"winner,omitempty"`
	Reason  string            `json:"reason"`
}

// adminAuth lets a request through only with the configured admin token as
// a bearer token. Without a configured token the admin API is disabled
// (EFORBIDDEN); a missing or wrong token is EUNAUTHORIZED.
func (g *Gateway) adminAuth(next echo.HandlerFunc) echo.HandlerFunc {
	// Compare digests, so the comparison takes the same time whatever the
	// length of the token presented.
	want := sha256.Sum256([]byte(g.cfg.AdminToken))
	return func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "no-store")
		if g.cfg.AdminToken == "" {
			return tally.Errorf(tally.EFORBIDDEN, "admin API disabled")
		}
		scheme, token, ok := strings.Cut(c.Request().Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="tally-admin"`)
			return tally.Errorf(tally.EUNAUTHORIZED, "admin token required: Authorization: Bearer <token>")
		}
		return next(c)
	}
}

// postAdminCall serves POST /api/v1/admin/calls: a manual call or
// retraction, validated here and made by the projector, whose resulting
// Call is the answer. The projector's refusals keep their codes (forbidden
// when manual calls are disabled, invalid); no projector answering in time
// is EUNAVAILABLE.
func (g *Gateway) postAdminCall(c echo.Context) error {
	req := c.Request()
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, maxAdminBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return tally.Errorf(tally.ETOOLARGE, "body over %d bytes", maxAdminBody)
		}
		return tally.Errorf(tally.EINVALID, "read body: %v", err)
	}
	var in adminCallJSON
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return tally.Errorf(tally.EINVALID, "body: want a JSON object {contest, action, winner, reason}: %s",
			strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return tally.Errorf(tally.EINVALID, "body: one JSON object, please")
	}
	ac := tally.AdminCall{Contest: in.Contest, Action: in.Action, Winner: in.Winner, Reason: in.Reason, By: "admin"}
	if err := ac.Validate(g.cfg.Election); err != nil {
		return err
	}
	call, err := g.requestCall(req.Context(), ac)
	l := requestLogger(g.cfg.Logger, c)
	if err != nil {
		if code := tally.ErrorCode(err); code != tally.EINTERNAL { // internal errors are logged by handleError
			l.Info().Str("code", code).Str("contest", string(ac.Contest)).Str("action", ac.Action).Msg("admin call refused")
		}
		return err
	}
	l.Info().Str("contest", string(ac.Contest)).Str("action", ac.Action).Str("winner", string(ac.Winner)).
		Str("status", call.Status).Msg("admin call made")
	return c.JSON(http.StatusOK, call)
}

// requestCall sends ac to the projector and returns its Call, or its error
// with the projector's code.
func (g *Gateway) requestCall(ctx context.Context, ac tally.AdminCall) (*tally.Call, error) {
	b, err := json.Marshal(ac)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.AdminTimeout)
	defer cancel()
	msg, err := g.nc.RequestWithContext(ctx, tally.AdminCallSubject, b)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, tally.Errorf(tally.EUNAVAILABLE, "projector not running")
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return nil, tally.Errorf(tally.EUNAVAILABLE, "projector did not answer in time")
	case err != nil:
		return nil, &tally.Error{Code: tally.EUNAVAILABLE, Message: "projector unreachable: " + err.Error()}
	}
	var reply struct {
		Error *tally.ErrorDetail `json:"error"`
		tally.Call
	}
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return nil, errors.New("projector reply: " + err.Error())
	}
	if e := reply.Error; e != nil {
		if e.Code == "" {
			e.Code = tally.EINTERNAL
		}
		return nil, tally.Errorf(e.Code, "%s", e.Message)
	}
	if reply.Contest != ac.Contest || (reply.Status != tally.CallCalled && reply.Status != tally.CallRetracted) {
		return nil, errors.New("projector reply: not a call of contest " + string(ac.Contest))
	}
	return &reply.Call, nil
}

// regionLinkJSON is the body of POST /api/v1/admin/regions/{id}/link.
type regionLinkJSON struct {
	Up *bool `json:"up"`
}

// postRegionLink serves POST /api/v1/admin/regions/{id}/link: {"up": false}
// cuts the region's link to the hub, {"up": true} restores it. Only where
// Config.Links is set (tally demo); elsewhere 404.
func (g *Gateway) postRegionLink(c echo.Context) error {
	if g.cfg.Links == nil {
		return tally.Errorf(tally.ENOTFOUND, "region links cannot be cut from here (only tally demo can)")
	}
	id := tally.RegionID(c.Param("id"))
	if g.cfg.Election.Region(id) == nil {
		return tally.Errorf(tally.ENOTFOUND, "region %q: not a region of this election", id)
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxAdminBody))
	if err != nil {
		return tally.Errorf(tally.EINVALID, "read body: %v", err)
	}
	var in regionLinkJSON
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || in.Up == nil {
		return tally.Errorf(tally.EINVALID, "body: want {\"up\": true|false}")
	}
	if err := g.cfg.Links.SetRegionLink(id, *in.Up); err != nil {
		return err
	}
	requestLogger(g.cfg.Logger, c).Warn().Str("region", string(id)).Bool("up", *in.Up).Msg("region link set by admin")
	return c.JSON(http.StatusOK, map[string]any{"region": id, "up": *in.Up})
}
