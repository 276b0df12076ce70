package tally

import (
	"encoding/json"
	"slices"
	"time"
)

// TotalsState is the whole state of a Totals, for snapshots: the latest
// report of every precinct and contest, the sums derived from them, the last
// sequence applied per region and the corrections. State takes it cheaply
// (a snapshot is taken under the lock that guards the Totals); encoding it
// as JSON, the costly part, can then be done without the lock.
type TotalsState struct {
	// Election is the id of the election the totals are of.
	Election string              `json:"election"`
	Events   uint64              `json:"events"`
	LastSeq  map[RegionID]uint64 `json:"last_seq"`
	Cells    []CellState         `json:"cells"`
	Contests []ContestTallyState `json:"contests"`
}

// CellState is one precinct and contest of a TotalsState: its Cell and the
// latest correction applied to it, if any.
type CellState struct {
	Precinct   PrecinctID  `json:"precinct"`
	Contest    ContestID   `json:"contest"`
	Cell       Cell        `json:"cell"`
	Correction *Correction `json:"correction,omitempty"`
}

// ContestTallyState is one contest's sums in a TotalsState.
type ContestTallyState struct {
	Contest     ContestID                          `json:"contest"`
	Votes       map[CandidateID]int64              `json:"votes"`
	VoteTypes   map[VoteType]map[CandidateID]int64 `json:"vote_types,omitempty"`
	BallotsCast int64                              `json:"ballots_cast"`
	Reporting   int                                `json:"reporting"`
	Complete    int                                `json:"complete"`
	Corrections int                                `json:"corrections"`
	Updated     time.Time                          `json:"updated,omitzero"`
	Regions     []RegionTallyState                 `json:"regions"`
}

// RegionTallyState is one region's part of a ContestTallyState.
type RegionTallyState struct {
	Region      RegionID              `json:"region"`
	Votes       map[CandidateID]int64 `json:"votes"`
	BallotsCast int64                 `json:"ballots_cast"`
	Reporting   int                   `json:"reporting"`
	Complete    int                   `json:"complete"`
	Updated     time.Time             `json:"updated,omitzero"`
}

// State returns a copy of t's state that later changes to t do not affect.
// It copies the sums (maps changed in place by Apply) and each cell's votes,
// but shares each cell's vote types, which Apply replaces and never
// changes. Cells come in election order (precincts, then each
// precinct's contests), so equal totals give equal states.
func (t *Totals) State() *TotalsState {
	s := t.sums()
	s.Cells = make([]CellState, 0, t.ncells)
	for pi, p := range t.e.Precincts {
		for _, c := range p.Contests {
			k := cellKey{p.ID, c}
			cl, ok := t.cellAt(pi, c)
			if !ok {
				continue
			}
			cs := CellState{Precinct: p.ID, Contest: c, Cell: *cl.public(t.candIndex(c))}
			if corr := t.corrections[k]; corr != nil {
				cc := *corr
				cs.Correction = &cc
			}
			s.Cells = append(s.Cells, cs)
		}
	}
	return s
}

// sums returns t's state without its cells.
func (t *Totals) sums() *TotalsState {
	s := &TotalsState{
		Election: t.e.ID, Events: t.events,
		LastSeq: make(map[RegionID]uint64, len(t.lastSeq)),
	}
	for r, seq := range t.lastSeq {
		s.LastSeq[r] = seq
	}
	for _, con := range t.e.Contests {
		ct := t.contests[con.ID]
		if ct == nil {
			continue
		}
		cs := ContestTallyState{
			Contest: con.ID, Votes: copyVotes(ct.Votes), VoteTypes: copyVoteTypes(ct.VoteTypes),
			BallotsCast: ct.BallotsCast, Reporting: ct.Reporting, Complete: ct.Complete,
			Corrections: ct.Corrections, Updated: ct.Updated, Regions: []RegionTallyState{},
		}
		for _, reg := range t.e.Regions {
			rt := ct.Regions[reg.ID]
			if rt == nil {
				continue
			}
			cs.Regions = append(cs.Regions, RegionTallyState{
				Region: reg.ID, Votes: copyVotes(rt.Votes), BallotsCast: rt.BallotsCast,
				Reporting: rt.Reporting, Complete: rt.Complete, Updated: rt.Updated,
			})
		}
		s.Contests = append(s.Contests, cs)
	}
	return s
}

// RestoreTotals returns the totals of election e held in s, as State took
// them. It checks that s is of e (same id, known regions, precincts and
// contests, each precinct reporting only contests on its ballot) and that
// its sums are those of its cells, so that a damaged or foreign snapshot is
// refused rather than counted. Errors have code EINVALID and say what is
// wrong.
func RestoreTotals(e *Election, s *TotalsState) (*Totals, error) {
	if s == nil {
		return nil, Errorf(EINVALID, "totals state: missing")
	}
	rs, err := newTotalsRestorer(e, s.Election, s.Events, s.LastSeq)
	if err != nil {
		return nil, err
	}
	for i := range s.Cells {
		if err := rs.cell(&s.Cells[i]); err != nil {
			return nil, err
		}
	}
	return rs.finish(s.Contests)
}

// restoreSums are a contest's sums as its cells make them, to check the
// stored ones against.
type restoreSums struct {
	votes               map[CandidateID]int64
	voteTypes           map[VoteType]map[CandidateID]int64
	ballots             int64
	reporting, complete int
	corrections         int
}

func (s *restoreSums) add(cell *Cell) {
	for cand, n := range cell.Votes {
		s.votes[cand] += n
	}
	for vt, byCand := range cell.VoteTypes {
		if s.voteTypes == nil {
			s.voteTypes = map[VoteType]map[CandidateID]int64{}
		}
		if s.voteTypes[vt] == nil {
			s.voteTypes[vt] = map[CandidateID]int64{}
		}
		for cand, n := range byCand {
			s.voteTypes[vt][cand] += n
		}
	}
	s.ballots += cell.BallotsCast
	s.reporting++
	if cell.Complete {
		s.complete++
	}
	s.corrections += cell.Corrections
}

// totalsRestorer rebuilds a Totals from a TotalsState given in parts: its
// head (election, events, last sequences), then its cells one at a time,
// then its sums, which it checks against the cells'. RestoreTotals gives it
// a state held whole; ReadTotals one read as it goes.
type totalsRestorer struct {
	e          *Election
	t          *Totals
	lastSeq    map[RegionID]uint64
	want       map[ContestID]*restoreSums
	wantRegion map[ContestID]map[RegionID]*restoreSums
}

func newTotalsRestorer(e *Election, election string, events uint64, lastSeq map[RegionID]uint64) (*totalsRestorer, error) {
	if election != e.ID {
		return nil, Errorf(EINVALID, "totals state: of election %q, not %q", election, e.ID)
	}
	t := NewTotals(e)
	t.events = events
	for r, seq := range lastSeq {
		if e.Region(r) == nil {
			return nil, Errorf(EINVALID, "totals state: last_seq: unknown region %q", r)
		}
		t.lastSeq[r] = seq
	}
	return &totalsRestorer{e: e, t: t, lastSeq: lastSeq,
		want: map[ContestID]*restoreSums{}, wantRegion: map[ContestID]map[RegionID]*restoreSums{}}, nil
}

// cell restores one cell. On an error, the Totals is to be dropped whole.
func (rs *totalsRestorer) cell(cs *CellState) error {
	e, t := rs.e, rs.t
	p := e.Precinct(cs.Precinct)
	if p == nil || !slices.Contains(p.Contests, cs.Contest) {
		return Errorf(EINVALID, "totals state: cell %s/%s: not a precinct and contest of the election", cs.Precinct, cs.Contest)
	}
	k := cellKey{cs.Precinct, cs.Contest}
	ref, cl, had := t.cellFor(cs.Precinct, cs.Contest)
	if had {
		return Errorf(EINVALID, "totals state: cell %s/%s: listed twice", cs.Precinct, cs.Contest)
	}
	if cs.Cell.Seq > rs.lastSeq[p.Region] {
		return Errorf(EINVALID, "totals state: cell %s/%s: seq %d is past region %s's last seq %d",
			cs.Precinct, cs.Contest, cs.Cell.Seq, p.Region, rs.lastSeq[p.Region])
	}
	c := cs.Cell
	cl.seq, cl.voteTypes, cl.ballotsCast, cl.complete = c.Seq, c.VoteTypes, c.BallotsCast, c.Complete
	setID(&cl, c.ID)
	cl.setReportedAt(c.ReportedAt)
	cl.reports, cl.corrections = int32(c.Reports), int32(c.Corrections)
	cl.set(t.candIndex(cs.Contest), c.Votes)
	t.putCell(ref, &cl)
	if cs.Correction != nil {
		t.noteCorrection(k, cs.Correction)
	}
	if rs.want[cs.Contest] == nil {
		rs.want[cs.Contest] = &restoreSums{votes: map[CandidateID]int64{}}
		rs.wantRegion[cs.Contest] = map[RegionID]*restoreSums{}
	}
	rs.want[cs.Contest].add(&c)
	if rs.wantRegion[cs.Contest][p.Region] == nil {
		rs.wantRegion[cs.Contest][p.Region] = &restoreSums{votes: map[CandidateID]int64{}}
	}
	rs.wantRegion[cs.Contest][p.Region].add(&c)
	return nil
}

// finish checks the stored sums against the cells' and returns the Totals.
func (rs *totalsRestorer) finish(contests []ContestTallyState) (*Totals, error) {
	e, t, want, wantRegion := rs.e, rs.t, rs.want, rs.wantRegion
	check := func(what string, w *restoreSums, votes map[CandidateID]int64, ballots int64, reporting, complete int) error {
		if w == nil {
			w = &restoreSums{}
		}
		switch {
		case reporting != w.reporting:
			return Errorf(EINVALID, "totals state: %s: reporting %d, its cells make %d", what, reporting, w.reporting)
		case complete != w.complete:
			return Errorf(EINVALID, "totals state: %s: complete %d, its cells make %d", what, complete, w.complete)
		case ballots != w.ballots:
			return Errorf(EINVALID, "totals state: %s: ballots cast %d, its cells make %d", what, ballots, w.ballots)
		}
		for cand, n := range votes {
			if n != w.votes[cand] {
				return Errorf(EINVALID, "totals state: %s: candidate %s has %d votes, its cells make %d", what, cand, n, w.votes[cand])
			}
		}
		for cand, n := range w.votes {
			if n != votes[cand] {
				return Errorf(EINVALID, "totals state: %s: candidate %s has %d votes, its cells make %d", what, cand, votes[cand], n)
			}
		}
		return nil
	}
	for _, cs := range contests {
		if e.Contest(cs.Contest) == nil {
			return nil, Errorf(EINVALID, "totals state: contest %q: not in the election", cs.Contest)
		}
		if t.contests[cs.Contest] != nil {
			return nil, Errorf(EINVALID, "totals state: contest %s: listed twice", cs.Contest)
		}
		if err := check("contest "+string(cs.Contest), want[cs.Contest], cs.Votes, cs.BallotsCast, cs.Reporting, cs.Complete); err != nil {
			return nil, err
		}
		w := want[cs.Contest]
		if w == nil {
			w = &restoreSums{}
		}
		if cs.Corrections != w.corrections {
			return nil, Errorf(EINVALID, "totals state: contest %s: corrections %d, its cells make %d", cs.Contest, cs.Corrections, w.corrections)
		}
		if err := checkVoteTypes(cs.Contest, w.voteTypes, cs.VoteTypes); err != nil {
			return nil, err
		}
		ct := &ContestTally{
			Votes: copyVotes(cs.Votes), VoteTypes: copyVoteTypes(cs.VoteTypes), BallotsCast: cs.BallotsCast,
			Reporting: cs.Reporting, Complete: cs.Complete, Corrections: cs.Corrections, Updated: cs.Updated,
			Regions: map[RegionID]*RegionTally{},
		}
		for _, rs := range cs.Regions {
			if e.Region(rs.Region) == nil || ct.Regions[rs.Region] != nil {
				return nil, Errorf(EINVALID, "totals state: contest %s: region %q unknown or listed twice", cs.Contest, rs.Region)
			}
			if err := check("contest "+string(cs.Contest)+" region "+string(rs.Region), wantRegion[cs.Contest][rs.Region],
				rs.Votes, rs.BallotsCast, rs.Reporting, rs.Complete); err != nil {
				return nil, err
			}
			ct.Regions[rs.Region] = &RegionTally{
				Votes: copyVotes(rs.Votes), BallotsCast: rs.BallotsCast,
				Reporting: rs.Reporting, Complete: rs.Complete, Updated: rs.Updated,
			}
		}
		if ct.Votes == nil {
			ct.Votes = map[CandidateID]int64{}
		}
		t.contests[cs.Contest] = ct
	}
	for c, w := range want {
		if t.contests[c] == nil {
			return nil, Errorf(EINVALID, "totals state: contest %s: has %d cells but no sums", c, w.reporting)
		}
		for r, rw := range wantRegion[c] {
			if t.contests[c].Regions[r] == nil {
				return nil, Errorf(EINVALID, "totals state: contest %s: region %s has %d cells but no sums", c, r, rw.reporting)
			}
		}
	}
	return t, nil
}

// checkVoteTypes checks a contest's sums by vote type against its cells'
// (w). A vote type of a cell must be in the sums, since Apply subtracts from
// it in place; the sums may hold zeros the cells no longer have.
func checkVoteTypes(c ContestID, w, got map[VoteType]map[CandidateID]int64) error {
	for vt, byCand := range w {
		if got[vt] == nil {
			return Errorf(EINVALID, "totals state: contest %s: vote type %s missing from the sums", c, vt)
		}
		for cand, n := range byCand {
			if got[vt][cand] != n {
				return Errorf(EINVALID, "totals state: contest %s: %s votes of %s: %d, its cells make %d", c, vt, cand, got[vt][cand], n)
			}
		}
	}
	for vt, byCand := range got {
		for cand, n := range byCand {
			if n != w[vt][cand] {
				return Errorf(EINVALID, "totals state: contest %s: %s votes of %s: %d, its cells make %d", c, vt, cand, n, w[vt][cand])
			}
		}
	}
	return nil
}

func copyVotes(m map[CandidateID]int64) map[CandidateID]int64 {
	out := make(map[CandidateID]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ReadTotals restores the totals of election e from the JSON of a
// TotalsState read from dec, as RestoreTotals does from one decoded whole,
// but a cell at a time: a national night's state is a gigabyte of JSON and
// several times that decoded, while this holds one cell beside the Totals
// it builds. It reads one object and leaves dec after it. The object's
// fields are those TotalsState names, each at most once, exactly as
// tagged, with election, events and last_seq before the cells (the order
// WriteJSON and encoding/json write them in); anything else is refused.
// What it accepts, json.Unmarshal and RestoreTotals accept too, with the
// same result. Errors have code EINVALID and say what is wrong.
func ReadTotals(e *Election, dec *json.Decoder) (*Totals, error) {
	const what = "totals state"
	var (
		head        TotalsState
		sawElection bool
		rs          *totalsRestorer
		contests    []ContestTallyState
	)
	err := DecodeFields(dec, what, func(key string) error {
		switch key {
		case "election", "events", "last_seq":
			if rs != nil {
				return Errorf(EINVALID, "%s: field %q after the cells", what, key)
			}
			sawElection = sawElection || key == "election"
			v := map[string]any{"election": &head.Election, "events": &head.Events, "last_seq": &head.LastSeq}[key]
			return decodeField(dec, what, key, v)
		case "cells":
			if !sawElection {
				return Errorf(EINVALID, "%s: cells before the election field", what)
			}
			var err error
			if rs, err = newTotalsRestorer(e, head.Election, head.Events, head.LastSeq); err != nil {
				return err
			}
			return readArray(dec, what+": cells", func() error {
				var cs CellState
				if err := decodeField(dec, what, "cells", &cs); err != nil {
					return err
				}
				return rs.cell(&cs)
			})
		case "contests":
			return decodeField(dec, what, key, &contests)
		}
		return Errorf(EINVALID, "%s: unknown field %q", what, key)
	})
	if err != nil {
		return nil, err
	}
	if rs == nil {
		if rs, err = newTotalsRestorer(e, head.Election, head.Events, head.LastSeq); err != nil {
			return nil, err
		}
	}
	return rs.finish(contests)
}
