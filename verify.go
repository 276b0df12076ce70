package tally

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Independent verification. Verify recomputes everything the hub derives
// from the regions' streams — the totals, each region's hash chain and each
// stored checkpoint's comparison — from the stored events alone (read from
// the hub's mirrors or from an exported EventLog), and checks what the hub
// does not: that each region's sequences run 1, 2, 3… with none missing,
// repeated or moved, that each signed report verifies with its office's key,
// and that each correction supersedes the report it names. The result can
// then be compared with the live national state (CompareResults) or with a
// canvass report (CompareCanvass). Nothing here trusts the running system.

// VerifyOptions says what Verify checks beyond the recomputation.
type VerifyOptions struct {
	// Offices are the offices of each region. Each signed report of a
	// region listed here is checked with Offices.Authorize: the signature
	// and the office's right to report for the precinct. Reports of other
	// regions are counted as signed but not checked.
	Offices map[RegionID]*Offices
	// RequireSignatures makes an unsigned report of a region listed in
	// Offices a discrepancy, as a region requiring signatures refuses it.
	RequireSignatures bool
	// LastSeq is, per region, the last sequence its stream held when the
	// events were read (an EventLog's header says it). Events missing at
	// the end of a region's stream are seen only with it.
	LastSeq map[RegionID]uint64
}

// Kinds of Discrepancy.
const (
	DiscSequence   = "sequence"   // a region's events do not run 1, 2, 3… in order
	DiscEvent      = "event"      // a stored message is not a valid report of its region
	DiscSignature  = "signature"  // a report's signature or office does not check
	DiscCorrection = "correction" // a correction names a report other than the one it replaced
	DiscCheckpoint = "checkpoint" // a region's checkpoint differs from the recomputation
	DiscState      = "state"      // a reference (live state, report) covers other events
	DiscTotals     = "totals"     // a reference's totals differ from the recomputation
	DiscChain      = "chain"      // a reference's hash chain differs from the recomputation
)

// Discrepancy is one thing that does not check, named as precisely as
// known: the region and sequence of the event, the contest and candidate
// of a total.
type Discrepancy struct {
	Kind      string      `json:"kind"`
	Region    RegionID    `json:"region,omitempty"`
	Seq       uint64      `json:"seq,omitempty"`
	Event     EventID     `json:"event,omitempty"`
	Precinct  PrecinctID  `json:"precinct,omitempty"`
	Contest   ContestID   `json:"contest,omitempty"`
	Candidate CandidateID `json:"candidate,omitempty"`
	Message   string      `json:"message"`
}

// String names d: "region nc-1 seq 57 event nc-1-ab12 contest nc-president
// candidate biden: message".
func (d Discrepancy) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	add("region", string(d.Region))
	if d.Seq > 0 {
		add("seq", fmt.Sprint(d.Seq))
	}
	add("event", string(d.Event))
	add("precinct", string(d.Precinct))
	add("contest", string(d.Contest))
	add("candidate", string(d.Candidate))
	msg := d.Message
	if !strings.HasPrefix(msg, d.Kind) {
		msg = d.Kind + ": " + msg
	}
	if len(parts) == 0 {
		return msg
	}
	return strings.Join(parts, " ") + ": " + msg
}

// MaxDiscrepancies is how many discrepancies a Verification lists; the
// rest are only counted (Verification.More).
const MaxDiscrepancies = 1000

// RegionCheck is what Verify found in one region's stream.
type RegionCheck struct {
	Region RegionID `json:"region"`
	// Messages counts every message; Events the results messages (the
	// chain's events), Reports the valid reports counted among them.
	Messages    uint64 `json:"messages"`
	Events      uint64 `json:"events"`
	Reports     uint64 `json:"reports"`
	Corrections int    `json:"corrections"`
	Invalid     int    `json:"invalid"` // results messages that are not valid reports
	FirstSeq    uint64 `json:"first_seq"`
	LastSeq     uint64 `json:"last_seq"`
	// LastEventSeq is the sequence of the last results message: the
	// messages after it (checkpoints) change no total.
	LastEventSeq uint64 `json:"last_event_seq"`
	// Signed counts signed reports; SignaturesChecked those checked
	// against the region's offices.
	Signed            int `json:"signed"`
	SignaturesChecked int `json:"signatures_checked"`
	// Checkpoints counts the region's stored checkpoints, Matched those
	// that agree with the recomputation. LastCheckpoint is the last one's
	// covered sequence (0: none), LastCheckpointAt where it is stored.
	Checkpoints      int    `json:"checkpoints"`
	Matched          int    `json:"checkpoints_matched"`
	LastCheckpoint   uint64 `json:"last_checkpoint_seq"`
	LastCheckpointAt uint64 `json:"last_checkpoint_stored_at"`
	// Chain is the region's running hash after its last event.
	Chain Chain `json:"chain"`
	// Reconciled: every checkpoint matched and the last one covers every
	// event of the stream.
	Reconciled bool `json:"reconciled"`
}

// Verification is the outcome of Verify.
type Verification struct {
	Election string        `json:"election"`
	Regions  []RegionCheck `json:"regions"`
	// Signatures says whether signatures were checked.
	Signatures    string        `json:"signatures"`
	Discrepancies []Discrepancy `json:"discrepancies"`
	// More counts discrepancies beyond MaxDiscrepancies, not listed.
	More int `json:"more,omitempty"`

	e           *Election
	totals      *Totals
	corrections []CanvassCorrection
	events      map[RegionID][]StoredEvent // results messages, in sequence order
	ballots     map[cellKey]bool           // the latest report gave ballots cast
}

// OK reports whether nothing failed.
func (v *Verification) OK() bool { return len(v.Discrepancies) == 0 }

// First returns the first discrepancy, or nil.
func (v *Verification) First() *Discrepancy {
	if len(v.Discrepancies) == 0 {
		return nil
	}
	return &v.Discrepancies[0]
}

// Totals returns the recomputed totals. They must not be modified.
func (v *Verification) Totals() *Totals { return v.totals }

// Region returns the check of region r, or nil.
func (v *Verification) Region(r RegionID) *RegionCheck {
	for i := range v.Regions {
		if v.Regions[i].Region == r {
			return &v.Regions[i]
		}
	}
	return nil
}

func (v *Verification) add(d Discrepancy) {
	if len(v.Discrepancies) >= MaxDiscrepancies {
		v.More++
		return
	}
	v.Discrepancies = append(v.Discrepancies, d)
}

// Verify recomputes the totals and hash chains of election e from events,
// the stored messages of the regions' streams (as StoredEvent.Region says),
// in the order given, and checks them (see the top of this file and
// VerifyOptions). Each region is checked in sequence order after its order
// is checked, so one moved event is one discrepancy. Discrepancies come
// region by region in election order, each region's in sequence order.
func Verify(e *Election, events []StoredEvent, opts VerifyOptions) *Verification {
	v := &Verification{
		Election: e.ID, Regions: []RegionCheck{}, Discrepancies: []Discrepancy{},
		e: e, totals: NewTotals(e), events: map[RegionID][]StoredEvent{}, ballots: map[cellKey]bool{},
	}
	v.Signatures = "not checked: no offices given"
	if len(opts.Offices) > 0 {
		var rs []string
		for _, r := range e.Regions {
			if opts.Offices[r.ID] != nil {
				rs = append(rs, string(r.ID))
			}
		}
		v.Signatures = "checked against the offices of " + strings.Join(rs, ", ")
		if opts.RequireSignatures {
			v.Signatures += "; required"
		}
	}
	byRegion := map[RegionID][]StoredEvent{}
	for _, ev := range events {
		if e.Region(ev.Region) == nil {
			v.add(Discrepancy{Kind: DiscEvent, Region: ev.Region, Seq: ev.Seq,
				Message: fmt.Sprintf("stored under region %q, which the election does not have", ev.Region)})
			continue
		}
		byRegion[ev.Region] = append(byRegion[ev.Region], ev)
	}
	for _, r := range e.Regions {
		v.Regions = append(v.Regions, v.region(r.ID, byRegion[r.ID], opts))
	}
	return v
}

// region checks and replays one region's messages.
func (v *Verification) region(r RegionID, evs []StoredEvent, opts VerifyOptions) RegionCheck {
	rc := RegionCheck{Region: r, Chain: NewChain(r)}
	sorted := make([]StoredEvent, len(evs))
	copy(sorted, evs)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Seq < sorted[j].Seq })
	for i := range evs {
		if evs[i].Seq != sorted[i].Seq {
			v.add(Discrepancy{Kind: DiscSequence, Region: r, Seq: sorted[i].Seq,
				Message: fmt.Sprintf("out of order: seq %d comes after seq %d", sorted[i].Seq, evs[i].Seq)})
			break
		}
	}
	// Contiguity: 1, 2, 3…, each once, up to the stream's last sequence.
	var uniq []StoredEvent
	var prev uint64
	for _, ev := range sorted {
		switch {
		case ev.Seq == prev:
			v.add(Discrepancy{Kind: DiscSequence, Region: r, Seq: ev.Seq, Message: fmt.Sprintf("seq %d appears more than once", ev.Seq)})
			continue
		case ev.Seq > prev+1:
			v.add(Discrepancy{Kind: DiscSequence, Region: r, Seq: prev + 1, Message: missing(prev+1, ev.Seq-1, "")})
		}
		uniq = append(uniq, ev)
		prev = ev.Seq
	}
	if last := opts.LastSeq[r]; last > prev {
		v.add(Discrepancy{Kind: DiscSequence, Region: r, Seq: prev + 1,
			Message: missing(prev+1, last, fmt.Sprintf(" at the end: the stream held up to seq %d", last))})
	}
	if len(uniq) > 0 {
		rc.FirstSeq, rc.LastSeq = uniq[0].Seq, uniq[len(uniq)-1].Seq
	}
	offices := opts.Offices[r]
	mismatched := false
	var lastCP *Checkpoint
	for _, ev := range uniq {
		rc.Messages++
		if _, p, c, ok := ParseResultsSubject(ev.Subject); ok {
			rc.Events++
			rc.LastEventSeq = ev.Seq
			rc.Chain.Add(ev.Seq, ev.Subject, ev.Data)
			v.events[r] = append(v.events[r], ev)
			v.report(&rc, ev, p, c, offices, opts.RequireSignatures)
			continue
		}
		v.totals.Advance(r, ev.Seq)
		if _, ok := IsCheckpointSubject(ev.Subject); !ok {
			continue // another message: neither counted nor hashed, as at the hub
		}
		rc.Checkpoints++
		rc.LastCheckpointAt = ev.Seq
		cp, err := DecodeCheckpoint(ev.Data)
		if err != nil {
			mismatched = true
			v.add(Discrepancy{Kind: DiscCheckpoint, Region: r, Seq: ev.Seq, Message: ErrorMessage(err)})
			continue
		}
		rc.LastCheckpoint = cp.Seq
		want := v.totals.Checkpoint(r, ev.Seq-1, rc.Chain, cp.At)
		if err := cp.Compare(want); err != nil {
			mismatched = true
			// Compare speaks of the region and the hub; here the
			// recomputation stands for the hub.
			detail := func(err error) string {
				msg := strings.TrimPrefix(ErrorMessage(err), fmt.Sprintf("region %s checkpoint at seq %d: ", cp.Region, cp.Seq))
				return strings.ReplaceAll(msg, ", hub ", ", recomputed ")
			}
			d := Discrepancy{Kind: DiscCheckpoint, Region: r, Seq: ev.Seq,
				Message: fmt.Sprintf("checkpoint covering seq %d differs from the recomputation: %s", cp.Seq, detail(err))}
			// Name the contest and candidate when the totals differ too.
			same := cp
			same.Seq, same.Events, same.Hash = want.Seq, want.Events, want.Hash
			if terr := same.Compare(want); terr != nil {
				d.Contest, d.Candidate = checkpointDiff(same, want)
				if t := detail(terr); !strings.HasSuffix(d.Message, t) {
					d.Message += "; " + t
				}
			}
			v.add(d)
			continue
		}
		rc.Matched++
		lastCP = &cp
	}
	rc.Reconciled = !mismatched && lastCP != nil && lastCP.Events == rc.Chain.Events && rc.Checkpoints == rc.Matched
	return rc
}

func missing(from, to uint64, suffix string) string {
	if from == to {
		return fmt.Sprintf("seq %d missing%s", from, suffix)
	}
	return fmt.Sprintf("seq %d to %d missing (%d events)%s", from, to, to-from+1, suffix)
}

// report checks and applies one results message of region r.
func (v *Verification) report(rc *RegionCheck, ev StoredEvent, p PrecinctID, c ContestID, offices *Offices, require bool) {
	r := rc.Region
	fail := func(kind string, rep *Report, msg string) {
		d := Discrepancy{Kind: kind, Region: r, Seq: ev.Seq, Precinct: p, Contest: c, Message: msg}
		if rep != nil {
			d.Event = rep.ID
		}
		v.add(d)
	}
	sreg, _, _, _ := ParseResultsSubject(ev.Subject)
	rep, err := DecodeReport(ev.Data)
	if err == nil {
		err = rep.Validate(v.e)
	}
	switch {
	case sreg != r:
		err = Errorf(EINVALID, "subject %s names region %q in the stream of region %q", ev.Subject, sreg, r)
	case err == nil && (rep.Region != r || rep.Precinct != p || rep.Contest != c):
		err = Errorf(EINVALID, "report for %s/%s/%s stored under subject %s", rep.Region, rep.Precinct, rep.Contest, ev.Subject)
	}
	if err != nil {
		rc.Invalid++
		v.totals.Advance(r, ev.Seq)
		fail(DiscEvent, rep, "not counted: "+ErrorMessage(err))
		return
	}
	if rep.Signature != "" {
		rc.Signed++
	}
	if offices != nil && (rep.Signature != "" || require) {
		rc.SignaturesChecked++
		if err := offices.Authorize(rep); err != nil {
			fail(DiscSignature, rep, ErrorMessage(err))
		}
	}
	k := cellKey{p, c}
	before := v.totals.Cell(p, c)
	if cr := rep.Correction; cr != nil {
		switch {
		case before == nil:
			fail(DiscCorrection, rep, fmt.Sprintf("corrects %s (seq %d), but the precinct had no report for the contest", cr.Supersedes, cr.SupersedesSeq))
		case before.ID != cr.Supersedes || before.Seq != cr.SupersedesSeq:
			fail(DiscCorrection, rep, fmt.Sprintf("corrects %s (seq %d), but the precinct's latest report was %s (seq %d)", cr.Supersedes, cr.SupersedesSeq, before.ID, before.Seq))
		}
		rc.Corrections++
		v.corrections = append(v.corrections, newCanvassCorrection(ev, rep, before, v.e.Contest(c)))
	}
	v.totals.Apply(ev.Seq, rep)
	v.ballots[k] = rep.BallotsCast != nil
	rc.Reports++
}

// checkpointDiff names the first contest and candidate whose totals differ
// between a checkpoint and the recomputed one, in Compare's order.
func checkpointDiff(cp, want Checkpoint) (ContestID, CandidateID) {
	got, exp := map[ContestID]CheckpointContest{}, map[ContestID]CheckpointContest{}
	var ids []ContestID
	for _, c := range cp.Contests {
		got[c.Contest] = c
		ids = append(ids, c.Contest)
	}
	for _, c := range want.Contests {
		if _, ok := got[c.Contest]; !ok {
			ids = append(ids, c.Contest)
		}
		exp[c.Contest] = c
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		g, w := got[id], exp[id]
		if g.Reporting != w.Reporting || g.Complete != w.Complete || g.BallotsCast != w.BallotsCast {
			return id, ""
		}
		if cand := firstVoteDiff(g.Votes, w.Votes); cand != "" {
			return id, cand
		}
	}
	return "", ""
}

// firstVoteDiff returns the first candidate, in id order, whose votes differ.
func firstVoteDiff(a, b map[CandidateID]int64) CandidateID {
	ids := map[CandidateID]bool{}
	for k := range a {
		ids[k] = true
	}
	for k := range b {
		ids[k] = true
	}
	for _, k := range sortedKeys(ids) {
		if a[k] != b[k] {
			return k
		}
	}
	return ""
}

// CompareResults compares the recomputed totals with the national state:
// results holds the contest results by id (state contests and national
// views alike), statuses the region statuses. It first checks that the
// state has applied each region's stream as far as the events go, and no
// further (else its totals cannot match; trailing checkpoints aside), then each contest's candidate votes,
// precincts reporting and complete, ballots cast and corrections, and each
// region's votes in it; then each office's national view. It adds what
// differs to v's discrepancies and reports whether anything did.
func (v *Verification) CompareResults(results map[ContestID]ContestResult, statuses []RegionStatus) bool {
	n := len(v.Discrepancies) + v.More
	applied := map[RegionID]RegionStatus{}
	for _, st := range statuses {
		applied[st.ID] = st
	}
	for _, rc := range v.Regions {
		st, ok := applied[rc.Region]
		switch {
		case !ok:
			v.add(Discrepancy{Kind: DiscState, Region: rc.Region, Message: "the national state has no status for the region"})
		case st.Applied < rc.LastEventSeq || st.Applied > rc.LastSeq:
			// Between the last event and the last message there are only
			// checkpoints, which the hub's status may not count yet.
			v.add(Discrepancy{Kind: DiscState, Region: rc.Region, Seq: st.Applied,
				Message: fmt.Sprintf("the national state has applied the region's stream up to seq %d; the events go to seq %d", st.Applied, rc.LastSeq)})
		}
	}
	var parts = map[string][]ContestResult{}
	for _, con := range v.e.Contests {
		want := v.totals.ContestResult(con.ID, nil)
		parts[con.Office] = append(parts[con.Office], want)
		got, ok := results[con.ID]
		if !ok {
			v.add(Discrepancy{Kind: DiscTotals, Contest: con.ID, Message: "not in the national state"})
			continue
		}
		v.compareResult(got, want, true)
	}
	for _, office := range v.e.Offices() {
		want := NationalResult(office, parts[office])
		got, ok := results[want.ID]
		if !ok {
			v.add(Discrepancy{Kind: DiscTotals, Contest: want.ID, Message: "national view not in the national state"})
			continue
		}
		v.compareResult(got, want, false)
	}
	return len(v.Discrepancies)+v.More > n
}

// compareResult compares one contest result from a reference (got) with
// the recomputed one (want).
func (v *Verification) compareResult(got, want ContestResult, regions bool) {
	c := want.ID
	diff := func(cand CandidateID, what string, g, w int64) {
		v.add(Discrepancy{Kind: DiscTotals, Contest: c, Candidate: cand,
			Message: fmt.Sprintf("%s: the national state says %d, the events give %d", what, g, w)})
	}
	gv, wv := resultVotes(got.Candidates), resultVotes(want.Candidates)
	if cand := firstVoteDiff(gv, wv); cand != "" {
		diff(cand, "votes", gv[cand], wv[cand])
		return
	}
	switch {
	case got.Precincts.Reporting != want.Precincts.Reporting:
		diff("", "precincts reporting", int64(got.Precincts.Reporting), int64(want.Precincts.Reporting))
	case got.Precincts.Complete != want.Precincts.Complete:
		diff("", "precincts complete", int64(got.Precincts.Complete), int64(want.Precincts.Complete))
	case got.BallotsCast != want.BallotsCast:
		diff("", "ballots cast", got.BallotsCast, want.BallotsCast)
	case got.Corrections != want.Corrections:
		diff("", "corrections", int64(got.Corrections), int64(want.Corrections))
	}
	if !regions {
		return
	}
	gr := map[RegionID]RegionResult{}
	for _, rr := range got.Regions {
		gr[rr.ID] = rr
	}
	for _, w := range want.Regions {
		g := gr[w.ID]
		if cand := firstVoteDiff(g.Votes, w.Votes); cand != "" {
			v.add(Discrepancy{Kind: DiscTotals, Region: w.ID, Contest: c, Candidate: cand,
				Message: fmt.Sprintf("region votes: the national state says %d, the events give %d", g.Votes[cand], w.Votes[cand])})
			return
		}
	}
}

func resultVotes(cs []CandidateResult) map[CandidateID]int64 {
	m := make(map[CandidateID]int64, len(cs))
	for _, c := range cs {
		m[c.ID] = c.Votes
	}
	return m
}

// CompareCanvass compares the recomputed totals and chains with canvass
// report c: each region's final hash, events and last sequence; each
// contest's candidate totals, then its regions', counties' and precincts'
// votes. It adds what differs to v's discrepancies and reports whether
// anything did.
func (v *Verification) CompareCanvass(c *Canvass) bool {
	n := len(v.Discrepancies) + v.More
	if c.Election.ID != v.Election {
		v.add(Discrepancy{Kind: DiscState, Message: fmt.Sprintf("the report is of election %q, the events of %q", c.Election.ID, v.Election)})
		return true
	}
	for _, cr := range c.Regions {
		rc := v.Region(cr.ID)
		if rc == nil {
			v.add(Discrepancy{Kind: DiscState, Region: cr.ID, Message: "the report lists a region the election does not have"})
			continue
		}
		switch {
		case cr.LastSeq != rc.LastSeq:
			v.add(Discrepancy{Kind: DiscState, Region: cr.ID, Seq: cr.LastSeq,
				Message: fmt.Sprintf("the report covers the region's stream up to seq %d; the events go to seq %d", cr.LastSeq, rc.LastSeq)})
		case cr.Events != rc.Chain.Events || cr.Hash != rc.Chain.Hex():
			v.add(Discrepancy{Kind: DiscChain, Region: cr.ID, Seq: rc.LastSeq,
				Message: fmt.Sprintf("final hash: the report says %s over %d events, the events give %s over %d", cr.Hash, cr.Events, rc.Chain.Hex(), rc.Chain.Events)})
		}
	}
	for _, cc := range c.Contests {
		if v.e.Contest(cc.ID) == nil {
			v.add(Discrepancy{Kind: DiscTotals, Contest: cc.ID, Message: "the report lists a contest the election does not have"})
			continue
		}
		want := v.canvassContest(cc.ID)
		diff := func(region RegionID, p PrecinctID, cand CandidateID, what string, g, w int64) {
			v.add(Discrepancy{Kind: DiscTotals, Region: region, Precinct: p, Contest: cc.ID, Candidate: cand,
				Message: fmt.Sprintf("%s: the report says %d, the events give %d", what, g, w)})
		}
		gv, wv := map[CandidateID]int64{}, map[CandidateID]int64{}
		for _, cand := range cc.Candidates {
			gv[cand.ID] = cand.Votes
		}
		for _, cand := range want.Candidates {
			wv[cand.ID] = cand.Votes
		}
		if cand := firstVoteDiff(gv, wv); cand != "" {
			diff("", "", cand, "votes", gv[cand], wv[cand])
			continue
		}
		if g, w := cc.Precincts, want.Precincts; g != w {
			v.add(Discrepancy{Kind: DiscTotals, Contest: cc.ID,
				Message: fmt.Sprintf("precincts (total, reporting, complete): the report says %d, %d, %d; the events give %d, %d, %d",
					g.Total, g.Reporting, g.Complete, w.Total, w.Reporting, w.Complete)})
			continue
		}
		units := func(level string, got, exp []CanvassUnit) bool {
			m := map[string]CanvassUnit{}
			for _, u := range got {
				m[u.ID] = u
			}
			for _, w := range exp {
				g, ok := m[w.ID]
				if !ok {
					v.add(Discrepancy{Kind: DiscTotals, Contest: cc.ID, Message: fmt.Sprintf("%s %s missing from the report", level, w.ID)})
					return false
				}
				if cand := firstVoteDiff(g.Votes, w.Votes); cand != "" {
					reg := RegionID("")
					if level == "region" {
						reg = RegionID(w.ID)
					}
					diff(reg, "", cand, level+" "+w.ID+" votes", g.Votes[cand], w.Votes[cand])
					return false
				}
			}
			return true
		}
		if !units("region", cc.Regions, want.Regions) || !units("county", cc.Counties, want.Counties) {
			continue
		}
		gp := map[PrecinctID]CanvassPrecinct{}
		for _, p := range cc.PrecinctResults {
			gp[p.ID] = p
		}
		for _, w := range want.PrecinctResults {
			g := gp[w.ID]
			if cand := firstVoteDiff(g.Votes, w.Votes); cand != "" {
				diff(w.Region, w.ID, cand, "precinct votes", g.Votes[cand], w.Votes[cand])
				break
			}
		}
	}
	return len(v.Discrepancies)+v.More > n
}

// newCanvassCorrection describes correction rep, stored as ev, replacing
// the cell before (nil when there was none).
func newCanvassCorrection(ev StoredEvent, rep *Report, before *Cell, con *Contest) CanvassCorrection {
	cc := CanvassCorrection{
		Region: rep.Region, Seq: ev.Seq, Stored: ev.Stored.UTC(), Event: rep.ID, Precinct: rep.Precinct, Contest: rep.Contest,
		ReportedAt: rep.ReportedAt.UTC(), Office: rep.Office, Reason: rep.Correction.Reason,
		Supersedes: rep.Correction.Supersedes, SupersedesSeq: rep.Correction.SupersedesSeq, Changes: []VoteChange{},
	}
	var old map[CandidateID]int64
	if before != nil {
		old = before.Votes
		cc.Replaced, cc.ReplacedSeq = before.ID, before.Seq
	}
	seen := map[CandidateID]bool{}
	add := func(id CandidateID) {
		if seen[id] {
			return
		}
		seen[id] = true
		ch := VoteChange{Candidate: id, Before: old[id], After: rep.Votes[id]}
		ch.Change = ch.After - ch.Before
		if ch.Change != 0 {
			cc.Changes = append(cc.Changes, ch)
		}
	}
	if con != nil {
		for _, cand := range con.Candidates {
			add(cand.ID)
		}
	}
	for _, id := range sortedKeys(old) {
		add(id)
	}
	for _, id := range sortedKeys(rep.Votes) {
		add(id)
	}
	return cc
}

// MarshalJSON writes d with its String form as "text", for readers who
// want one line.
func (d Discrepancy) MarshalJSON() ([]byte, error) {
	type plain Discrepancy
	return json.Marshal(struct {
		plain
		Text string `json:"text"`
	}{plain(d), d.String()})
}
