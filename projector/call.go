package projector

import (
	"time"

	"github.com/tallyvote/tally"
)

// CallRule says when the model calls a race and when it takes a call back.
//
// A contest is called for the projected leader when, against every other
// candidate, the leader's margin minus CallZ standard errors is above 0 (a
// one-sided test at CallZ; 3.29 is the edge of a two-sided 99.9% interval,
// stricter than the published I99), at least MinCounted of the expected vote
// is counted, at least MinPrecincts of the precincts are reporting, and
// complete precincts have come from at least MinCounties counties (all of
// them when the contest has fewer). A model call is retracted when the
// winner's margin over some candidate, minus RetractZ standard errors, is no
// longer above 0, or another candidate leads; the model may call again later
// under the call rule. Retracting at a looser level than calling keeps a
// call from flapping on noise.
type CallRule struct {
	CallZ        float64
	RetractZ     float64
	MinCounted   float64
	MinPrecincts float64
	MinCounties  int
}

// DefaultCallRule is the rule the service and `tally eval` use.
var DefaultCallRule = CallRule{CallZ: 3.29, RetractZ: 2.5758, MinCounted: 0.3, MinPrecincts: 0.1, MinCounties: 2}

// excludes reports whether, at z standard errors, the leader's margin over
// every other candidate is above 0.
func excludes(est *Estimate, z float64) bool {
	if len(est.Pairs) == 0 {
		return len(est.Candidates) == 1
	}
	for _, p := range est.Pairs {
		if p.Margin-z*p.SE <= 0 {
			return false
		}
	}
	return true
}

// Callable reports whether est meets the rule for a call for its leader.
func (r CallRule) Callable(est *Estimate) bool {
	if len(est.Candidates) == 0 || est.PrecinctsTotal == 0 {
		return false
	}
	if est.CountedShare < r.MinCounted {
		return false
	}
	if float64(est.PrecinctsReporting) < r.MinPrecincts*float64(est.PrecinctsTotal) {
		return false
	}
	need := min(r.MinCounties, est.CountiesTotal)
	if est.CountiesReporting < need {
		return false
	}
	return excludes(est, r.CallZ)
}

// holds reports whether a model call for winner still stands given est.
func (r CallRule) holds(est *Estimate, winner tally.CandidateID) bool {
	if len(est.Candidates) == 0 || est.Candidates[0].ID != winner {
		return false
	}
	return excludes(est, r.RetractZ)
}

// Caller keeps one contest's current call and turns estimates and manual
// actions into call events. A manual call or retraction holds until the next
// manual action: the model neither overrides nor retracts it. The zero value
// is not usable; use NewCaller. A Caller is not safe for concurrent use.
type Caller struct {
	Rule    CallRule
	contest tally.ContestID
	current *tally.Call
	manual  bool
}

// NewCaller returns a Caller of contest c with rule r and no call.
func NewCaller(c tally.ContestID, r CallRule) *Caller {
	return &Caller{Rule: r, contest: c}
}

// Current returns the current call (status called or retracted), or nil
// when the contest has never been called.
func (c *Caller) Current() *tally.Call { return c.current }

// Called returns the candidate the contest is called for, or "".
func (c *Caller) Called() tally.CandidateID {
	if c.current != nil && c.current.Status == tally.CallCalled {
		return c.current.Winner
	}
	return ""
}

// Update applies the call rule to est. It returns the new call event, or
// nil when nothing changes.
func (c *Caller) Update(est *Estimate) *tally.Call {
	if c.manual {
		return nil
	}
	if w := c.Called(); w != "" {
		if c.Rule.holds(est, w) {
			return nil
		}
		basis := est.Projection
		reason := "the margin's interval no longer excludes every other candidate"
		if len(est.Candidates) > 0 && est.Candidates[0].ID != w {
			reason = "another candidate leads the projection"
		}
		c.current = &tally.Call{Contest: c.contest, Status: tally.CallRetracted, At: est.At, By: "model", Reason: reason, Basis: &basis}
		return c.current
	}
	if !c.Rule.Callable(est) {
		return nil
	}
	basis := est.Projection
	c.current = &tally.Call{
		Contest: c.contest, Status: tally.CallCalled, Winner: est.Candidates[0].ID, At: est.At, By: "model",
		Reason: "the strict interval of the margin excludes every other candidate", Basis: &basis,
	}
	return c.current
}

// Manual applies an admin call or retraction, which must be valid (see
// tally.AdminCall.Validate), and returns the event.
func (c *Caller) Manual(a *tally.AdminCall, at time.Time) *tally.Call {
	c.manual = true
	// By is "admin" for every manual call (see tally.Call); who asked is
	// the gateway's business (a.By).
	call := &tally.Call{Contest: c.contest, At: at, By: "admin", Reason: a.Reason}
	if a.Action == "call" {
		call.Status = tally.CallCalled
		call.Winner = a.Winner
	} else {
		call.Status = tally.CallRetracted
	}
	c.current = call
	return call
}
