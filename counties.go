package tally

import (
	"sort"
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
	// results, one key per region of the contest so that a value stays
	// small and a batch rewrites only its region's (PrecinctResults):
	// precincts.<contest>.<region>.
	KeyPrecinctsPrefix = "precincts."
)

// CountiesKey is the national bucket key of contest c's results by county.
func CountiesKey(c ContestID) string { return KeyCountiesPrefix + string(c) }

// PrecinctsKey is the national bucket key of contest c's precinct results in
// region r.
func PrecinctsKey(c ContestID, r RegionID) string {
	return KeyPrecinctsPrefix + string(c) + "." + string(r)
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

// PrecinctResults is one region's reported precincts in a contest, in
// election order; precincts that have not reported are left out.
type PrecinctResults struct {
	Contest   ContestID        `json:"contest"`
	Region    RegionID         `json:"region"`
	Precincts []PrecinctResult `json:"precincts"`
}

// CountyResults returns contest c's results by county. Every county with a
// precinct in the contest is listed, reported or not.
func (t *Totals) CountyResults(c ContestID) CountyResults {
	out := CountyResults{Contest: c, Counties: []CountyResult{}}
	byName := map[string]*CountyResult{}
	var names []string
	for _, pid := range t.e.ContestPrecincts(c) {
		p := t.e.Precinct(pid)
		cr := byName[p.County]
		if cr == nil {
			cr = &CountyResult{County: p.County, Votes: map[CandidateID]int64{}, Regions: []RegionID{}}
			if con := t.e.Contest(c); con != nil {
				for _, cand := range con.Candidates {
					cr.Votes[cand.ID] = 0
				}
			}
			byName[p.County] = cr
			names = append(names, p.County)
		}
		if len(cr.Regions) == 0 || cr.Regions[len(cr.Regions)-1] != p.Region {
			seen := false
			for _, r := range cr.Regions {
				seen = seen || r == p.Region
			}
			if !seen {
				cr.Regions = append(cr.Regions, p.Region)
			}
		}
		cr.Precincts.Total++
		cell := t.cells[cellKey{pid, c}]
		if cell == nil {
			continue
		}
		cr.Precincts.Reporting++
		if cell.Complete {
			cr.Precincts.Complete++
		}
		for cand, n := range cell.Votes {
			cr.Votes[cand] += n
			cr.TotalVotes += n
		}
		cr.BallotsCast += cell.BallotsCast
		cr.Corrections += cell.Corrections
		if cell.ReportedAt.After(cr.LastUpdate) {
			cr.LastUpdate = cell.ReportedAt
		}
	}
	sort.Strings(names)
	for _, n := range names {
		out.Counties = append(out.Counties, *byName[n])
	}
	return out
}

// PrecinctResults returns the reported precincts of region r in contest c.
func (t *Totals) PrecinctResults(c ContestID, r RegionID) PrecinctResults {
	out := PrecinctResults{Contest: c, Region: r, Precincts: []PrecinctResult{}}
	for _, pid := range t.e.ContestPrecincts(c) {
		if t.e.Precinct(pid).Region != r {
			continue
		}
		cell := t.cells[cellKey{pid, c}]
		if cell == nil {
			continue
		}
		out.Precincts = append(out.Precincts, PrecinctResult{
			ID: pid, Votes: cell.Votes, Complete: cell.Complete, Seq: cell.Seq, Report: cell.ID,
			ReportedAt: cell.ReportedAt, Reports: cell.Reports, Corrections: cell.Corrections,
			Correction: t.corrections[cellKey{pid, c}],
		})
	}
	return out
}

// noteCorrection remembers c as the latest correction of cell k.
func (t *Totals) noteCorrection(k cellKey, c *Correction) {
	if t.corrections == nil {
		t.corrections = map[cellKey]*Correction{}
	}
	cc := *c
	t.corrections[k] = &cc
}
