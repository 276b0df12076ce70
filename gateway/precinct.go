package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/tallyvote/tally"
)

// precinctJSON is the shape of GET /api/v1/precincts/{id}.
type precinctJSON struct {
	Precinct *tally.Precinct `json:"precinct"`
	Contests []trailJSON     `json:"contests"`
}

// trailJSON is the audit trail of one contest of a precinct: every report
// and correction in stream order, and the one that counts now.
type trailJSON struct {
	Contest tally.ContestID `json:"contest"`
	Name    string          `json:"name"`
	Reports []storedReport  `json:"reports"`
	Current *storedReport   `json:"current"` // null before the first report
}

// storedReport is a report with its sequence in the region's stream.
type storedReport struct {
	Seq    uint64        `json:"seq"`
	Report *tally.Report `json:"report"`
}

func (g *Gateway) getPrecinct(c echo.Context) error {
	id := tally.PrecinctID(c.Param("id"))
	p := g.cfg.Election.Precinct(id)
	if p == nil {
		return tally.Errorf(tally.ENOTFOUND, "unknown precinct %q", id)
	}
	select {
	case g.auditSem <- struct{}{}:
		defer func() { <-g.auditSem }()
	default:
		return tally.Errorf(tally.EUNAVAILABLE, "too many audit requests; retry shortly")
	}
	ctx := requestLogger(g.cfg.Logger, c).WithContext(c.Request().Context())
	ctx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	trail, err := g.auditTrail(ctx, p)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.JSON(200, trail)
}

// auditTrail reads precinct p's events from its region's mirror with an
// ordered consumer, up to the last one stored when it started. Errors have
// code EUNAVAILABLE when the mirror cannot be read in time.
func (g *Gateway) auditTrail(ctx context.Context, p *tally.Precinct) (*precinctJSON, error) {
	out := &precinctJSON{Precinct: p, Contests: make([]trailJSON, 0, len(p.Contests))}
	byContest := make(map[tally.ContestID]int, len(p.Contests))
	for i, cid := range p.Contests {
		name := ""
		if con := g.cfg.Election.Contest(cid); con != nil {
			name = con.Name
		}
		out.Contests = append(out.Contests, trailJSON{Contest: cid, Name: name, Reports: []storedReport{}})
		byContest[cid] = i
	}
	stream := tally.MirrorStream(p.Region)
	cons, err := g.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{tally.PrecinctSubjects(p.Region, p.ID)},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 30 * auditTimeout, // the server's cleanup if our delete is lost
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, tally.Errorf(tally.EUNAVAILABLE, "audit trail of region %q not available", p.Region)
		}
		return nil, unavailable(ctx, p, err)
	}
	defer g.deleteConsumer(stream, cons)
	info := cons.CachedInfo()
	if info == nil || info.NumPending == 0 {
		return out, nil
	}
	msgs, err := cons.Messages()
	if err != nil {
		return nil, unavailable(ctx, p, err)
	}
	defer msgs.Stop()
	log := zerolog.Ctx(ctx)
	for {
		msg, err := msgs.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, unavailable(ctx, p, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("audit %s: metadata: %w", p.ID, err)
		}
		rep, err := tally.DecodeReport(msg.Data())
		_, _, cid, ok := tally.ParseResultsSubject(msg.Subject())
		switch {
		case err != nil:
			log.Warn().Err(err).Str("stream", stream).Uint64("seq", md.Sequence.Stream).Msg("undecodable report skipped")
		case !ok:
		default:
			if i, on := byContest[cid]; on {
				sr := storedReport{Seq: md.Sequence.Stream, Report: rep}
				out.Contests[i].Reports = append(out.Contests[i].Reports, sr)
			}
		}
		if md.NumPending == 0 {
			break
		}
	}
	for i := range out.Contests {
		// The last event of a subject is the one that counts: a correction
		// must supersede the latest report to be stored at all.
		if t := &out.Contests[i]; len(t.Reports) > 0 {
			t.Current = &t.Reports[len(t.Reports)-1]
		}
	}
	return out, nil
}

// deleteConsumer removes an audit consumer now rather than at its
// inactivity threshold.
func (g *Gateway) deleteConsumer(stream string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), auditTimeout)
	defer cancel()
	if err := g.js.DeleteConsumer(ctx, stream, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		g.log.Debug().Err(err).Str("stream", stream).Str("consumer", info.Name).Msg("audit consumer not deleted")
	}
}

func unavailable(ctx context.Context, p *tally.Precinct, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return tally.Errorf(tally.EUNAVAILABLE, "audit trail of precinct %q timed out", p.ID)
	}
	return fmt.Errorf("audit %s: %w", p.ID, err)
}
