// Package projector estimates each contest's final result from partial
// results: a swing model over an earlier election's precinct results (the
// baseline), with intervals, and race calls drawn from it. Service runs it
// on the hub; Model is the pure computation that `tally eval` also drives.
package projector

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/tallyvote/tally"
)

// Baseline holds, for each contest that has one, the baseline election's
// votes of every precinct of the contest.
type Baseline struct {
	Year     int
	Contests map[tally.ContestID]*ContestBaseline
}

// ContestBaseline is one contest's baseline, precinct by precinct.
type ContestBaseline struct {
	Contest tally.ContestID
	Year    int
	// Precincts has an entry for every precinct of the contest.
	Precincts map[tally.PrecinctID]PrecinctBaseline
	// Matched names the baseline candidate each target candidate continues
	// (same id, or else the only candidate of the same party in both years);
	// a candidate without one has 0 baseline votes.
	Matched map[tally.CandidateID]tally.CandidateID
}

// PrecinctBaseline is one precinct's baseline votes.
type PrecinctBaseline struct {
	// Votes are keyed by the target contest's candidate ids.
	Votes map[tally.CandidateID]int64
	// Total counts every baseline vote, those of candidates with no
	// counterpart in the target contest included. It is the turnout base.
	Total int64
	// History is false for a precinct with no predecessor: Votes and Total
	// are then an estimate, the county's baseline votes that no target
	// precinct continues, shared equally among the county's precincts
	// without history (zero when there are none).
	History bool
}

// LoadBaseline builds the baselines of election e's contests from results
// rows of the baseline year (rows of other years are ignored) and crosswalk
// files: CSV with columns county, precinct_id_<target year>,
// precinct_id_<year>, method (an empty baseline id: no predecessor). The map
// key of crosswalks is the file name; a name starting "<st>_" (nh_...) ties
// the file to that state, otherwise each row applies to the state whose
// precinct it names. A target precinct without a crosswalk row continues the
// baseline precinct of the same county and id, if any. Contests without any
// baseline rows get no baseline. Errors have code EINVALID and name the file
// and line.
func LoadBaseline(e *tally.Election, rows []tally.ResultRow, year int, crosswalks map[string]io.Reader) (*Baseline, error) {
	type pkey struct{ state, county, id string }
	norm := func(s string) string { return strings.ToUpper(strings.TrimSpace(s)) }

	states := map[string]bool{}
	for _, p := range e.Precincts {
		states[norm(p.State)] = true
	}
	// Crosswalk: (state, county, target id) -> baseline id; state "" when
	// the file does not name one.
	xw := map[pkey]string{}
	names := make([]string, 0, len(crosswalks))
	for name := range crosswalks {
		names = append(names, name)
	}
	sort.Strings(names)
	targetYear := e.Date
	if len(targetYear) >= 4 {
		targetYear = targetYear[:4]
	}
	for _, name := range names {
		st := ""
		if pre, _, ok := strings.Cut(path.Base(name), "_"); ok && states[norm(pre)] {
			st = norm(pre)
		}
		if err := readCrosswalk(name, crosswalks[name], targetYear, year, func(county, id, prev string) {
			xw[pkey{st, norm(county), norm(id)}] = prev
		}); err != nil {
			return nil, err
		}
	}

	// Baseline votes per (state, county, id) and contest, by candidate slug.
	type cand struct {
		id    tally.CandidateID
		party string
	}
	votes := map[tally.ContestID]map[pkey]map[tally.CandidateID]int64{}
	bcands := map[tally.ContestID][]cand{}
	seenCand := map[tally.ContestID]map[tally.CandidateID]bool{}
	for _, r := range rows {
		if r.Year != year {
			continue
		}
		cid := tally.ContestID(tally.Slug(r.State) + "-" + tally.Slug(r.Office))
		if e.Contest(cid) == nil {
			continue
		}
		if votes[cid] == nil {
			votes[cid] = map[pkey]map[tally.CandidateID]int64{}
			seenCand[cid] = map[tally.CandidateID]bool{}
		}
		k := pkey{norm(r.State), norm(r.County), norm(r.PrecinctID)}
		if votes[cid][k] == nil {
			votes[cid][k] = map[tally.CandidateID]int64{}
		}
		c := tally.CandidateID(tally.Slug(r.Candidate))
		votes[cid][k][c] += r.Votes
		if !seenCand[cid][c] {
			seenCand[cid][c] = true
			bcands[cid] = append(bcands[cid], cand{c, norm(r.Party)})
		}
	}

	b := &Baseline{Year: year, Contests: map[tally.ContestID]*ContestBaseline{}}
	for ci := range e.Contests {
		c := &e.Contests[ci]
		bv := votes[c.ID]
		if len(bv) == 0 {
			continue
		}
		// Candidates: by id, then by a party held by one unmatched
		// candidate in each year.
		matched := map[tally.CandidateID]tally.CandidateID{}
		used := map[tally.CandidateID]bool{}
		for _, tc := range c.Candidates {
			if seenCand[c.ID][tc.ID] {
				matched[tc.ID] = tc.ID
				used[tc.ID] = true
			}
		}
		byParty := func(party string) (tally.CandidateID, int) {
			var id tally.CandidateID
			n := 0
			for _, bc := range bcands[c.ID] {
				if !used[bc.id] && bc.party == party {
					id, n = bc.id, n+1
				}
			}
			return id, n
		}
		for _, tc := range c.Candidates {
			party := norm(tc.Party)
			if _, ok := matched[tc.ID]; ok || party == "" || party == "OTH" {
				continue
			}
			others := 0
			for _, oc := range c.Candidates {
				if _, ok := matched[oc.ID]; !ok && norm(oc.Party) == party {
					others++
				}
			}
			if id, n := byParty(party); n == 1 && others == 1 {
				matched[tc.ID] = id
				used[id] = true
			}
		}
		toTarget := func(m map[tally.CandidateID]int64) PrecinctBaseline {
			pb := PrecinctBaseline{Votes: make(map[tally.CandidateID]int64, len(c.Candidates)), History: true}
			for _, n := range m {
				pb.Total += n
			}
			for _, tc := range c.Candidates {
				if bid, ok := matched[tc.ID]; ok {
					pb.Votes[tc.ID] = m[bid]
				} else {
					pb.Votes[tc.ID] = 0
				}
			}
			return pb
		}

		cb := &ContestBaseline{Contest: c.ID, Year: year, Precincts: map[tally.PrecinctID]PrecinctBaseline{}, Matched: matched}
		st := norm(c.State)
		pred := map[tally.PrecinctID]pkey{}
		successors := map[pkey]int{}
		for _, pid := range e.ContestPrecincts(c.ID) {
			p := e.Precinct(pid)
			pst := norm(p.State)
			if pst == "" {
				pst = st
			}
			county, id := norm(p.County), norm(p.SourceID)
			if id == "" {
				id = norm(p.Name)
			}
			prev, ok := xw[pkey{pst, county, id}]
			if !ok {
				prev, ok = xw[pkey{"", county, id}]
			}
			if !ok {
				prev = id // no crosswalk row: the same id, if it exists
			}
			k := pkey{pst, county, norm(prev)}
			if prev != "" && bv[k] != nil {
				pred[pid] = k
				successors[k]++
			}
		}
		// Baseline precincts no target precinct continues, per county.
		orphan := map[string]map[tally.CandidateID]int64{}
		for k, m := range bv {
			if successors[k] > 0 || k.state != st && st != "" {
				continue
			}
			if orphan[k.county] == nil {
				orphan[k.county] = map[tally.CandidateID]int64{}
			}
			for cand, n := range m {
				orphan[k.county][cand] += n
			}
		}
		noHist := map[string]int{}
		for _, pid := range e.ContestPrecincts(c.ID) {
			if _, ok := pred[pid]; !ok {
				noHist[norm(e.Precinct(pid).County)]++
			}
		}
		for _, pid := range e.ContestPrecincts(c.ID) {
			if k, ok := pred[pid]; ok {
				pb := toTarget(bv[k])
				if n := int64(successors[k]); n > 1 { // a split: share it
					pb.Total /= n
					for cand := range pb.Votes {
						pb.Votes[cand] /= n
					}
				}
				pb.History = pb.Total > 0
				cb.Precincts[pid] = pb
				continue
			}
			county := norm(e.Precinct(pid).County)
			pb := toTarget(orphan[county])
			pb.History = false
			n := int64(noHist[county])
			pb.Total /= n
			for cand := range pb.Votes {
				pb.Votes[cand] /= n
			}
			cb.Precincts[pid] = pb
		}
		b.Contests[c.ID] = cb
	}
	return b, nil
}

// readCrosswalk reads one crosswalk file, calling add for each row.
func readCrosswalk(name string, r io.Reader, targetYear string, year int, add func(county, id, prev string)) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return tally.Errorf(tally.EINVALID, "crosswalk %s: line 1: %v", name, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	ci, ok := col["county"]
	if !ok {
		return tally.Errorf(tally.EINVALID, "crosswalk %s: line 1: missing column \"county\"", name)
	}
	prevCol := fmt.Sprintf("precinct_id_%d", year)
	pi, ok := col[prevCol]
	if !ok {
		return tally.Errorf(tally.EINVALID, "crosswalk %s: line 1: missing column %q (the baseline year's precinct id)", name, prevCol)
	}
	ti, ok := col["precinct_id_"+targetYear]
	if !ok {
		// The target year's column: the other precinct_id_ column.
		ti = -1
		for h, i := range col {
			if strings.HasPrefix(h, "precinct_id_") && h != prevCol {
				if ti >= 0 {
					return tally.Errorf(tally.EINVALID, "crosswalk %s: line 1: no column precinct_id_%s and more than one other precinct id column", name, targetYear)
				}
				ti = i
			}
		}
		if ti < 0 {
			return tally.Errorf(tally.EINVALID, "crosswalk %s: line 1: missing the target year's precinct_id_<year> column", name)
		}
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return tally.Errorf(tally.EINVALID, "crosswalk %s: line %d: %v", name, line, err)
		}
		for _, i := range []int{ci, pi, ti} {
			if i >= len(rec) {
				return tally.Errorf(tally.EINVALID, "crosswalk %s: line %d: %d fields, want %d", name, line, len(rec), len(header))
			}
		}
		if strings.TrimSpace(rec[ci]) == "" || strings.TrimSpace(rec[ti]) == "" {
			return tally.Errorf(tally.EINVALID, "crosswalk %s: line %d: county and target precinct id required", name, line)
		}
		add(rec[ci], rec[ti], strings.TrimSpace(rec[pi]))
	}
}
