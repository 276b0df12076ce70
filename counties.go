package tally

import (
	"sort"
	"strconv"
	"strings"
	"time"
)

// Keys of the national bucket (NationalBucket) for the results below the
// contest: by county, and by precinct. The reconciler writes them with the
// contest results, only when they change.
const (
	// KeyCountiesPrefix prefixes the key of each contest's results by
	// county (CountyResults): counties.<contest>.
	KeyCountiesPrefix = "counties."
	// KeyPrecinctsPrefix prefixes the keys of each contest's precinct
	// results, split into shards so that a value stays small and a report
	// rewrites only its shard (PrecinctResults):
	// precincts.<contest>.<region>.<shard>. A shard holds the precincts of
	// one region whose index in the election's precinct list, divided by
	// PrecinctShardSize, is the shard number.
	KeyPrecinctsPrefix = "precincts."
)

// CountiesKey is the national bucket key of contest c's results by county.
func CountiesKey(c ContestID) string { return KeyCountiesPrefix + string(c) }

// PrecinctShardSize is how many consecutive precincts of the election's list
// share a shard of precinct results.
const PrecinctShardSize = 128

// PrecinctShard returns the shard of precinct p (see KeyPrecinctsPrefix), or
// -1 for a precinct not in the election.
func (e *Election) PrecinctShard(p PrecinctID) int {
	i := e.PrecinctIndex(p)
	if i < 0 {
		return -1
	}
	return i / PrecinctShardSize
}

// Shard names one shard of a contest's precinct results: the precincts of
// Region in shard N.
type Shard struct {
	Region RegionID
	N      int
}

// ContestShards returns every shard of contest c's precinct results: in
// precinct order, a shard per region and run of PrecinctShardSize precincts
// that holds at least one of the contest's precincts.
func (e *Election) ContestShards(c ContestID) []Shard {
	var out []Shard
	seen := map[Shard]bool{}
	for _, p := range e.ContestPrecincts(c) {
		s := Shard{e.Precinct(p).Region, e.PrecinctShard(p)}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// PrecinctsKey is the national bucket key of contest c's precinct results in
// shard s.
func PrecinctsKey(c ContestID, s Shard) string {
	return KeyPrecinctsPrefix + string(c) + "." + string(s.Region) + "." + strconv.Itoa(s.N)
}

// ParsePrecinctsKey returns the contest and shard a PrecinctsKey names.
func ParsePrecinctsKey(key string) (ContestID, Shard, bool) {
	rest, ok := strings.CutPrefix(key, KeyPrecinctsPrefix)
	if !ok {
		return "", Shard{}, false
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return "", Shard{}, false
	}
	n, err := strconv.Atoi(rest[i+1:])
	if err != nil || n < 0 {
		return "", Shard{}, false
	}
	rest = rest[:i]
	j := strings.LastIndexByte(rest, '.')
	if j <= 0 || j == len(rest)-1 {
		return "", Shard{}, false
	}
	return ContestID(rest[:j]), Shard{RegionID(rest[j+1:]), n}, true
}

// CountyResult is one county's part of a contest: the sum of the latest
// reports of its precincts.
type CountyResult struct {
	County      string                `json:"county"` // as the election names it
	Votes       map[CandidateID]int64 `json:"votes"`
	TotalVotes  int64                 `json:"total_votes"`
	BallotsCast int64                 `json:"ballots_cast,omitempty"`
	Precincts   PrecinctCount         `json:"precincts"`
	Corrections int                   `json:"corrections"`
	Regions     []RegionID            `json:"regions"` // the regions holding its precincts
	LastUpdate  time.Time             `json:"last_update,omitzero"`
}

// CountyResults is a contest's results by county, counties sorted by name.
type CountyResults struct {
	Contest  ContestID      `json:"contest"`
	Counties []CountyResult `json:"counties"`
}

// PrecinctResult is the latest counted report of one precinct in a contest.
type PrecinctResult struct {
	ID          PrecinctID            `json:"id"`
	Votes       map[CandidateID]int64 `json:"votes"`
	Complete    bool                  `json:"complete"`
	Seq         uint64                `json:"seq"` // in the region's stream
	Report      EventID               `json:"report"`
	ReportedAt  time.Time             `json:"reported_at"`
	Reports     int                   `json:"reports"`     // corrections included
	Corrections int                   `json:"corrections"` // corrections applied
	// Correction is the latest correction applied, if any.
	Correction *Correction `json:"correction,omitempty"`
}

// PrecinctResults is the reported precincts of one shard of a contest (see
// KeyPrecinctsPrefix), in election order; precincts that have not reported
// are left out.
type PrecinctResults struct {
	Contest   ContestID        `json:"contest"`
	Region    RegionID         `json:"region"`
	Shard     int              `json:"shard"`
	Precincts []PrecinctResult `json:"precincts"`
}

// CountyResults returns contest c's results by county. Every county with a
// precinct in the contest is listed, reported or not. The sums are kept up
// to date by Apply (see countyIndex), so this costs a copy per county, not a
// pass over the contest's precincts.
func (t *Totals) CountyResults(c ContestID) CountyResults {
	ci := t.countyIndex(c)
	out := CountyResults{Contest: c, Counties: make([]CountyResult, 0, len(ci.counties))}
	for _, ca := range ci.counties {
		if ca.stale {
			t.recount(c, ca)
		}
		cr := ca.res
		cr.Votes = make(map[CandidateID]int64, len(ca.res.Votes))
		for cand, n := range ca.res.Votes {
			cr.Votes[cand] = n
		}
		cr.Regions = append([]RegionID{}, ca.res.Regions...)
		out.Counties = append(out.Counties, cr)
	}
	return out
}

// countyIndex is a contest's counties: their precincts, from the election,
// and their sums, kept up to date by Apply once the index exists. A Totals
// builds it for a contest the first time CountyResults asks.
type countyIndex struct {
	counties []*countyAgg   // sorted by name
	byName   map[string]int // county name -> index in counties
}

// countyAgg is one county of a countyIndex.
type countyAgg struct {
	precincts []int32      // indexes in Election.Precincts, in the contest's order
	res       CountyResult // the sums; Votes and Regions are not shared outside
	// stale: res must be recounted from the cells before it is read (a
	// change Apply cannot follow by addition: the latest report time going
	// back, or a candidate outside the contest).
	stale bool
}

func (t *Totals) countyIndex(c ContestID) *countyIndex {
	if ci := t.countyIdx[c]; ci != nil {
		return ci
	}
	ci := &countyIndex{byName: map[string]int{}}
	byName := map[string]*countyAgg{}
	var names []string
	for _, pid := range t.e.ContestPrecincts(c) {
		p := t.e.Precinct(pid)
		ca := byName[p.County]
		if ca == nil {
			ca = &countyAgg{res: CountyResult{County: p.County, Regions: []RegionID{}}}
			byName[p.County] = ca
			names = append(names, p.County)
		}
		if len(ca.res.Regions) == 0 || ca.res.Regions[len(ca.res.Regions)-1] != p.Region {
			seen := false
			for _, r := range ca.res.Regions {
				seen = seen || r == p.Region
			}
			if !seen {
				ca.res.Regions = append(ca.res.Regions, p.Region)
			}
		}
		ca.precincts = append(ca.precincts, int32(t.e.PrecinctIndex(pid)))
	}
	sort.Strings(names)
	for i, n := range names {
		ca := byName[n]
		ci.counties = append(ci.counties, ca)
		ci.byName[n] = i
		t.recount(c, ca)
	}
	if t.countyIdx == nil {
		t.countyIdx = map[ContestID]*countyIndex{}
	}
	t.countyIdx[c] = ci
	return ci
}

// recount sums county ca of contest c from its precincts' cells.
func (t *Totals) recount(c ContestID, ca *countyAgg) {
	cr := &ca.res
	cr.Votes = map[CandidateID]int64{}
	if con := t.e.Contest(c); con != nil {
		for _, cand := range con.Candidates {
			cr.Votes[cand.ID] = 0
		}
	}
	cr.TotalVotes, cr.BallotsCast, cr.Corrections = 0, 0, 0
	cr.Precincts = PrecinctCount{Total: len(ca.precincts)}
	cr.LastUpdate = time.Time{}
	ci := t.candIndex(c)
	for _, pi := range ca.precincts {
		cl, ok := t.cellAt(int(pi), c)
		if !ok {
			continue
		}
		cr.Precincts.Reporting++
		if cl.complete {
			cr.Precincts.Complete++
		}
		cl.each(ci, func(cand CandidateID, n int64) {
			cr.Votes[cand] += n
			cr.TotalVotes += n
		})
		cr.BallotsCast += cl.ballotsCast
		cr.Corrections += int(cl.corrections)
		if at := cl.reportedAt(); at.After(cr.LastUpdate) {
			cr.LastUpdate = at
		}
	}
	ca.stale = false
}

// countyOf returns the county of precinct p in contest c's index, or nil
// when the contest has none (CountyResults has not asked yet).
func (t *Totals) countyOf(c ContestID, p PrecinctID) *countyAgg {
	ci := t.countyIdx[c]
	if ci == nil {
		return nil
	}
	pp := t.e.Precinct(p)
	if pp == nil {
		return nil // not reached: the report is valid
	}
	i, ok := ci.byName[pp.County]
	if !ok {
		return nil // not reached: the precinct is in the contest
	}
	return ci.counties[i]
}

// countySub takes a precinct's old cell out of its county's sums (ca, nil
// when the contest has no index), before Apply replaces it.
func (t *Totals) countySub(ca *countyAgg, ci *candIndex, old *cell) {
	if ca == nil || ca.stale {
		return
	}
	if len(old.other) > 0 {
		ca.stale = true // a candidate outside the contest: recount
		return
	}
	cr := &ca.res
	old.each(ci, func(cand CandidateID, n int64) {
		cr.Votes[cand] -= n
		cr.TotalVotes -= n
	})
	cr.BallotsCast -= old.ballotsCast
	cr.Corrections -= int(old.corrections)
	if old.complete {
		cr.Precincts.Complete--
	}
}

// countyAdd adds a precinct's new cell to its county's sums, after
// countySub took out the old one (had: there was one, reported at oldAt).
func (t *Totals) countyAdd(ca *countyAgg, ci *candIndex, cl *cell, had bool, oldAt time.Time) {
	if ca == nil || ca.stale {
		return
	}
	if len(cl.other) > 0 {
		ca.stale = true
		return
	}
	cr := &ca.res
	if !had {
		cr.Precincts.Reporting++
	}
	cl.each(ci, func(cand CandidateID, n int64) {
		cr.Votes[cand] += n
		cr.TotalVotes += n
	})
	cr.BallotsCast += cl.ballotsCast
	cr.Corrections += int(cl.corrections)
	if cl.complete {
		cr.Precincts.Complete++
	}
	// The latest report time is the first cell's, in the contest's order,
	// with the latest instant. It follows a later time; anything else (the
	// latest cell going back, an equal instant written otherwise) recounts.
	at := cl.reportedAt()
	switch {
	case had && !oldAt.Before(cr.LastUpdate) && !at.After(oldAt):
		ca.stale = true
	case at.After(cr.LastUpdate):
		cr.LastUpdate = at
	case at.Equal(cr.LastUpdate) && at != cr.LastUpdate:
		ca.stale = true
	}
}

// PrecinctResults returns the reported precincts of shard s of contest c.
func (t *Totals) PrecinctResults(c ContestID, s Shard) PrecinctResults {
	out := PrecinctResults{Contest: c, Region: s.Region, Shard: s.N, Precincts: []PrecinctResult{}}
	ci := t.candIndex(c)
	t.eachShardCell(c, s, func(p *Precinct, k cellKey, cl *cell) error {
		out.Precincts = append(out.Precincts, PrecinctResult{
			ID: p.ID, Votes: cl.votesMap(ci), Complete: cl.complete, Seq: cl.seq, Report: cl.eventID(),
			ReportedAt: cl.reportedAt(), Reports: int(cl.reports), Corrections: int(cl.corrections),
			Correction: t.corrections[k],
		})
		return nil
	})
	return out
}

// eachShardCell calls fn with every reported precinct of shard s of
// contest c, in election order, until fn fails.
func (t *Totals) eachShardCell(c ContestID, s Shard, fn func(p *Precinct, k cellKey, cl *cell) error) error {
	lo := s.N * PrecinctShardSize
	if s.N < 0 || lo >= len(t.e.Precincts) {
		return nil
	}
	for i := lo; i < min(lo+PrecinctShardSize, len(t.e.Precincts)); i++ {
		p := &t.e.Precincts[i]
		if p.Region != s.Region {
			continue
		}
		if cl, ok := t.cellAt(i, c); ok {
			if err := fn(p, cellKey{p.ID, c}, &cl); err != nil {
				return err
			}
		}
	}
	return nil
}

// noteCorrection remembers c as the latest correction of cell k.
func (t *Totals) noteCorrection(k cellKey, c *Correction) {
	if t.corrections == nil {
		t.corrections = map[cellKey]*Correction{}
	}
	cc := *c
	t.corrections[k] = &cc
}
