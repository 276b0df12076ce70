package tally

import (
	"time"
)

// Totals is the running tally of a stream of reports: the latest report per
// precinct and contest, and its sums per contest and per region. Applying is
// idempotent: each region's stream sequence is remembered, and an event at or
// below it changes nothing. Totals is not safe for concurrent use.
type Totals struct {
	e        *Election
	cells    map[cellKey]*Cell
	contests map[ContestID]*ContestTally
	lastSeq  map[RegionID]uint64
	events   uint64
	// corrections holds the latest correction applied per precinct and
	// contest (see PrecinctResults); nil until the first.
	corrections map[cellKey]*Correction
	// countyIdx holds each contest's results by county, once CountyResults
	// has asked for them; Apply keeps them up to date.
	countyIdx map[ContestID]*countyIndex
}

type cellKey struct {
	p PrecinctID
	c ContestID
}

// Cell is the current state of one precinct and contest: the latest report's
// counts and where it came from.
type Cell struct {
	Seq         uint64                             `json:"seq"`
	ID          EventID                            `json:"id"`
	Votes       map[CandidateID]int64              `json:"votes"`
	VoteTypes   map[VoteType]map[CandidateID]int64 `json:"vote_types,omitempty"`
	BallotsCast int64                              `json:"ballots_cast,omitempty"`
	Complete    bool                               `json:"complete"`
	ReportedAt  time.Time                          `json:"reported_at"`
	Reports     int                                `json:"reports"`     // reports applied, corrections included
	Corrections int                                `json:"corrections"` // corrections applied
}

// ContestTally is the sum of the latest reports of a contest's precincts.
type ContestTally struct {
	Votes       map[CandidateID]int64
	VoteTypes   map[VoteType]map[CandidateID]int64
	BallotsCast int64
	Reporting   int // precincts with at least one report
	Complete    int // precincts whose latest report is complete
	Corrections int
	Regions     map[RegionID]*RegionTally
	Updated     time.Time // ReportedAt of the latest applied report
}

// RegionTally is one region's part of a ContestTally.
type RegionTally struct {
	Votes       map[CandidateID]int64
	BallotsCast int64
	Reporting   int
	Complete    int
	Updated     time.Time
}

// NewTotals returns empty totals for election e.
func NewTotals(e *Election) *Totals {
	return &Totals{
		e:        e,
		cells:    map[cellKey]*Cell{},
		contests: map[ContestID]*ContestTally{},
		lastSeq:  map[RegionID]uint64{},
	}
}

// LastSeq returns the last stream sequence applied from region r (0 if none).
func (t *Totals) LastSeq(r RegionID) uint64 { return t.lastSeq[r] }

// Events returns the number of reports applied.
func (t *Totals) Events() uint64 { return t.events }

// Advance records that region r's stream has been consumed up to seq without
// a report to apply (a message that is not a report). It never moves back.
func (t *Totals) Advance(r RegionID, seq uint64) {
	if seq > t.lastSeq[r] {
		t.lastSeq[r] = seq
	}
}

// Apply applies report rep, stored at sequence seq of its region's stream. A
// report replaces the previous one of its precinct and contest in the sums;
// a correction does the same for the report it supersedes. It reports whether
// the totals changed; an event at or below the region's last applied sequence
// is ignored, which makes redelivery harmless. rep must be valid for the
// election (see Report.Validate).
func (t *Totals) Apply(seq uint64, rep *Report) bool {
	if seq <= t.lastSeq[rep.Region] {
		return false
	}
	t.lastSeq[rep.Region] = seq
	k := cellKey{rep.Precinct, rep.Contest}
	cell := t.cells[k]
	ct := t.contests[rep.Contest]
	if ct == nil {
		ct = &ContestTally{Votes: map[CandidateID]int64{}, Regions: map[RegionID]*RegionTally{}}
		t.contests[rep.Contest] = ct
	}
	rt := ct.Regions[rep.Region]
	if rt == nil {
		rt = &RegionTally{Votes: map[CandidateID]int64{}}
		ct.Regions[rep.Region] = rt
	}
	var old *Cell
	if cell != nil && t.countyIdx[rep.Contest] != nil {
		c := *cell
		old = &c
	}
	if cell == nil {
		cell = &Cell{}
		t.cells[k] = cell
		ct.Reporting++
		rt.Reporting++
	} else {
		for cand, n := range cell.Votes {
			ct.Votes[cand] -= n
			rt.Votes[cand] -= n
		}
		for vt, byCand := range cell.VoteTypes {
			for cand, n := range byCand {
				ct.VoteTypes[vt][cand] -= n
			}
		}
		ct.BallotsCast -= cell.BallotsCast
		rt.BallotsCast -= cell.BallotsCast
		if cell.Complete {
			ct.Complete--
			rt.Complete--
		}
	}
	for cand, n := range rep.Votes {
		ct.Votes[cand] += n
		rt.Votes[cand] += n
	}
	for vt, byCand := range rep.VoteTypes {
		if ct.VoteTypes == nil {
			ct.VoteTypes = map[VoteType]map[CandidateID]int64{}
		}
		if ct.VoteTypes[vt] == nil {
			ct.VoteTypes[vt] = map[CandidateID]int64{}
		}
		for cand, n := range byCand {
			ct.VoteTypes[vt][cand] += n
		}
	}
	var ballots int64
	if rep.BallotsCast != nil {
		ballots = *rep.BallotsCast
	}
	ct.BallotsCast += ballots
	rt.BallotsCast += ballots
	if rep.Complete {
		ct.Complete++
		rt.Complete++
	}
	if rep.Correction != nil {
		ct.Corrections++
		cell.Corrections++
		t.noteCorrection(k, rep.Correction)
	}
	cell.Seq = seq
	cell.ID = rep.ID
	cell.Votes = rep.Votes
	cell.VoteTypes = rep.VoteTypes
	cell.BallotsCast = ballots
	cell.Complete = rep.Complete
	cell.ReportedAt = rep.ReportedAt
	cell.Reports++
	t.countyApply(rep.Contest, rep.Precinct, old, cell)
	if rep.ReportedAt.After(ct.Updated) {
		ct.Updated = rep.ReportedAt
	}
	if rep.ReportedAt.After(rt.Updated) {
		rt.Updated = rep.ReportedAt
	}
	t.events++
	return true
}

// Cell returns the current state of precinct p in contest c, or nil when it
// has not reported. The returned value must not be modified.
func (t *Totals) Cell(p PrecinctID, c ContestID) *Cell { return t.cells[cellKey{p, c}] }

// Contest returns the tally of contest c, or nil when nothing has been
// reported for it. The returned value must not be modified.
func (t *Totals) Contest(c ContestID) *ContestTally { return t.contests[c] }
