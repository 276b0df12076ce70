package tally

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// The canvass report: what certification officials sign off. BuildCanvass
// derives it from the raw events (Verify's recomputation, not the hub's
// running totals), the hub's audit records and the projector's calls. It is
// rendered as JSON (the Canvass itself), CSV (WriteCSV) and HTML (WriteHTML).

// Canvass statuses: complete when every precinct in scope has a complete
// report, every region in scope is reconciled (its last checkpoint matched
// and covers every event) and the verification found nothing; partial
// otherwise.
const (
	CanvassPartial  = "unofficial-partial"
	CanvassComplete = "unofficial-complete"
)

// Canvass is the canvass report of an election, or of one contest.
type Canvass struct {
	Election CanvassElection `json:"election"`
	// Contest is the contest the report is limited to; "" for the whole election.
	Contest   ContestID `json:"contest,omitempty"`
	Generated time.Time `json:"generated"`
	// Source says where the events were read.
	Source string `json:"source"`
	// Status is CanvassPartial or CanvassComplete; StatusNote says why
	// the count is partial.
	Status     string `json:"status"`
	StatusNote string `json:"status_note,omitempty"`
	// Signatures says whether office signatures were checked;
	// Discrepancies are what the verification found (none in a clean
	// count), DiscrepanciesMore how many more were not listed.
	Signatures        string        `json:"signatures"`
	Discrepancies     []Discrepancy `json:"discrepancies"`
	DiscrepanciesMore int           `json:"discrepancies_more,omitempty"`

	Contests    []CanvassContest    `json:"contests"`
	Corrections []CanvassCorrection `json:"corrections"`
	Outages     []CanvassOutage     `json:"outages"`
	Regions     []CanvassRegion     `json:"regions"`
	Calls       []CanvassCall       `json:"calls"`
	// Notes are remarks on what the report could not show, such as audit
	// records that could not be read.
	Notes []string `json:"notes"`

	v *Verification
}

// CanvassElection identifies the election.
type CanvassElection struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Date string `json:"date"`
	Test bool   `json:"test,omitempty"`
}

// CanvassContest is one contest's results: totals by candidate, and by
// region, county and precinct.
type CanvassContest struct {
	ID     ContestID `json:"id"`
	Name   string    `json:"name"`
	Office string    `json:"office"`
	State  string    `json:"state,omitempty"`
	Seats  int       `json:"seats"`
	// Candidates are sorted by votes, most first.
	Candidates []CanvassCandidate `json:"candidates"`
	TotalVotes int64              `json:"total_votes"`
	// VoteTypes are the vote types results were split by, where any
	// precinct reported them; VoteTypesNote says so when none did.
	VoteTypes     []VoteType `json:"vote_types"`
	VoteTypesNote string     `json:"vote_types_note,omitempty"`
	Participation
	Precincts   PrecinctCount `json:"precincts"`
	Corrections int           `json:"corrections"`
	// Complete: every precinct has a complete report. Reconciled: complete,
	// and every region of the contest is reconciled.
	Complete        bool              `json:"complete"`
	Reconciled      bool              `json:"reconciled"`
	Regions         []CanvassUnit     `json:"regions"`
	Counties        []CanvassUnit     `json:"counties"`
	PrecinctResults []CanvassPrecinct `json:"precinct_results"`
}

// Participation is the ballots cast and turnout of a unit. Turnout is only
// computed over precincts whose registered voters are known and whose
// latest report gave its ballots cast; Note says when it cannot be, or is
// over only some precincts.
type Participation struct {
	// BallotsCast sums the ballots cast of the precincts that reported
	// them (BallotsReported); nil when none did.
	BallotsCast     *int64 `json:"ballots_cast"`
	BallotsReported int    `json:"ballots_reported"`
	// Registered sums the registered voters of the RegisteredKnown
	// precincts whose number is known.
	Registered      int64 `json:"registered"`
	RegisteredKnown int   `json:"registered_known"`
	// Turnout is ballots cast over registered voters, as a fraction, over
	// the TurnoutPrecincts precincts where both are known; nil when none.
	Turnout          *float64 `json:"turnout"`
	TurnoutPrecincts int      `json:"turnout_precincts"`
	TurnoutNote      string   `json:"turnout_note,omitempty"`
}

// CanvassCandidate is one candidate's total in a contest.
type CanvassCandidate struct {
	ID     CandidateID        `json:"id"`
	Name   string             `json:"name"`
	Party  string             `json:"party,omitempty"`
	Votes  int64              `json:"votes"`
	Share  float64            `json:"share"` // of all candidate votes, 0..1
	ByType map[VoteType]int64 `json:"by_type,omitempty"`
}

// CanvassUnit is a region's or a county's part of a contest.
type CanvassUnit struct {
	ID         string                             `json:"id"`
	Name       string                             `json:"name"`
	Votes      map[CandidateID]int64              `json:"votes"`
	ByType     map[VoteType]map[CandidateID]int64 `json:"by_type,omitempty"`
	TotalVotes int64                              `json:"total_votes"`
	Participation
	Precincts   PrecinctCount `json:"precincts"`
	Corrections int           `json:"corrections"`
}

// CanvassPrecinct is one precinct's result in a contest: its latest
// report's counts, or nothing when it has not reported.
type CanvassPrecinct struct {
	ID         PrecinctID                         `json:"id"`
	Name       string                             `json:"name"`
	County     string                             `json:"county"`
	Region     RegionID                           `json:"region"`
	Registered int64                              `json:"registered,omitempty"` // 0: not known
	Reporting  bool                               `json:"reporting"`
	Complete   bool                               `json:"complete"`
	Votes      map[CandidateID]int64              `json:"votes"`
	ByType     map[VoteType]map[CandidateID]int64 `json:"by_type,omitempty"`
	TotalVotes int64                              `json:"total_votes"`
	// BallotsCast is the latest report's ballots cast; nil when not given.
	BallotsCast *int64 `json:"ballots_cast,omitempty"`
	// Seq, Report and ReportedAt identify the latest report counted.
	Seq         uint64    `json:"seq,omitempty"`
	Report      EventID   `json:"report,omitempty"`
	ReportedAt  time.Time `json:"reported_at,omitzero"`
	Reports     int       `json:"reports"`
	Corrections int       `json:"corrections"`
}

// CanvassCorrection is one correction applied: when, by which office, why,
// the report it superseded and what it changed.
type CanvassCorrection struct {
	Region     RegionID   `json:"region"`
	Seq        uint64     `json:"seq"`
	Stored     time.Time  `json:"stored"`
	Event      EventID    `json:"event"`
	Precinct   PrecinctID `json:"precinct"`
	Contest    ContestID  `json:"contest"`
	ReportedAt time.Time  `json:"reported_at"`
	Office     string     `json:"office,omitempty"`
	Reason     string     `json:"reason"`
	// Supersedes and SupersedesSeq are the report the correction names;
	// Replaced and ReplacedSeq the one it actually replaced in the
	// totals (the same, unless the verification says otherwise).
	Supersedes    EventID `json:"supersedes"`
	SupersedesSeq uint64  `json:"supersedes_seq"`
	Replaced      EventID `json:"replaced,omitempty"`
	ReplacedSeq   uint64  `json:"replaced_seq,omitempty"`
	// Changes lists each candidate whose votes changed.
	Changes []VoteChange `json:"changes"`
}

// VoteChange is a candidate's votes before and after a correction.
type VoteChange struct {
	Candidate CandidateID `json:"candidate"`
	Before    int64       `json:"before"`
	After     int64       `json:"after"`
	Change    int64       `json:"change"`
}

// CanvassOutage is a time a region was offline as the hub recorded it, and
// the events the region stored meanwhile, which reached the hub late.
type CanvassOutage struct {
	Region RegionID `json:"region"`
	Name   string   `json:"name"`
	// From is when the hub saw the region go offline; zero with
	// FromHubStart, when the region was offline from the hub's start.
	From         time.Time `json:"from,omitzero"`
	FromHubStart bool      `json:"from_hub_start,omitempty"`
	// To is when the hub saw it back; zero while Ongoing.
	To      time.Time `json:"to,omitzero"`
	Ongoing bool      `json:"ongoing,omitempty"`
	// Late counts the region's events stored during the outage (by their
	// stored time), the first and last of them by sequence.
	Late         int    `json:"late_events"`
	FirstLateSeq uint64 `json:"first_late_seq,omitempty"`
	LastLateSeq  uint64 `json:"last_late_seq,omitempty"`
}

// CanvassRegion is one region's reconciliation: its stream as recomputed
// from the events, and the checkpoints the hub compared.
type CanvassRegion struct {
	ID   RegionID `json:"id"`
	Name string   `json:"name"`
	// Status and StatusSince are the hub's last recorded status of the region.
	Status      string    `json:"status,omitempty"`
	StatusSince time.Time `json:"status_since,omitzero"`
	// Messages, Events, FirstSeq and LastSeq describe the stream; Hash
	// is its final running hash (Chain) over its Events, the last of
	// which is at HashSeq.
	Messages uint64 `json:"messages"`
	Events   uint64 `json:"events"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Hash     string `json:"hash"`
	HashSeq  uint64 `json:"hash_seq"`
	// HubCompared and HubMatched count the checkpoints the hub compared
	// and found matching (from its audit records), HubLastCheckpoint the
	// sequence the last covered, HubMismatch its first mismatch.
	HubCompared       int    `json:"hub_checkpoints_compared"`
	HubMatched        int    `json:"hub_checkpoints_matched"`
	HubLastCheckpoint uint64 `json:"hub_last_checkpoint_seq"`
	HubMismatch       string `json:"hub_mismatch,omitempty"`
	// Checkpoints and Matched count the stored checkpoints and those the
	// recomputation matched; LastCheckpoint is the sequence the last
	// covers. Reconciled: all matched and the last covers every event.
	Checkpoints    int    `json:"checkpoints"`
	Matched        int    `json:"checkpoints_matched"`
	LastCheckpoint uint64 `json:"last_checkpoint_seq"`
	Reconciled     bool   `json:"reconciled"`
}

// CanvassCall is one of the projector's calls or retractions, with its
// place in the calls stream. Call.Basis holds the projection behind a
// model call.
type CanvassCall struct {
	Call
	Seq        uint64    `json:"seq"`
	Stored     time.Time `json:"stored"`
	WinnerName string    `json:"winner_name,omitempty"`
}

// CanvassInput is what BuildCanvass reads.
type CanvassInput struct {
	Election *Election
	// Contest limits the report to one contest; "" is the whole election.
	Contest ContestID
	// Events are the regions' stored messages (the hub's mirrors), Audit
	// the hub's AuditStream, Calls the projector's CallsStream.
	Events []StoredEvent
	Audit  []StoredEvent
	Calls  []StoredEvent
	// Verify sets what the verification checks (offices, last sequences).
	Verify VerifyOptions
	// Generated is when the report is made; Source where the events were read.
	Generated time.Time
	Source    string
}

// BuildCanvass makes the canvass report of in: it verifies and replays the
// events (Verify) and builds every section from the recomputation and the
// hub's records. An unknown contest is EINVALID; unreadable audit records
// and calls are listed in Notes, not errors.
func BuildCanvass(in CanvassInput) (*Canvass, error) {
	e := in.Election
	if in.Contest != "" && e.Contest(in.Contest) == nil {
		return nil, Errorf(EINVALID, "contest: unknown contest %q", in.Contest)
	}
	v := Verify(e, in.Events, in.Verify)
	c := &Canvass{
		Election:  CanvassElection{ID: e.ID, Name: e.Name, Date: e.Date, Test: e.Test},
		Contest:   in.Contest,
		Generated: in.Generated.UTC(),
		Source:    in.Source,
		// The verification's findings, whatever the scope: a broken
		// stream puts every contest of its region in doubt.
		Signatures:        v.Signatures,
		Discrepancies:     v.Discrepancies,
		DiscrepanciesMore: v.More,
		Contests:          []CanvassContest{},
		Corrections:       []CanvassCorrection{},
		Outages:           []CanvassOutage{},
		Regions:           []CanvassRegion{},
		Calls:             []CanvassCall{},
		Notes:             []string{},
		v:                 v,
	}
	inScope := func(id ContestID) bool { return in.Contest == "" || id == in.Contest }
	regionInScope := map[RegionID]bool{}
	for _, con := range e.Contests {
		if !inScope(con.ID) {
			continue
		}
		for _, r := range e.ContestRegions(con.ID) {
			regionInScope[r] = true
		}
	}
	if in.Contest == "" {
		for _, r := range e.Regions {
			regionInScope[r.ID] = true
		}
	}

	statuses, cps := c.readAudit(in.Audit)
	startup := firstContact(statuses)
	reconciled := map[RegionID]bool{}
	for _, rc := range v.Regions {
		reconciled[rc.Region] = rc.Reconciled
		if !regionInScope[rc.Region] {
			continue
		}
		c.Regions = append(c.Regions, newCanvassRegion(e, rc, statuses[rc.Region], cps[rc.Region]))
		c.Outages = append(c.Outages, outages(e.Region(rc.Region), statuses[rc.Region], v.events[rc.Region], startup)...)
	}
	for _, con := range e.Contests {
		if inScope(con.ID) {
			c.Contests = append(c.Contests, v.canvassContestReconciled(con.ID, reconciled))
		}
	}
	for _, cr := range v.corrections {
		if inScope(cr.Contest) {
			c.Corrections = append(c.Corrections, cr)
		}
	}
	sort.SliceStable(c.Corrections, func(i, j int) bool { return c.Corrections[i].Stored.Before(c.Corrections[j].Stored) })
	for _, ev := range in.Calls {
		var call Call
		if err := json.Unmarshal(ev.Data, &call); err != nil {
			c.Notes = append(c.Notes, fmt.Sprintf("call at seq %d of %s could not be read: %v", ev.Seq, CallsStream, err))
			continue
		}
		if !inScope(call.Contest) {
			continue
		}
		cc := CanvassCall{Call: call, Seq: ev.Seq, Stored: ev.Stored.UTC()}
		if cand := e.Candidate(call.Contest, call.Winner); cand != nil {
			cc.WinnerName = cand.Name
		}
		c.Calls = append(c.Calls, cc)
	}
	c.status()
	return c, nil
}

// Verification returns the verification the report was built from.
func (c *Canvass) Verification() *Verification { return c.v }

// status sets Status and StatusNote.
func (c *Canvass) status() {
	c.Status = CanvassComplete
	partial := func(format string, args ...any) {
		if c.Status == CanvassComplete {
			c.Status, c.StatusNote = CanvassPartial, fmt.Sprintf(format, args...)
		}
	}
	if d := c.v.First(); d != nil {
		partial("the verification found %d discrepancies; the first: %s", len(c.Discrepancies)+c.DiscrepanciesMore, d)
	}
	for _, con := range c.Contests {
		if !con.Complete {
			partial("contest %s: %d of %d precincts have a complete report", con.ID, con.Precincts.Complete, con.Precincts.Total)
		}
	}
	for _, r := range c.Regions {
		if !r.Reconciled {
			partial("region %s is not reconciled: %d of %d checkpoints matched, the last covers seq %d of %d", r.ID, r.Matched, r.Checkpoints, r.LastCheckpoint, r.LastSeq)
		}
	}
}

// readAudit splits the hub's audit records into status changes and
// compared checkpoints, per region.
func (c *Canvass) readAudit(audit []StoredEvent) (map[RegionID][]StatusEvent, map[RegionID][]CheckpointEvent) {
	statuses := map[RegionID][]StatusEvent{}
	cps := map[RegionID][]CheckpointEvent{}
	for _, ev := range audit {
		var err error
		switch {
		case strings.HasPrefix(ev.Subject, "tally.audit.status."):
			var se StatusEvent
			if err = json.Unmarshal(ev.Data, &se); err == nil {
				statuses[se.Region] = append(statuses[se.Region], se)
			}
		case strings.HasPrefix(ev.Subject, "tally.audit.checkpoint."):
			var ce CheckpointEvent
			if err = json.Unmarshal(ev.Data, &ce); err == nil {
				cps[ce.Region] = append(cps[ce.Region], ce)
			}
		}
		if err != nil {
			c.Notes = append(c.Notes, fmt.Sprintf("audit record at seq %d of %s could not be read: %v", ev.Seq, AuditStream, err))
		}
	}
	return statuses, cps
}

func newCanvassRegion(e *Election, rc RegionCheck, statuses []StatusEvent, cps []CheckpointEvent) CanvassRegion {
	cr := CanvassRegion{
		ID: rc.Region, Name: e.Region(rc.Region).Name,
		Messages: rc.Messages, Events: rc.Events, FirstSeq: rc.FirstSeq, LastSeq: rc.LastSeq, Hash: rc.Chain.Hex(), HashSeq: rc.Chain.Seq,
		Checkpoints: rc.Checkpoints, Matched: rc.Matched, LastCheckpoint: rc.LastCheckpoint, Reconciled: rc.Reconciled,
	}
	if n := len(statuses); n > 0 {
		cr.Status, cr.StatusSince = statuses[n-1].Status, statuses[n-1].At.UTC()
	}
	for _, cp := range cps {
		cr.HubCompared++
		if cp.Matched {
			cr.HubMatched++
		} else if cr.HubMismatch == "" {
			cr.HubMismatch = cp.Mismatch
		}
		if cp.Seq > cr.HubLastCheckpoint {
			cr.HubLastCheckpoint = cp.Seq
		}
	}
	return cr
}

// firstContact returns when the hub first heard from any region: the
// earliest first status change out of offline. Before it the hub was
// starting up.
func firstContact(statuses map[RegionID][]StatusEvent) time.Time {
	var first time.Time
	for _, sts := range statuses {
		if len(sts) > 0 && sts[0].Was == StatusOffline && sts[0].Status != StatusOffline {
			if at := sts[0].At; first.IsZero() || at.Before(first) {
				first = at
			}
		}
	}
	return first
}

// outages derives region r's outages from its status changes, in order,
// and counts the events (in sequence order) stored during each.
//
// The hub records changes only: every region starts offline, unheard of,
// and its first record is when the hub first heard from it. A region first
// heard from at startup, the health check at which the hub first heard from
// any region (it stamps one check's changes with one time), was starting
// up with the hub. A region first heard from later was out since the hub
// started: that period is an outage, from the hub's start, when the region
// stored events in it, or when the hub never heard from the region at all.
func outages(r *Region, statuses []StatusEvent, events []StoredEvent, startup time.Time) []CanvassOutage {
	var out []CanvassOutage
	var cur *CanvassOutage
	switch {
	case len(statuses) == 0 && !startup.IsZero():
		// Never heard from while others were: out all along.
		cur = &CanvassOutage{Region: r.ID, Name: r.Name, FromHubStart: true}
	case len(statuses) > 0 && statuses[0].Was == StatusOffline && !statuses[0].At.Equal(startup):
		cur = &CanvassOutage{Region: r.ID, Name: r.Name, FromHubStart: true}
	}
	finish := func(to time.Time) {
		o := *cur
		cur = nil
		o.To = to
		for _, ev := range events {
			if (o.FromHubStart || !ev.Stored.Before(o.From)) && (to.IsZero() || ev.Stored.Before(to)) {
				o.Late++
				if o.FirstLateSeq == 0 {
					o.FirstLateSeq = ev.Seq
				}
				o.LastLateSeq = ev.Seq
			}
		}
		if o.FromHubStart && o.Late == 0 && !o.Ongoing {
			return
		}
		out = append(out, o)
	}
	for _, st := range statuses {
		switch {
		case st.Status == StatusOffline && cur == nil:
			cur = &CanvassOutage{Region: r.ID, Name: r.Name, From: st.At.UTC()}
		case st.Status != StatusOffline && cur != nil:
			finish(st.At.UTC())
		}
	}
	if cur != nil {
		cur.Ongoing = true
		finish(time.Time{})
	}
	return out
}

// canvassContest builds contest c's results from the recomputed totals,
// with every region taken as reconciled.
func (v *Verification) canvassContest(c ContestID) CanvassContest {
	return v.canvassContestReconciled(c, nil)
}

// canvassContestReconciled builds contest c's results; reconciled says
// which regions are (nil: do not judge, Reconciled is false).
func (v *Verification) canvassContestReconciled(c ContestID, reconciled map[RegionID]bool) CanvassContest {
	e, t := v.e, v.totals
	con := e.Contest(c)
	cc := CanvassContest{
		ID: c, Name: con.Name, Office: con.Office, State: con.State, Seats: con.Seats,
		VoteTypes: []VoteType{}, Regions: []CanvassUnit{}, Counties: []CanvassUnit{}, PrecinctResults: []CanvassPrecinct{},
	}
	ct := t.contests[c]
	if ct == nil {
		ct = &ContestTally{}
	}
	for _, cr := range candidateResults(con.Candidates, ct.Votes) {
		cand := CanvassCandidate{ID: cr.ID, Name: cr.Name, Party: cr.Party, Votes: cr.Votes, Share: cr.Share}
		for vt, byCand := range ct.VoteTypes {
			if cand.ByType == nil {
				cand.ByType = map[VoteType]int64{}
			}
			cand.ByType[vt] = byCand[cr.ID]
		}
		cc.Candidates = append(cc.Candidates, cand)
		cc.TotalVotes += cr.Votes
	}
	for _, vt := range []VoteType{VoteElectionDay, VoteEarly, VoteAbsentee, VoteProvisional, VoteOther} {
		if _, ok := ct.VoteTypes[vt]; ok {
			cc.VoteTypes = append(cc.VoteTypes, vt)
		}
	}
	if len(cc.VoteTypes) == 0 {
		cc.VoteTypesNote = "No precinct reported its votes by vote type."
	}

	regions := map[RegionID]*unitAcc{}
	counties := map[string]*unitAcc{}
	var countyOrder []string
	all := &unitAcc{}
	for _, pid := range e.ContestPrecincts(c) {
		p := e.Precinct(pid)
		pr := CanvassPrecinct{ID: pid, Name: p.Name, County: p.County, Region: p.Region, Registered: p.Registered, Votes: map[CandidateID]int64{}}
		if cell := t.Cell(pid, c); cell != nil {
			pr.Reporting, pr.Complete = true, cell.Complete
			for cand, n := range cell.Votes {
				pr.Votes[cand] = n
				pr.TotalVotes += n
			}
			pr.ByType = copyVoteTypes(cell.VoteTypes)
			if v.ballots[cellKey{pid, c}] {
				b := cell.BallotsCast
				pr.BallotsCast = &b
			}
			pr.Seq, pr.Report, pr.ReportedAt = cell.Seq, cell.ID, cell.ReportedAt.UTC()
			pr.Reports, pr.Corrections = cell.Reports, cell.Corrections
		}
		cc.PrecinctResults = append(cc.PrecinctResults, pr)
		if regions[p.Region] == nil {
			regions[p.Region] = &unitAcc{}
		}
		if counties[p.County] == nil {
			counties[p.County] = &unitAcc{}
			countyOrder = append(countyOrder, p.County)
		}
		for _, u := range []*unitAcc{regions[p.Region], counties[p.County], all} {
			u.add(pr)
		}
	}
	for _, r := range e.ContestRegions(c) {
		cc.Regions = append(cc.Regions, regions[r].unit(string(r), e.Region(r).Name))
	}
	sort.Strings(countyOrder)
	for _, name := range countyOrder {
		cc.Counties = append(cc.Counties, counties[name].unit(name, name))
	}
	tot := all.unit(string(c), con.Name)
	cc.Participation, cc.Precincts, cc.Corrections = tot.Participation, tot.Precincts, tot.Corrections
	cc.Complete = cc.Precincts.Total > 0 && cc.Precincts.Complete == cc.Precincts.Total
	cc.Reconciled = cc.Complete && reconciled != nil
	for _, r := range e.ContestRegions(c) {
		if !reconciled[r] {
			cc.Reconciled = false
		}
	}
	return cc
}

// unitAcc sums precincts into a CanvassUnit.
type unitAcc struct {
	u        CanvassUnit
	ballots  int64
	turnoutB int64
	turnoutR int64
}

func (a *unitAcc) add(p CanvassPrecinct) {
	u := &a.u
	if u.Votes == nil {
		u.Votes = map[CandidateID]int64{}
	}
	u.Precincts.Total++
	if p.Registered > 0 {
		u.Registered += p.Registered
		u.RegisteredKnown++
	}
	if !p.Reporting {
		return
	}
	u.Precincts.Reporting++
	if p.Complete {
		u.Precincts.Complete++
	}
	for cand, n := range p.Votes {
		u.Votes[cand] += n
		u.TotalVotes += n
	}
	for vt, byCand := range p.ByType {
		if u.ByType == nil {
			u.ByType = map[VoteType]map[CandidateID]int64{}
		}
		if u.ByType[vt] == nil {
			u.ByType[vt] = map[CandidateID]int64{}
		}
		for cand, n := range byCand {
			u.ByType[vt][cand] += n
		}
	}
	u.Corrections += p.Corrections
	if p.BallotsCast != nil {
		u.BallotsReported++
		a.ballots += *p.BallotsCast
		if p.Registered > 0 {
			u.TurnoutPrecincts++
			a.turnoutB += *p.BallotsCast
			a.turnoutR += p.Registered
		}
	}
}

func (a *unitAcc) unit(id, name string) CanvassUnit {
	u := a.u
	u.ID, u.Name = id, name
	if u.Votes == nil {
		u.Votes = map[CandidateID]int64{}
	}
	if u.BallotsReported > 0 {
		b := a.ballots
		u.BallotsCast = &b
	}
	switch {
	case u.RegisteredKnown == 0:
		u.TurnoutNote = "Turnout not computed: registered voters are not known."
	case u.BallotsReported == 0:
		u.TurnoutNote = "Turnout not computed: no precinct reported its ballots cast."
	case u.TurnoutPrecincts == 0:
		u.TurnoutNote = "Turnout not computed: no precinct has both registered voters and ballots cast known."
	default:
		t := float64(a.turnoutB) / float64(a.turnoutR)
		u.Turnout = &t
		if u.TurnoutPrecincts < u.Precincts.Total {
			u.TurnoutNote = fmt.Sprintf("Turnout over the %d of %d precincts with both registered voters and ballots cast known.", u.TurnoutPrecincts, u.Precincts.Total)
		}
	}
	return u
}

// CDFStatus is the NIST results status of the report: unofficial-complete
// or unofficial-partial as Status says, or certified when certify is set,
// which a partial count refuses (EINVALID, saying why).
func (c *Canvass) CDFStatus(certify bool) (CDFStatus, error) {
	switch {
	case certify && c.Status != CanvassComplete:
		return "", Errorf(EINVALID, "certified: the count is not complete: %s", c.StatusNote)
	case certify:
		return CDFCertified, nil
	case c.Status == CanvassComplete:
		return CDFUnofficialComplete, nil
	}
	return CDFUnofficialPartial, nil
}
