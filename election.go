// Package tally defines the results federation's domain: the election and its
// regions, precincts, contests and candidates; the events that carry votes
// (reports and corrections); their canonical encoding and subjects; and the
// totals derived from them. It imports the standard library only.
package tally

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// RegionID names a region: a group of counties served by one region node.
// It is subject-safe (see ValidToken) and doubles as the region's JetStream domain.
type RegionID string

// PrecinctID names a precinct (a reporting unit). Subject-safe.
type PrecinctID string

// ContestID names a contest. Subject-safe.
type ContestID string

// CandidateID names a candidate within a contest. Candidates that stand in
// several contests (the presidential race in every state) share one id, so
// national views can sum contests of the same office.
type CandidateID string

// Election is the definition an election night runs against: every region,
// contest and precinct. Call Validate (LoadElection and BuildElection do)
// before using the lookup methods.
type Election struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Date      string     `json:"date"`           // YYYY-MM-DD
	Test      bool       `json:"test,omitempty"` // a test election, not live results
	Regions   []Region   `json:"regions"`
	Contests  []Contest  `json:"contests"`
	Precincts []Precinct `json:"precincts"`

	idx *electionIndex
}

// Region is a group of counties that report to one region node.
type Region struct {
	ID       RegionID `json:"id"`
	Name     string   `json:"name"`
	State    string   `json:"state,omitempty"`
	Counties []string `json:"counties,omitempty"`
}

// Precinct is a reporting unit: the contests on its ballot are reported for
// it, one cumulative report at a time.
type Precinct struct {
	ID         PrecinctID  `json:"id"`
	Name       string      `json:"name"`
	County     string      `json:"county"`
	State      string      `json:"state,omitempty"`
	Region     RegionID    `json:"region"`
	Registered int64       `json:"registered,omitempty"` // registered voters; 0 when not known
	Contests   []ContestID `json:"contests"`
	SourceID   string      `json:"source_id,omitempty"` // the precinct id as published
}

// Contest is one race with its own winner. Contests of the same Office are
// summed in national views.
type Contest struct {
	ID         ContestID   `json:"id"`
	Name       string      `json:"name"`
	Office     string      `json:"office"`
	State      string      `json:"state,omitempty"`
	Seats      int         `json:"seats"` // number to elect; 1 when omitted
	Candidates []Candidate `json:"candidates"`
	Baseline   *Baseline   `json:"baseline,omitempty"`
}

// Baseline names the earlier contest a contest's projections are measured
// against.
type Baseline struct {
	Year    int       `json:"year"`
	Contest ContestID `json:"contest,omitempty"`
}

// Candidate is a choice in a contest. Write-ins are one candidate.
type Candidate struct {
	ID    CandidateID `json:"id"`
	Name  string      `json:"name"`
	Party string      `json:"party,omitempty"`
}

type electionIndex struct {
	regions    map[RegionID]*Region
	contests   map[ContestID]*Contest
	precincts  map[PrecinctID]*Precinct
	candidates map[ContestID]map[CandidateID]*Candidate
	byContest  map[ContestID][]PrecinctID
	byRegion   map[RegionID][]PrecinctID
	offices    []string
	// pos is each precinct's index in Election.Precincts.
	pos map[PrecinctID]int
	// contestRegions and regionCount: the regions of each contest, in
	// definition order, and how many of its precincts each holds.
	contestRegions map[ContestID][]RegionID
	regionCount    map[ContestID]map[RegionID]int
	// regionNum is each precinct's region, as an index in Regions, by the
	// precinct's index in Precincts.
	regionNum []int32
	// ballots holds, for each contest and each region (by its index in
	// Regions), the indexes in Precincts of the region's precincts with the
	// contest on their ballot, ascending: the slots of a Totals' cells.
	ballots map[ContestID][][]int32
	// checks holds slotsCheck of each of ballots' groups, made on first
	// use (the hub's first snapshot or restore): hashing the precinct ids
	// of a national night's 5 million slots takes a quarter of a second,
	// too much to repeat in every snapshot.
	checksOnce sync.Once
	checks     map[ContestID][]uint64
}

// LoadElection decodes an election definition in JSON and validates it.
// Unknown fields are refused, so a misspelt field does not pass silently.
// Errors have code EINVALID.
func LoadElection(r io.Reader) (*Election, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read election: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var e Election
	if err := dec.Decode(&e); err != nil {
		return nil, Errorf(EINVALID, "election definition: %s", jsonErrorText(err))
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// ballotKey is a precinct's contests as one string, to find precincts with
// the same ones.
func ballotKey(ids []ContestID) string {
	n := 0
	for _, id := range ids {
		n += len(id) + 1
	}
	var b strings.Builder
	b.Grow(n)
	for _, id := range ids {
		b.WriteString(string(id))
		b.WriteByte(0) // not in a valid id
	}
	return b.String()
}

// Validate checks that e is complete and consistent and builds the lookup
// index. Errors have code EINVALID and name the offending field. It also
// makes precincts with the same contests share one Contests list: change a
// precinct's contests by giving it a list of its own, not in place.
func (e *Election) Validate() error {
	if e.ID == "" {
		return Errorf(EINVALID, "election: id required")
	}
	if len(e.Regions) == 0 {
		return Errorf(EINVALID, "election: regions: at least one region required")
	}
	if len(e.Contests) == 0 {
		return Errorf(EINVALID, "election: contests: at least one contest required")
	}
	idx := &electionIndex{
		regions:        make(map[RegionID]*Region, len(e.Regions)),
		contests:       make(map[ContestID]*Contest, len(e.Contests)),
		precincts:      make(map[PrecinctID]*Precinct, len(e.Precincts)),
		candidates:     make(map[ContestID]map[CandidateID]*Candidate, len(e.Contests)),
		byContest:      make(map[ContestID][]PrecinctID, len(e.Contests)),
		byRegion:       make(map[RegionID][]PrecinctID, len(e.Regions)),
		pos:            make(map[PrecinctID]int, len(e.Precincts)),
		regionCount:    make(map[ContestID]map[RegionID]int, len(e.Contests)),
		contestRegions: make(map[ContestID][]RegionID, len(e.Contests)),
		regionNum:      make([]int32, len(e.Precincts)),
		ballots:        make(map[ContestID][][]int32, len(e.Contests)),
	}
	regionNum := make(map[RegionID]int32, len(e.Regions))
	for i := range e.Regions {
		r := &e.Regions[i]
		if err := ValidToken(string(r.ID)); err != nil {
			return Errorf(EINVALID, "election: regions[%d].id: %s", i, err)
		}
		if r.ID == HubDomain {
			return Errorf(EINVALID, "election: regions[%d].id: %q is reserved for the hub", i, r.ID)
		}
		if idx.regions[r.ID] != nil {
			return Errorf(EINVALID, "election: regions[%d].id: duplicate region %q", i, r.ID)
		}
		idx.regions[r.ID] = r
		regionNum[r.ID] = int32(i)
	}
	seenOffice := map[string]bool{}
	for i := range e.Contests {
		c := &e.Contests[i]
		if err := ValidToken(string(c.ID)); err != nil {
			return Errorf(EINVALID, "election: contests[%d].id: %s", i, err)
		}
		if idx.contests[c.ID] != nil {
			return Errorf(EINVALID, "election: contests[%d].id: duplicate contest %q", i, c.ID)
		}
		if c.Seats == 0 {
			c.Seats = 1
		}
		if c.Seats < 0 {
			return Errorf(EINVALID, "election: contests[%d].seats: must be positive", i)
		}
		if len(c.Candidates) == 0 {
			return Errorf(EINVALID, "election: contests[%d].candidates: at least one candidate required", i)
		}
		cands := make(map[CandidateID]*Candidate, len(c.Candidates))
		for j := range c.Candidates {
			cd := &c.Candidates[j]
			if err := ValidToken(string(cd.ID)); err != nil {
				return Errorf(EINVALID, "election: contests[%d].candidates[%d].id: %s", i, j, err)
			}
			if cands[cd.ID] != nil {
				return Errorf(EINVALID, "election: contests[%d].candidates[%d].id: duplicate candidate %q", i, j, cd.ID)
			}
			cands[cd.ID] = cd
		}
		idx.contests[c.ID] = c
		idx.candidates[c.ID] = cands
		if c.Office != "" && !seenOffice[c.Office] {
			seenOffice[c.Office] = true
			idx.offices = append(idx.offices, c.Office)
		}
	}
	ballot := map[ContestID]bool{} // the precinct's contests, to find one twice
	// Precincts with the same contests, in the same order, share one list
	// (a copy whose capacity is its length, so that an append copies): a
	// large election holds a list per distinct ballot, not one per
	// precinct, each as long as it needs.
	lists := map[string][]ContestID{}
	var last []ContestID
	for i := range e.Precincts {
		p := &e.Precincts[i]
		if err := ValidToken(string(p.ID)); err != nil {
			return Errorf(EINVALID, "election: precincts[%d].id: %s", i, err)
		}
		if idx.precincts[p.ID] != nil {
			return Errorf(EINVALID, "election: precincts[%d].id: duplicate precinct %q", i, p.ID)
		}
		if idx.regions[p.Region] == nil {
			return Errorf(EINVALID, "election: precincts[%d].region: unknown region %q", i, p.Region)
		}
		ri := regionNum[p.Region]
		idx.regionNum[i] = ri
		if p.Registered < 0 {
			return Errorf(EINVALID, "election: precincts[%d].registered: must not be negative", i)
		}
		clear(ballot)
		for j, c := range p.Contests {
			if idx.contests[c] == nil {
				return Errorf(EINVALID, "election: precincts[%d].contests[%d]: unknown contest %q", i, j, c)
			}
			if ballot[c] {
				return Errorf(EINVALID, "election: precincts[%d].contests[%d]: duplicate contest %q", i, j, c)
			}
			ballot[c] = true
			// The same string as the contest's id: a large election
			// holds one copy of each id, not one per precinct.
			p.Contests[j] = idx.contests[c].ID
			idx.byContest[c] = append(idx.byContest[c], p.ID)
			if idx.regionCount[c] == nil {
				idx.regionCount[c] = map[RegionID]int{}
			}
			idx.regionCount[c][p.Region]++
			if idx.ballots[c] == nil {
				idx.ballots[c] = make([][]int32, len(e.Regions))
			}
			idx.ballots[c][ri] = append(idx.ballots[c][ri], int32(i))
		}
		switch {
		case len(p.Contests) == 0:
		case slices.Equal(p.Contests, last):
			p.Contests = last
		default:
			key := ballotKey(p.Contests)
			if l, ok := lists[key]; ok {
				p.Contests = l
			} else {
				p.Contests = slices.Clip(slices.Clone(p.Contests))
				lists[key] = p.Contests
			}
			last = p.Contests
		}
		idx.precincts[p.ID] = p
		idx.pos[p.ID] = i
		idx.byRegion[p.Region] = append(idx.byRegion[p.Region], p.ID)
	}
	for c, counts := range idx.regionCount {
		for _, r := range e.Regions {
			if counts[r.ID] > 0 {
				idx.contestRegions[c] = append(idx.contestRegions[c], r.ID)
			}
		}
	}
	e.idx = idx
	return nil
}

func (e *Election) index() *electionIndex {
	if e.idx == nil {
		if err := e.Validate(); err != nil {
			// An invalid election has no index; lookups find nothing.
			e.idx = &electionIndex{}
		}
	}
	return e.idx
}

// Region returns the region with the given id, or nil.
func (e *Election) Region(id RegionID) *Region { return e.index().regions[id] }

// Contest returns the contest with the given id, or nil.
func (e *Election) Contest(id ContestID) *Contest { return e.index().contests[id] }

// Precinct returns the precinct with the given id, or nil.
func (e *Election) Precinct(id PrecinctID) *Precinct { return e.index().precincts[id] }

// Candidate returns the candidate of contest c with the given id, or nil.
func (e *Election) Candidate(c ContestID, id CandidateID) *Candidate {
	return e.index().candidates[c][id]
}

// OnBallot reports whether contest c is on precinct p's ballot.
func (e *Election) OnBallot(p PrecinctID, c ContestID) bool {
	pp := e.index().precincts[p]
	return pp != nil && slices.Contains(pp.Contests, c)
}

// ContestPrecincts returns the precincts that vote in contest c, in definition order.
func (e *Election) ContestPrecincts(c ContestID) []PrecinctID { return e.index().byContest[c] }

// RegionPrecincts returns the precincts of region r, in definition order.
func (e *Election) RegionPrecincts(r RegionID) []PrecinctID { return e.index().byRegion[r] }

// Offices returns the distinct offices of the election's contests, in
// definition order. Contests of one office are summed in national views.
func (e *Election) Offices() []string { return e.index().offices }

// OfficeContests returns the contests of an office, in definition order.
func (e *Election) OfficeContests(office string) []ContestID {
	var ids []ContestID
	for _, c := range e.Contests {
		if c.Office == office {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

// ContestRegions returns the regions with at least one precinct in contest c,
// in definition order.
// The slice must not be modified.
func (e *Election) ContestRegions(c ContestID) []RegionID { return e.index().contestRegions[c] }

// ContestRegionPrecincts returns how many of contest c's precincts region r
// holds.
func (e *Election) ContestRegionPrecincts(c ContestID, r RegionID) int {
	return e.index().regionCount[c][r]
}

// PrecinctIndex returns precinct p's index in e.Precincts, or -1.
func (e *Election) PrecinctIndex(p PrecinctID) int {
	if i, ok := e.index().pos[p]; ok {
		return i
	}
	return -1
}

// NationalContestID is the id of the national view of an office: the sum of
// every contest of that office.
func NationalContestID(office string) ContestID {
	return ContestID("all-" + Slug(office))
}

// Slug turns a published name into a subject-safe token: lower case letters
// and digits, other runs of characters folded into one '-'.
func Slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.TrimSuffix(b.String(), "-")
	if out == "" {
		return "x"
	}
	return out
}

// ValidToken reports whether s can be used as an id inside a NATS subject and
// a stream name: 1 to 64 characters from a-z, A-Z, 0-9, '-' and '_'.
func ValidToken(s string) error {
	if s == "" {
		return fmt.Errorf("required")
	}
	if len(s) > 64 {
		return fmt.Errorf("%q is longer than 64 characters", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("%q may hold only letters, digits, '-' and '_'", s)
		}
	}
	return nil
}
