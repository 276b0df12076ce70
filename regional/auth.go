package regional

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"

	"github.com/tallyvote/tally"
)

// internalUser is the embedded server's user for the node itself: the only
// one that may publish to the results subjects and use the JetStream API.
const internalUser = "tally-node"

// IntakeSubject is the NATS request subject of the intake for one report of
// precinct p and contest c: tally.<region>.intake.<precinct>.<contest>. An
// office's NATS user may publish only to its own precincts' subjects.
func IntakeSubject(r tally.RegionID, p tally.PrecinctID, c tally.ContestID) string {
	return "tally." + string(r) + ".intake." + string(p) + "." + string(c)
}

func randomSecret() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// serverAuth makes the embedded server authenticate every client: the node
// itself as internalUser (password), each office as an nkey user allowed to
// publish only to its precincts' intake subjects and to receive replies.
// There is no anonymous user, so an unauthenticated client cannot connect,
// let alone publish. The leaf link to the hub is solicited by this server
// and is not a client.
func (n *Node) serverAuth(opts *server.Options) {
	opts.Users = []*server.User{{Username: internalUser, Password: n.password}}
	for _, of := range n.cfg.Offices {
		var allow []string
		for _, p := range n.offices.Precincts(of.ID) {
			allow = append(allow, IntakeSubject(n.region, p, "*"))
		}
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{
			Nkey: of.PublicKey,
			Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: allow},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
			},
		})
	}
}

// Connect connects to the node's embedded server as its internal user, which
// may publish anywhere (tests use it to bypass the intake). With an
// external server it connects to NATS.URL with opts alone. The caller
// closes the connection.
func (n *Node) Connect(opts ...nats.Option) (*nats.Conn, error) {
	if n.ns != nil {
		opts = append([]nats.Option{nats.InProcessServer(n.ns), nats.UserInfo(internalUser, n.password)}, opts...)
	}
	return nats.Connect(n.ClientURL(), opts...)
}

// officeLimits are the offices' token buckets. Buckets are made on first
// use and never removed: there is one per configured office at most.
type officeLimits struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newOfficeLimits(perSecond float64, burst int) *officeLimits {
	l := rate.Limit(perSecond)
	if perSecond < 0 {
		l = rate.Inf
	}
	return &officeLimits{limit: l, burst: burst, buckets: map[string]*rate.Limiter{}}
}

// take takes n tokens from each office's bucket (counts maps office to
// reports), all or none. It returns ERATELIMIT naming the first office out
// of tokens.
func (o *officeLimits) take(counts map[string]int) error {
	if o.limit == rate.Inf || len(counts) == 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	var taken []*rate.Reservation
	for office, k := range counts {
		b := o.buckets[office]
		if b == nil {
			b = rate.NewLimiter(o.limit, o.burst)
			o.buckets[office] = b
		}
		res := b.ReserveN(now, k)
		if !res.OK() || res.DelayFrom(now) > 0 {
			res.CancelAt(now)
			for _, t := range taken {
				t.CancelAt(now)
			}
			return tally.Errorf(tally.ERATELIMIT, "office %q: more than %g reports/s (burst %d); retry after a pause", office, float64(o.limit), o.burst)
		}
		taken = append(taken, res)
	}
	return nil
}

// authorize checks a report's signature and its office's right to the
// precinct, before any default is filled in (the signature covers the
// report as sent). A signed report must be complete: id, region and
// reported_at set, votes given (not derived from vote_types), and
// reported_at inside the replay window (tally.ReplayWindow), so the
// intake stores exactly the bytes that were signed.
func (n *Node) authorize(p *prepared, now time.Time) error {
	r := p.rep
	if r.Signature == "" && !n.cfg.RequireSignatures {
		return nil
	}
	if n.offices.Len() == 0 {
		return tally.Errorf(tally.EUNAUTHORIZED, "%s: signature: region %q lists no offices to verify it with", p.name, n.region)
	}
	if err := n.offices.Authorize(r); err != nil {
		return tally.Errorf(tally.ErrorCode(err), "%s: %s", p.name, tally.ErrorMessage(err))
	}
	switch {
	case r.ID == "":
		return tally.Errorf(tally.EINVALID, "%s: id: required in a signed report", p.name)
	case r.Region == "":
		return tally.Errorf(tally.EINVALID, "%s: region: required in a signed report", p.name)
	case r.ReportedAt.IsZero():
		return tally.Errorf(tally.EINVALID, "%s: reported_at: required in a signed report", p.name)
	case r.Votes == nil:
		return tally.Errorf(tally.EINVALID, "%s: votes: required in a signed report", p.name)
	}
	from, to := tally.ReplayWindow(now, n.cfg.DuplicateWindow)
	if r.ReportedAt.Before(from) || r.ReportedAt.After(to) {
		return tally.Errorf(tally.EINVALID, "%s: reported_at: %s is outside the replay window %s to %s; sign a fresh report",
			p.name, r.ReportedAt.UTC().Format(time.RFC3339), from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	p.office = r.Office
	return nil
}
