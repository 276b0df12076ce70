package tally

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Totals is the running tally of a stream of reports: the latest report per
// precinct and contest, and its sums per contest and per region. Applying is
// idempotent: each region's stream sequence is remembered, and an event at or
// below it changes nothing. Totals is not safe for concurrent use.
type Totals struct {
	e *Election
	// groups holds the cells of each contest, by region (see cellGroup);
	// loose holds any cell outside the election's ballots; ncells counts
	// both.
	groups   map[ContestID][]*cellGroup
	loose    map[cellKey]*cell
	ncells   int
	cands    map[ContestID]*candIndex
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

// cell is a Cell as a Totals works on it: a slot of a cellGroup (see
// cellGroup.load and put), or a loose cell. A national night has millions
// of cells, and a map of a few candidates' votes takes some 250 bytes, so
// the votes are a slice in the order of the contest's candidates instead (a
// part of its cellGroup's array).
type cell struct {
	slotCell
	region    RegionID              // the precinct's: with idHex, the id is region + "-" + hex(id[:12])
	overID    EventID               // the id, with idOver
	votes     []int64               // by candIndex; noCount where the report had none
	other     map[CandidateID]int64 // candidates not in the contest (never in a valid report)
	voteTypes map[VoteType]map[CandidateID]int64
}

// noCount marks a candidate the cell's report gave no count for.
const noCount = math.MinInt64

// candIndex numbers a contest's candidates, for cell.votes. It is never
// changed once made, so copies of the Totals share it.
type candIndex struct {
	ids    []CandidateID
	of     map[CandidateID]int
	sorted []int // indexes in the order of the ids, as encoding/json writes a map's keys
}

func (t *Totals) candIndex(c ContestID) *candIndex {
	if ci := t.cands[c]; ci != nil {
		return ci
	}
	ci := &candIndex{of: map[CandidateID]int{}}
	if con := t.e.Contest(c); con != nil {
		for i, cand := range con.Candidates {
			ci.ids = append(ci.ids, cand.ID)
			ci.of[cand.ID] = i
			ci.sorted = append(ci.sorted, i)
		}
	}
	slices.SortFunc(ci.sorted, func(a, b int) int { return cmp.Compare(ci.ids[a], ci.ids[b]) })
	t.cands[c] = ci
	return ci
}

// set stores votes into the cell, reusing its slice.
func (cl *cell) set(ci *candIndex, votes map[CandidateID]int64) {
	if cap(cl.votes) < len(ci.ids) {
		cl.votes = make([]int64, len(ci.ids))
	}
	cl.votes = cl.votes[:len(ci.ids)]
	for i := range cl.votes {
		cl.votes[i] = noCount
	}
	cl.other = nil
	for cand, n := range votes {
		if i, ok := ci.of[cand]; ok {
			cl.votes[i] = n
			continue
		}
		if cl.other == nil {
			cl.other = map[CandidateID]int64{}
		}
		cl.other[cand] = n
	}
}

// each calls fn with every candidate's count in the cell.
func (cl *cell) each(ci *candIndex, fn func(CandidateID, int64)) {
	for i, n := range cl.votes {
		if n != noCount {
			fn(ci.ids[i], n)
		}
	}
	for cand, n := range cl.other {
		fn(cand, n)
	}
}

// count returns candidate cand's count in the cell (0 if none).
func (cl *cell) count(ci *candIndex, cand CandidateID) int64 {
	if i, ok := ci.of[cand]; ok {
		if n := cl.votes[i]; n != noCount {
			return n
		}
		return 0
	}
	return cl.other[cand]
}

// votesMap returns the cell's votes as a new map.
func (cl *cell) votesMap(ci *candIndex) map[CandidateID]int64 {
	m := make(map[CandidateID]int64, len(cl.votes)+len(cl.other))
	cl.each(ci, func(cand CandidateID, n int64) { m[cand] = n })
	return m
}

// public returns the cell as a Cell, with maps of its own except the vote
// types, which Apply replaces and never changes.
func (cl *cell) public(ci *candIndex) *Cell {
	return &Cell{
		Seq: cl.seq, ID: cl.eventID(), Votes: cl.votesMap(ci), VoteTypes: cl.voteTypes, BallotsCast: cl.ballotsCast,
		Complete: cl.complete, ReportedAt: cl.reportedAt(), Reports: int(cl.reports), Corrections: int(cl.corrections),
	}
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
		groups:   map[ContestID][]*cellGroup{},
		cands:    map[ContestID]*candIndex{},
		contests: map[ContestID]*ContestTally{},
		lastSeq:  map[RegionID]uint64{},
	}
}

// LastSeq returns the last stream sequence applied from region r (0 if none).
func (t *Totals) LastSeq(r RegionID) uint64 { return t.lastSeq[r] }

// Cells returns the number of cells: (precinct, contest) pairs with a
// report.
func (t *Totals) Cells() int { return t.ncells }

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
	ci := t.candIndex(rep.Contest)
	ref, cl, had := t.cellFor(rep.Precinct, rep.Contest)
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
	ca := t.countyOf(rep.Contest, rep.Precinct)
	var oldAt time.Time
	if !had {
		ct.Reporting++
		rt.Reporting++
	} else {
		cl.each(ci, func(cand CandidateID, n int64) {
			ct.Votes[cand] -= n
			rt.Votes[cand] -= n
		})
		for vt, byCand := range cl.voteTypes {
			for cand, n := range byCand {
				ct.VoteTypes[vt][cand] -= n
			}
		}
		ct.BallotsCast -= cl.ballotsCast
		rt.BallotsCast -= cl.ballotsCast
		if cl.complete {
			ct.Complete--
			rt.Complete--
		}
		t.countySub(ca, ci, &cl)
		oldAt = cl.reportedAt()
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
		cl.corrections++
		t.noteCorrection(k, rep.Correction)
	}
	cl.seq = seq
	setID(&cl, rep.ID)
	cl.set(ci, rep.Votes)
	cl.voteTypes = rep.VoteTypes
	cl.ballotsCast = ballots
	cl.complete = rep.Complete
	cl.setReportedAt(rep.ReportedAt)
	cl.reports++
	t.putCell(ref, &cl)
	t.countyAdd(ca, ci, &cl, had, oldAt)
	if rep.ReportedAt.After(ct.Updated) {
		ct.Updated = rep.ReportedAt
	}
	if rep.ReportedAt.After(rt.Updated) {
		rt.Updated = rep.ReportedAt
	}
	t.events++
	return true
}

// Cell returns a copy of the current state of precinct p in contest c, or
// nil when it has not reported.
func (t *Totals) Cell(p PrecinctID, c ContestID) *Cell {
	cl, ok := t.cell(p, c)
	if !ok {
		return nil
	}
	return cl.public(t.candIndex(c))
}

// Counted reports whether precinct p has reported in contest c and whether
// its latest report is complete, and sets votes[i] to the count of cands[i]
// in it (0 where it has none). It allocates nothing.
func (t *Totals) Counted(p PrecinctID, c ContestID, cands []CandidateID, votes []int64) (reported, complete bool) {
	cl, ok := t.cell(p, c)
	if !ok {
		return false, false
	}
	ci := t.candIndex(c)
	for i, cand := range cands {
		votes[i] = cl.count(ci, cand)
	}
	return true, cl.complete
}

// EachVote calls fn with every candidate's count in the latest report of
// precinct p in contest c; it reports whether there is one.
func (t *Totals) EachVote(p PrecinctID, c ContestID, fn func(CandidateID, int64)) bool {
	cl, ok := t.cell(p, c)
	if !ok {
		return false
	}
	cl.each(t.candIndex(c), fn)
	return true
}

// Contest returns the tally of contest c, or nil when nothing has been
// reported for it. The returned value must not be modified.
func (t *Totals) Contest(c ContestID) *ContestTally { return t.contests[c] }
