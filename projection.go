package tally

import (
	"time"
)

// The projector's part of the wire contract. Projections and the current
// call of each contest live in NationalBucket next to the contest results;
// every call and retraction is also an event in CallsStream.
const (
	// KeyProjectionPrefix prefixes the key of a contest's projection (Projection).
	KeyProjectionPrefix = "projection."
	// KeyCallPrefix prefixes the key of a contest's current call (Call).
	KeyCallPrefix = "call."
	// CallsStream holds every call and retraction, in order, on CallSubject.
	CallsStream = "TALLY_CALLS"
	// AdminCallSubject takes manual calls and retractions as NATS requests
	// (an AdminCall); the projector answers with the resulting Call, or an
	// {"error":{"code","message"}} object.
	AdminCallSubject = "tally.admin.call"
)

// ProjectionKey is the national bucket key of contest c's projection.
func ProjectionKey(c ContestID) string { return KeyProjectionPrefix + string(c) }

// CallKey is the national bucket key of contest c's current call.
func CallKey(c ContestID) string { return KeyCallPrefix + string(c) }

// CallSubject is the subject of contest c's call events in CallsStream.
func CallSubject(c ContestID) string { return "tally.calls." + string(c) }

// Interval is a range of shares or margins, as fractions (0.52 = 52%).
type Interval struct {
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
}

// Contains reports whether x lies in the interval.
func (i Interval) Contains(x float64) bool { return i.Lo <= x && x <= i.Hi }

// CandidateEstimate is a candidate's estimated final share of the vote,
// with its intervals.
type CandidateEstimate struct {
	ID    CandidateID `json:"id"`
	Share float64     `json:"share"` // estimated final share of all candidate votes
	Votes int64       `json:"votes"` // estimated final votes
	I90   Interval    `json:"i90"`
	I99   Interval    `json:"i99"`
}

// MarginEstimate is the estimated final margin between the leader and the
// runner-up (leader's share minus runner-up's share), with its intervals.
type MarginEstimate struct {
	Leader   CandidateID `json:"leader"`
	RunnerUp CandidateID `json:"runner_up"`
	Estimate float64     `json:"estimate"`
	I90      Interval    `json:"i90"`
	I99      Interval    `json:"i99"`
}

// Projection is the projector's estimate of a contest's final result from
// the partial results so far.
type Projection struct {
	Contest ContestID `json:"contest"`
	At      time.Time `json:"at"`
	// Candidates in order of estimated share, highest first.
	Candidates []CandidateEstimate `json:"candidates"`
	Margin     MarginEstimate      `json:"margin"`
	// ExpectedVotes is the estimated final number of candidate votes;
	// CountedVotes those counted so far; Outstanding the difference.
	ExpectedVotes int64 `json:"expected_votes"`
	CountedVotes  int64 `json:"counted_votes"`
	Outstanding   int64 `json:"expected_outstanding"`
	// CountedShare is CountedVotes / ExpectedVotes.
	CountedShare float64 `json:"counted_share"`
	// PrecinctsReporting and PrecinctsTotal are as in the contest result;
	// PrecinctsWithoutHistory counts precincts with no baseline.
	PrecinctsReporting      int `json:"precincts_reporting"`
	PrecinctsTotal          int `json:"precincts_total"`
	PrecinctsWithoutHistory int `json:"precincts_without_history"`
	// BaselineYear is the election the swing is measured against.
	BaselineYear int `json:"baseline_year"`
}

// Call statuses.
const (
	CallCalled    = "called"
	CallRetracted = "retracted"
)

// Call is a race call, or its retraction: who won, when, and on what basis.
// By is "model" for the projector's own calls and "admin" for manual
// ones. Basis is the projection that justified a model call (nil for a
// manual call, or a retraction by hand).
type Call struct {
	Contest ContestID   `json:"contest"`
	Status  string      `json:"status"` // CallCalled or CallRetracted
	Winner  CandidateID `json:"winner,omitempty"`
	At      time.Time   `json:"at"`
	By      string      `json:"by"`
	Reason  string      `json:"reason,omitempty"`
	Basis   *Projection `json:"basis,omitempty"`
}

// AdminCall is a manual call or retraction, sent on AdminCallSubject.
type AdminCall struct {
	Contest ContestID   `json:"contest"`
	Action  string      `json:"action"` // "call" or "retract"
	Winner  CandidateID `json:"winner,omitempty"`
	Reason  string      `json:"reason"`
	By      string      `json:"by"`
}

// Validate checks a against election e. Errors have code EINVALID.
func (a *AdminCall) Validate(e *Election) error {
	c := e.Contest(a.Contest)
	if c == nil {
		return Errorf(EINVALID, "contest: unknown contest %q", a.Contest)
	}
	switch a.Action {
	case "call":
		if e.Candidate(a.Contest, a.Winner) == nil {
			return Errorf(EINVALID, "winner: unknown candidate %q in contest %q", a.Winner, a.Contest)
		}
	case "retract":
		if a.Winner != "" {
			return Errorf(EINVALID, "winner: a retraction names no winner")
		}
	default:
		return Errorf(EINVALID, "action: want \"call\" or \"retract\", got %q", a.Action)
	}
	if a.Reason == "" {
		return Errorf(EINVALID, "reason: required")
	}
	if len(a.Reason) > 1000 {
		return Errorf(EINVALID, "reason: longer than 1000 characters")
	}
	return nil
}
