package tally

import (
	"sort"
	"time"
)

// Region statuses, as seen from the hub.
const (
	StatusLive    = "live"    // connected and caught up
	StatusLagging = "lagging" // connected, but the mirror is behind the region
	StatusOffline = "offline" // the link is down or the mirror has not heard from the region
)

// RegionStatus is the hub's view of one region: its link, its mirror and how
// much of it has been applied. The reconciler publishes the list under
// KeyRegions in NationalBucket.
type RegionStatus struct {
	ID     RegionID `json:"id"`
	Name   string   `json:"name"`
	Status string   `json:"status"` // StatusLive, StatusLagging or StatusOffline
	// Since is when the region entered its current status.
	Since time.Time `json:"since"`
	// Lag is how many events the mirror is behind the region, when known.
	Lag uint64 `json:"lag"`
	// LastSeq is the last region stream sequence in the mirror; Applied the
	// last one applied to the national totals.
	LastSeq uint64 `json:"last_seq"`
	Applied uint64 `json:"applied"`
	// LastActive is when the mirror last heard from the region.
	LastActive time.Time `json:"last_active,omitzero"`
	// Leaf reports whether the region's leaf-node link is connected.
	Leaf bool `json:"leaf"`
	// LastUpdate is when the region's latest applied report was made.
	LastUpdate time.Time `json:"last_update,omitzero"`
	// Checkpoint is the region's latest checkpoint compared by the hub.
	Checkpoint *CheckpointEvent `json:"checkpoint,omitempty"`
	// Reconciled reports that the latest checkpoint matched and covers
	// every event applied from the region: the hub provably holds what the
	// region accepted, up to Applied.
	Reconciled bool `json:"reconciled"`
	// Alert is the first checkpoint mismatch seen, if any: the hub's
	// totals of this region cannot be trusted from its sequence on.
	Alert *CheckpointEvent `json:"alert,omitempty"`
}

// PrecinctCount counts a contest's precincts.
type PrecinctCount struct {
	Total     int `json:"total"`
	Reporting int `json:"reporting"`
	Complete  int `json:"complete"`
}

// CandidateResult is one candidate's line in a ContestResult.
type CandidateResult struct {
	ID    CandidateID `json:"id"`
	Name  string      `json:"name"`
	Party string      `json:"party,omitempty"`
	Votes int64       `json:"votes"`
	Share float64     `json:"share"` // of all candidate votes, 0..1
}

// RegionResult is one region's part of a contest, with the region's status:
// while a region is not live, its votes are its last-known totals.
type RegionResult struct {
	ID         RegionID              `json:"id"`
	Name       string                `json:"name"`
	Status     string                `json:"status"`
	Since      time.Time             `json:"since,omitzero"`
	LastUpdate time.Time             `json:"last_update,omitzero"`
	Votes      map[CandidateID]int64 `json:"votes"`
	Precincts  PrecinctCount         `json:"precincts"`
	// Reconciled: the region's latest checkpoint matched and covers every
	// results message of the region in this contest, and the region is
	// live (RegionStatus.Reconciled asks the same of all its contests).
	// ContestResult copies it from the statuses it is given; the
	// reconciler gives each contest's own.
	Reconciled bool `json:"reconciled"`
}

// ContestResult is what viewers see of a contest: candidates sorted by votes,
// precincts reporting, the regions and whether the totals are partial (a
// region of the contest is not live). The reconciler publishes one per
// contest, and one per office for the national view (Scope "national").
type ContestResult struct {
	ID          ContestID                          `json:"id"`
	Name        string                             `json:"name"`
	Office      string                             `json:"office"`
	State       string                             `json:"state,omitempty"`
	Scope       string                             `json:"scope"` // "state" or "national"
	Seats       int                                `json:"seats"`
	Components  []ContestID                        `json:"components,omitempty"` // national: the summed contests
	Candidates  []CandidateResult                  `json:"candidates"`
	TotalVotes  int64                              `json:"total_votes"`
	BallotsCast int64                              `json:"ballots_cast,omitempty"`
	VoteTypes   map[VoteType]map[CandidateID]int64 `json:"vote_types,omitempty"`
	Precincts   PrecinctCount                      `json:"precincts"`
	Corrections int                                `json:"corrections"`
	Regions     []RegionResult                     `json:"regions"`
	Partial     bool                               `json:"partial"`
	// Complete: every precinct in scope has a complete report. Reconciled:
	// complete, and every region of the contest is Reconciled.
	Complete   bool      `json:"complete"`
	Reconciled bool      `json:"reconciled"`
	LastUpdate time.Time `json:"last_update,omitzero"`
}

// ContestResult builds the result of contest c from t, with each region's
// status taken from statuses (a region missing there counts as live).
func (t *Totals) ContestResult(c ContestID, statuses map[RegionID]RegionStatus) ContestResult {
	con := t.e.Contest(c)
	res := ContestResult{
		ID: c, Name: con.Name, Office: con.Office, State: con.State, Scope: "state",
		Seats: con.Seats, Regions: []RegionResult{},
	}
	ct := t.contests[c]
	if ct == nil {
		ct = &ContestTally{}
	}
	res.Candidates = candidateResults(con.Candidates, ct.Votes)
	for _, cr := range res.Candidates {
		res.TotalVotes += cr.Votes
	}
	res.BallotsCast = ct.BallotsCast
	res.VoteTypes = copyVoteTypes(ct.VoteTypes)
	res.Precincts = PrecinctCount{Total: len(t.e.ContestPrecincts(c)), Reporting: ct.Reporting, Complete: ct.Complete}
	res.Corrections = ct.Corrections
	res.LastUpdate = ct.Updated
	res.Complete = res.Precincts.Total > 0 && res.Precincts.Complete == res.Precincts.Total
	res.Reconciled = res.Complete
	for _, rid := range t.e.ContestRegions(c) {
		rr := RegionResult{ID: rid, Name: t.e.Region(rid).Name, Status: StatusLive, Votes: map[CandidateID]int64{}}
		if st, ok := statuses[rid]; ok {
			rr.Status, rr.Since = st.Status, st.Since
			rr.Reconciled = st.Reconciled
		}
		if !rr.Reconciled {
			res.Reconciled = false
		}
		rr.Precincts.Total = t.e.ContestRegionPrecincts(c, rid)
		if rt := ct.Regions[rid]; rt != nil {
			for cand, n := range rt.Votes {
				rr.Votes[cand] = n
			}
			rr.Precincts.Reporting, rr.Precincts.Complete = rt.Reporting, rt.Complete
			rr.LastUpdate = rt.Updated
		}
		if rr.Status != StatusLive {
			res.Partial = true
		}
		res.Regions = append(res.Regions, rr)
	}
	return res
}

// NationalResult sums the results of every contest of an office into the
// national view. parts are the contests' results, as built by ContestResult.
func NationalResult(office string, parts []ContestResult) ContestResult {
	res := ContestResult{
		ID: NationalContestID(office), Name: office + " (all states)", Office: office,
		Scope: "national", Seats: 1, Regions: []RegionResult{},
	}
	votes := map[CandidateID]int64{}
	var cands []Candidate
	seen := map[CandidateID]bool{}
	for _, p := range parts {
		res.Components = append(res.Components, p.ID)
		for _, cr := range p.Candidates {
			votes[cr.ID] += cr.Votes
			if !seen[cr.ID] {
				seen[cr.ID] = true
				cands = append(cands, Candidate{ID: cr.ID, Name: cr.Name, Party: cr.Party})
			}
		}
		res.BallotsCast += p.BallotsCast
		res.Precincts.Total += p.Precincts.Total
		res.Precincts.Reporting += p.Precincts.Reporting
		res.Precincts.Complete += p.Precincts.Complete
		res.Corrections += p.Corrections
		res.Regions = append(res.Regions, p.Regions...)
		res.Partial = res.Partial || p.Partial
		if p.LastUpdate.After(res.LastUpdate) {
			res.LastUpdate = p.LastUpdate
		}
	}
	res.Complete = len(parts) > 0
	res.Reconciled = len(parts) > 0
	for _, p := range parts {
		res.Complete = res.Complete && p.Complete
		res.Reconciled = res.Reconciled && p.Reconciled
	}
	res.Candidates = candidateResults(cands, votes)
	for _, cr := range res.Candidates {
		res.TotalVotes += cr.Votes
	}
	return res
}

func candidateResults(cands []Candidate, votes map[CandidateID]int64) []CandidateResult {
	out := make([]CandidateResult, 0, len(cands))
	var total int64
	for _, c := range cands {
		total += votes[c.ID]
	}
	for _, c := range cands {
		cr := CandidateResult{ID: c.ID, Name: c.Name, Party: c.Party, Votes: votes[c.ID]}
		if total > 0 {
			cr.Share = float64(cr.Votes) / float64(total)
		}
		out = append(out, cr)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Votes > out[j].Votes })
	return out
}

func copyVoteTypes(m map[VoteType]map[CandidateID]int64) map[VoteType]map[CandidateID]int64 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[VoteType]map[CandidateID]int64, len(m))
	for vt, byCand := range m {
		c := make(map[CandidateID]int64, len(byCand))
		for k, v := range byCand {
			c[k] = v
		}
		out[vt] = c
	}
	return out
}
