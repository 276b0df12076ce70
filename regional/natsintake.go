package regional

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tallyvote/tally"
)

// startNATSIntake serves the intake as NATS request/reply on
// IntakeSubject(region, precinct, contest): one report per request, the
// same checks as the HTTP intake, and the same JSON answer (a SubmitResponse,
// or {"error":{"code","message"}}). The report's precinct and contest must
// be those of the subject, which the office's NATS user is allowed to
// publish to.
func (n *Node) startNATSIntake() error {
	sub, err := n.nc.QueueSubscribe("tally."+string(n.region)+".intake.*.*", "tally-intake", n.handleNATSIntake)
	if err != nil {
		return fmt.Errorf("nats intake: subscribe: %w", err)
	}
	n.sub = sub
	return nil
}

func (n *Node) handleNATSIntake(m *nats.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	ctx = n.log.With().Str("subject", m.Subject).Logger().WithContext(ctx)
	var reply any
	start := time.Now()
	results, err := n.submitNATS(ctx, m)
	n.metrics.done(viaNATS, start, err)
	if err != nil {
		if tally.ErrorCode(err) == tally.EINTERNAL {
			n.log.Error().Err(err).Str("subject", m.Subject).Msg("nats intake failed")
		}
		reply = tally.ErrorReply(err)
	} else {
		reply = SubmitResponse{Results: results}
	}
	b, err := json.Marshal(reply)
	if err != nil {
		n.log.Error().Err(err).Msg("nats intake reply not encoded")
		return
	}
	if m.Reply == "" {
		return // a publish without reply subject: the result is in the stream
	}
	if err := m.Respond(b); err != nil {
		n.log.Debug().Err(err).Str("subject", m.Subject).Msg("nats intake reply not sent")
	}
}

func (n *Node) submitNATS(ctx context.Context, m *nats.Msg) ([]SubmitResult, error) {
	parts := strings.Split(m.Subject, ".")
	if len(parts) != 5 {
		return nil, tally.Errorf(tally.EINVALID, "subject: want tally.<region>.intake.<precinct>.<contest>")
	}
	if int64(len(m.Data)) > n.cfg.HTTP.MaxBody {
		return nil, tally.Errorf(tally.ETOOLARGE, "body: %d bytes, at most %d allowed", len(m.Data), n.cfg.HTTP.MaxBody)
	}
	r, err := tally.DecodeReport(m.Data)
	if err != nil {
		return nil, err
	}
	if string(r.Precinct) != parts[3] || string(r.Contest) != parts[4] {
		return nil, tally.Errorf(tally.EFORBIDDEN, "report: precinct %q, contest %q, but sent on the subject of precinct %q, contest %q",
			r.Precinct, r.Contest, parts[3], parts[4])
	}
	return n.submit(ctx, m.Data, false, viaNATS)
}
