package tally

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ResultRow is one line of a results file in the normalized format:
// state,year,county,precinct_id,precinct_name,office,candidate,party,votes.
// votes counts every vote type together.
type ResultRow struct {
	State        string
	Year         int
	County       string
	PrecinctID   string
	PrecinctName string
	Office       string
	Candidate    string
	Party        string
	Votes        int64
}

// resultColumns are the columns a results file must have, in any order.
var resultColumns = []string{"state", "year", "county", "precinct_id", "precinct_name", "office", "candidate", "party", "votes"}

// ReadResults reads a results file in the normalized CSV format. Errors have
// code EINVALID and name the line and column.
func ReadResults(r io.Reader) ([]ResultRow, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, Errorf(EINVALID, "results: header: %v", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	for _, c := range resultColumns {
		if _, ok := col[c]; !ok {
			return nil, Errorf(EINVALID, "results: header: missing column %q (want %s)", c, strings.Join(resultColumns, ","))
		}
	}
	var rows []ResultRow
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, Errorf(EINVALID, "results: line %d: %v", line, err)
		}
		get := func(c string) string { return strings.TrimSpace(rec[col[c]]) }
		year, err := strconv.Atoi(get("year"))
		if err != nil {
			return nil, Errorf(EINVALID, "results: line %d: year: %q is not a year", line, get("year"))
		}
		votes, err := strconv.ParseInt(get("votes"), 10, 64)
		if err != nil || votes < 0 {
			return nil, Errorf(EINVALID, "results: line %d: votes: %q is not a non-negative integer", line, get("votes"))
		}
		row := ResultRow{
			State: strings.ToUpper(get("state")), Year: year, County: get("county"),
			PrecinctID: get("precinct_id"), PrecinctName: get("precinct_name"),
			Office: get("office"), Candidate: get("candidate"), Party: get("party"), Votes: votes,
		}
		for _, f := range []struct{ name, v string }{
			{"state", row.State}, {"county", row.County}, {"precinct_id", row.PrecinctID},
			{"office", row.Office}, {"candidate", row.Candidate},
		} {
			if f.v == "" {
				return nil, Errorf(EINVALID, "results: line %d: %s: required", line, f.name)
			}
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, Errorf(EINVALID, "results: no rows")
	}
	return rows, nil
}

// ResultYears returns the years present in rows, ascending.
func ResultYears(rows []ResultRow) []int {
	seen := map[int]bool{}
	var years []int
	for _, r := range rows {
		if !seen[r.Year] {
			seen[r.Year] = true
			years = append(years, r.Year)
		}
	}
	sort.Ints(years)
	return years
}

// Counts are final results per precinct, contest and candidate.
type Counts map[PrecinctID]map[ContestID]map[CandidateID]int64

// BuildOptions says how BuildElection turns a results file into an election.
type BuildOptions struct {
	// Year is the election year to build; 0 means the latest in the file.
	Year int
	// Regions is how many regions each state's counties are split into;
	// 0 means 2.
	Regions int
}

// BuildElection builds an election definition from results rows: one
// contest per state and office (each its own race), one precinct per
// (state, county, precinct_id), and each state's counties split into
// opt.Regions regions balanced by precinct count. It also returns the final
// counts of the year, keyed by the ids it gave. The same rows and options
// always give the same ids. Errors have code EINVALID.
func BuildElection(rows []ResultRow, opt BuildOptions) (*Election, Counts, error) {
	years := ResultYears(rows)
	if len(years) == 0 {
		return nil, nil, Errorf(EINVALID, "results: no rows")
	}
	year := opt.Year
	if year == 0 {
		year = years[len(years)-1]
	}
	var prior int
	found := false
	for _, y := range years {
		if y == year {
			found = true
		} else if y < year {
			prior = y
		}
	}
	if !found {
		return nil, nil, Errorf(EINVALID, "results: no rows for year %d (the file has %v)", year, years)
	}
	nregions := opt.Regions
	if nregions == 0 {
		nregions = 2
	}
	if nregions < 0 {
		return nil, nil, Errorf(EINVALID, "regions: must be positive, got %d", nregions)
	}

	type pkey struct{ state, county, id string }
	e := &Election{
		ID:   fmt.Sprintf("%d-general", year),
		Date: generalElectionDay(year).Format("2006-01-02"),
	}
	precinctIdx := map[pkey]int{}
	usedPrecinct := map[PrecinctID]bool{}
	contestIdx := map[ContestID]int{}
	candSeen := map[ContestID]map[CandidateID]bool{}
	counts := Counts{}
	states := []string{}
	stateSeen := map[string]bool{}
	countyPrecincts := map[string]map[string]int{} // state -> county -> precincts

	for _, r := range rows {
		if r.Year != year {
			continue
		}
		cid := ContestID(Slug(r.State) + "-" + Slug(r.Office))
		ci, ok := contestIdx[cid]
		if !ok {
			ci = len(e.Contests)
			contestIdx[cid] = ci
			c := Contest{ID: cid, Name: r.Office + ", " + stateName(r.State), Office: r.Office, State: r.State, Seats: 1}
			if prior != 0 {
				c.Baseline = &Baseline{Year: prior, Contest: cid}
			}
			e.Contests = append(e.Contests, c)
			candSeen[cid] = map[CandidateID]bool{}
		}
		cand := CandidateID(Slug(r.Candidate))
		if !candSeen[cid][cand] {
			candSeen[cid][cand] = true
			e.Contests[ci].Candidates = append(e.Contests[ci].Candidates, Candidate{ID: cand, Name: r.Candidate, Party: r.Party})
		}
		k := pkey{r.State, r.County, r.PrecinctID}
		pi, ok := precinctIdx[k]
		if !ok {
			base := PrecinctID(Slug(r.State) + "-" + Slug(r.County) + "-" + Slug(r.PrecinctID))
			id := base
			for n := 2; usedPrecinct[id]; n++ {
				id = PrecinctID(fmt.Sprintf("%s-%d", base, n))
			}
			usedPrecinct[id] = true
			pi = len(e.Precincts)
			precinctIdx[k] = pi
			name := r.PrecinctName
			if name == "" {
				name = r.PrecinctID
			}
			e.Precincts = append(e.Precincts, Precinct{ID: id, Name: name, County: r.County, State: r.State, SourceID: r.PrecinctID})
			if !stateSeen[r.State] {
				stateSeen[r.State] = true
				states = append(states, r.State)
				countyPrecincts[r.State] = map[string]int{}
			}
			countyPrecincts[r.State][r.County]++
		}
		p := &e.Precincts[pi]
		if counts[p.ID] == nil {
			counts[p.ID] = map[ContestID]map[CandidateID]int64{}
		}
		if counts[p.ID][cid] == nil {
			counts[p.ID][cid] = map[CandidateID]int64{}
			p.Contests = append(p.Contests, cid)
		}
		counts[p.ID][cid][cand] += r.Votes
	}
	// Every candidate of a contest appears in every report of it, with 0
	// where the file has no row: the file's gaps stay gaps.
	for pid, byContest := range counts {
		for cid, byCand := range byContest {
			for _, c := range e.Contests[contestIdx[cid]].Candidates {
				if _, ok := byCand[c.ID]; !ok {
					counts[pid][cid][c.ID] = 0
				}
			}
		}
	}

	regionOf := map[string]map[string]RegionID{} // state -> county -> region
	for _, st := range states {
		regs, assign, err := splitCounties(st, countyPrecincts[st], nregions)
		if err != nil {
			return nil, nil, err
		}
		e.Regions = append(e.Regions, regs...)
		regionOf[st] = assign
	}
	for i := range e.Precincts {
		p := &e.Precincts[i]
		p.Region = regionOf[p.State][p.County]
	}
	e.Name = fmt.Sprintf("General election %d (%s)", year, strings.Join(states, ", "))
	if err := e.Validate(); err != nil {
		return nil, nil, err
	}
	return e, counts, nil
}

// splitCounties splits a state's counties into n regions with about the same
// number of precincts each: largest county first, into the smallest region.
func splitCounties(state string, counties map[string]int, n int) ([]Region, map[string]RegionID, error) {
	if n > len(counties) {
		return nil, nil, Errorf(EINVALID, "regions: %d regions asked for, but %s has only %d counties", n, state, len(counties))
	}
	names := make([]string, 0, len(counties))
	for c := range counties {
		names = append(names, c)
	}
	sort.Slice(names, func(i, j int) bool {
		if counties[names[i]] != counties[names[j]] {
			return counties[names[i]] > counties[names[j]]
		}
		return names[i] < names[j]
	})
	load := make([]int, n)
	groups := make([][]string, n)
	for _, c := range names {
		best := 0
		for i := 1; i < n; i++ {
			if load[i] < load[best] {
				best = i
			}
		}
		load[best] += counties[c]
		groups[best] = append(groups[best], c)
	}
	regions := make([]Region, n)
	assign := map[string]RegionID{}
	for i := range groups {
		sort.Strings(groups[i])
		id := RegionID(fmt.Sprintf("%s-%d", Slug(state), i+1))
		regions[i] = Region{ID: id, Name: fmt.Sprintf("%s %d", stateName(state), i+1), State: state, Counties: groups[i]}
		for _, c := range groups[i] {
			assign[c] = id
		}
	}
	return regions, assign, nil
}

// generalElectionDay is the Tuesday after the first Monday of November.
func generalElectionDay(year int) time.Time {
	d := time.Date(year, time.November, 2, 0, 0, 0, 0, time.UTC)
	for d.Weekday() != time.Tuesday {
		d = d.AddDate(0, 0, 1)
	}
	return d
}

var stateNames = map[string]string{
	"AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
	"CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
	"FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
	"IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
	"ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
	"MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
	"NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
	"NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon",
	"PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
	"TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia",
	"WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
}

func stateName(code string) string {
	if n, ok := stateNames[code]; ok {
		return n
	}
	return code
}
