package projector_test

import (
	"testing"
	"time"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/projector"
)

// estimate is a projection of "c" with leader a over b by margin, with
// standard error se, at counted share cs.
func estimate(leader, other tally.CandidateID, margin, se, cs float64) *projector.Estimate {
	return &projector.Estimate{
		Projection: tally.Projection{Contest: "c", At: time.Unix(100, 0), CountedShare: cs,
			PrecinctsReporting: 50, PrecinctsTotal: 100,
			Candidates: []tally.CandidateEstimate{{ID: leader, Share: 0.5 + margin/2}, {ID: other, Share: 0.5 - margin/2}},
			Margin:     tally.MarginEstimate{Leader: leader, RunnerUp: other, Estimate: margin}},
		Pairs:             []projector.PairMargin{{Other: other, Margin: margin, SE: se}},
		CountiesReporting: 3, CountiesTotal: 5,
	}
}

func TestCallRule(t *testing.T) {
	r := projector.DefaultCallRule
	tests := []struct {
		name string
		est  *projector.Estimate
		want bool
	}{
		{"Clear", estimate("a", "b", 0.10, 0.01, 0.5), true},
		{"IntervalTouchesZero", estimate("a", "b", 0.03, 0.01, 0.5), false},
		{"TooLittleCounted", estimate("a", "b", 0.10, 0.01, 0.1), false},
		{"Tie", estimate("a", "b", 0, 0, 1), false},
		{"OneCounty", func() *projector.Estimate {
			e := estimate("a", "b", 0.10, 0.01, 0.5)
			e.CountiesReporting = 1
			return e
		}(), false},
		{"FewPrecincts", func() *projector.Estimate {
			e := estimate("a", "b", 0.10, 0.01, 0.5)
			e.PrecinctsReporting = 5
			return e
		}(), false},
		{"EveryOtherCandidate", func() *projector.Estimate {
			e := estimate("a", "b", 0.10, 0.01, 0.5)
			e.Pairs = append(e.Pairs, projector.PairMargin{Other: "c", Margin: 0.02, SE: 0.01})
			return e
		}(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Callable(tt.est); got != tt.want {
				t.Errorf("Callable() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCallerCallRetractRecall(t *testing.T) {
	c := projector.NewCaller("c", projector.DefaultCallRule)
	if ev := c.Update(estimate("a", "b", 0.03, 0.01, 0.5)); ev != nil {
		t.Fatalf("called too early: %+v", ev)
	}
	ev := c.Update(estimate("a", "b", 0.10, 0.01, 0.5))
	if ev == nil || ev.Status != tally.CallCalled || ev.Winner != "a" || ev.By != "model" || ev.Basis == nil || ev.Basis.CountedShare != 0.5 {
		t.Fatalf("call = %+v", ev)
	}
	if ev := c.Update(estimate("a", "b", 0.05, 0.01, 0.6)); ev != nil {
		t.Fatalf("a call still supported (5 se) was changed: %+v", ev)
	}
	ev = c.Update(estimate("a", "b", 0.02, 0.01, 0.7))
	if ev == nil || ev.Status != tally.CallRetracted || ev.Winner != "" || ev.Basis == nil {
		t.Fatalf("retraction = %+v", ev)
	}
	if c.Called() != "" {
		t.Fatalf("Called() = %q after a retraction", c.Called())
	}
	ev = c.Update(estimate("b", "a", 0.10, 0.01, 0.9))
	if ev == nil || ev.Status != tally.CallCalled || ev.Winner != "b" {
		t.Fatalf("re-call = %+v", ev)
	}
	// A leader change retracts at once.
	ev = c.Update(estimate("a", "b", 0.001, 0.01, 0.95))
	if ev == nil || ev.Status != tally.CallRetracted {
		t.Fatalf("retraction on a leader change = %+v", ev)
	}
}

func TestCallerManualOverride(t *testing.T) {
	c := projector.NewCaller("c", projector.DefaultCallRule)
	ev := c.Manual(&tally.AdminCall{Contest: "c", Action: "call", Winner: "b", Reason: "desk", By: "ed"}, time.Unix(5, 0))
	if ev.Status != tally.CallCalled || ev.Winner != "b" || ev.By != "admin" || ev.Basis != nil {
		t.Fatalf("manual call = %+v", ev)
	}
	// The model neither retracts nor replaces a manual call.
	if ev := c.Update(estimate("a", "b", 0.10, 0.01, 0.9)); ev != nil {
		t.Fatalf("model overrode a manual call: %+v", ev)
	}
	ev = c.Manual(&tally.AdminCall{Contest: "c", Action: "retract", Reason: "too early", By: "ed"}, time.Unix(6, 0))
	if ev.Status != tally.CallRetracted || c.Called() != "" {
		t.Fatalf("manual retraction = %+v", ev)
	}
	if ev := c.Update(estimate("a", "b", 0.10, 0.01, 0.9)); ev != nil {
		t.Fatalf("model called after a manual retraction: %+v", ev)
	}
}
