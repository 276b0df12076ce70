package tally

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"
)

// CSV sections of a canvass report, in the order WriteCSV writes them.
const (
	CSVReport         = "report"
	CSVResults        = "results"
	CSVUnits          = "units"
	CSVCorrections    = "corrections"
	CSVOutages        = "outages"
	CSVReconciliation = "reconciliation"
	CSVCalls          = "calls"
	CSVDiscrepancies  = "discrepancies"
	CSVNotes          = "notes"
)

// WriteCSV writes the report as CSV in sections, one table each, separated
// by an empty line. Each section starts with its header row, whose first
// cell is "section"; every data row starts with the section's name, so one
// table is the rows starting with, say, "results,":
//
//	report          the election, scope, status and when it was generated
//	results         votes per candidate, by vote type ("total" or a NIST
//	                vote type), at each level: contest, region, county, precinct
//	units           per contest, region, county and precinct: precincts
//	                reporting and complete, total votes, ballots cast,
//	                registered voters and turnout (empty when not known)
//	corrections     one row per candidate whose votes a correction changed
//	outages         each time a region was offline, and its late events
//	reconciliation  per region: events, last sequence, final hash, checkpoints
//	calls           the projector's calls and retractions, with their basis
//	discrepancies   what the verification found, if anything
//	notes           remarks, such as why turnout is not shown
//
// Times are RFC 3339 in UTC; shares and turnout are fractions.
func (c *Canvass) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	first := true
	section := func(header ...string) {
		if !first {
			_ = cw.Write(nil) // csv.Writer keeps the first error for Flush
		}
		first = false
		_ = cw.Write(append([]string{"section"}, header...))
	}
	row := func(name string, cells ...string) { _ = cw.Write(append([]string{name}, cells...)) }

	section("election", "election_name", "date", "scope", "status", "status_note", "generated", "source", "signatures")
	scope := "election"
	if c.Contest != "" {
		scope = "contest " + string(c.Contest)
	}
	row(CSVReport, c.Election.ID, c.Election.Name, c.Election.Date, scope, c.Status, c.StatusNote, csvTime(c.Generated), c.Source, c.Signatures)

	section("contest", "level", "unit", "unit_name", "candidate", "candidate_name", "party", "vote_type", "votes")
	for _, con := range c.Contests {
		names := map[CandidateID]CanvassCandidate{}
		for _, cand := range con.Candidates {
			names[cand.ID] = cand
		}
		votes := func(level, unit, unitName string, vs map[CandidateID]int64, byType map[VoteType]map[CandidateID]int64) {
			for _, cand := range con.Candidates {
				row(CSVResults, string(con.ID), level, unit, unitName, string(cand.ID), cand.Name, cand.Party, "total", i64(vs[cand.ID]))
			}
			for _, vt := range con.VoteTypes {
				if byType[vt] == nil {
					continue
				}
				for _, cand := range con.Candidates {
					row(CSVResults, string(con.ID), level, unit, unitName, string(cand.ID), cand.Name, cand.Party, string(vt), i64(byType[vt][cand.ID]))
				}
			}
		}
		total := map[CandidateID]int64{}
		byType := map[VoteType]map[CandidateID]int64{}
		for _, cand := range con.Candidates {
			total[cand.ID] = cand.Votes
			for vt, n := range cand.ByType {
				if byType[vt] == nil {
					byType[vt] = map[CandidateID]int64{}
				}
				byType[vt][cand.ID] = n
			}
		}
		votes("contest", string(con.ID), con.Name, total, byType)
		for _, u := range con.Regions {
			votes("region", u.ID, u.Name, u.Votes, u.ByType)
		}
		for _, u := range con.Counties {
			votes("county", u.ID, u.Name, u.Votes, u.ByType)
		}
		for _, p := range con.PrecinctResults {
			if p.Reporting {
				votes("precinct", string(p.ID), p.Name, p.Votes, p.ByType)
			}
		}
	}

	section("contest", "level", "unit", "unit_name", "precincts", "reporting", "complete", "total_votes", "ballots_cast", "registered", "registered_known", "turnout", "turnout_precincts", "corrections", "note")
	for _, con := range c.Contests {
		unit := func(level, id, name string, pc PrecinctCount, votes int64, part Participation, corrections int) {
			row(CSVUnits, string(con.ID), level, id, name, itoa(pc.Total), itoa(pc.Reporting), itoa(pc.Complete), i64(votes),
				ptrI64(part.BallotsCast), knownI64(part.Registered, part.RegisteredKnown), itoa(part.RegisteredKnown),
				ptrShare(part.Turnout), itoa(part.TurnoutPrecincts), itoa(corrections), part.TurnoutNote)
		}
		unit("contest", string(con.ID), con.Name, con.Precincts, con.TotalVotes, con.Participation, con.Corrections)
		for _, u := range con.Regions {
			unit("region", u.ID, u.Name, u.Precincts, u.TotalVotes, u.Participation, u.Corrections)
		}
		for _, u := range con.Counties {
			unit("county", u.ID, u.Name, u.Precincts, u.TotalVotes, u.Participation, u.Corrections)
		}
		for _, p := range con.PrecinctResults {
			pc := PrecinctCount{Total: 1}
			if p.Reporting {
				pc.Reporting = 1
			}
			if p.Complete {
				pc.Complete = 1
			}
			part := Participation{BallotsCast: p.BallotsCast, Registered: p.Registered}
			if p.Registered > 0 {
				part.RegisteredKnown = 1
				if p.BallotsCast != nil {
					t := float64(*p.BallotsCast) / float64(p.Registered)
					part.Turnout, part.TurnoutPrecincts = &t, 1
				}
			}
			unit("precinct", string(p.ID), p.Name, pc, p.TotalVotes, part, p.Corrections)
		}
	}

	section("contest", "region", "precinct", "seq", "event", "stored", "reported_at", "office", "reason", "supersedes", "supersedes_seq", "candidate", "before", "after", "change")
	for _, cr := range c.Corrections {
		for _, ch := range cr.Changes {
			row(CSVCorrections, string(cr.Contest), string(cr.Region), string(cr.Precinct), u64(cr.Seq), string(cr.Event), csvTime(cr.Stored),
				csvTime(cr.ReportedAt), cr.Office, cr.Reason, string(cr.Supersedes), u64(cr.SupersedesSeq), string(ch.Candidate),
				i64(ch.Before), i64(ch.After), i64(ch.Change))
		}
		if len(cr.Changes) == 0 {
			row(CSVCorrections, string(cr.Contest), string(cr.Region), string(cr.Precinct), u64(cr.Seq), string(cr.Event), csvTime(cr.Stored),
				csvTime(cr.ReportedAt), cr.Office, cr.Reason, string(cr.Supersedes), u64(cr.SupersedesSeq), "", "", "", "0")
		}
	}

	section("region", "region_name", "from", "to", "seconds", "late_events", "first_late_seq", "last_late_seq")
	for _, o := range c.Outages {
		from, to, secs := csvTime(o.From), csvTime(o.To), ""
		if o.FromHubStart {
			from = "hub start"
		}
		if o.Ongoing {
			to = "ongoing"
		}
		if !o.From.IsZero() && !o.To.IsZero() {
			secs = strconv.FormatFloat(o.To.Sub(o.From).Seconds(), 'f', 1, 64)
		}
		row(CSVOutages, string(o.Region), o.Name, from, to, secs, itoa(o.Late), u64(o.FirstLateSeq), u64(o.LastLateSeq))
	}

	section("region", "region_name", "status", "messages", "events", "first_seq", "last_seq", "final_hash", "final_hash_seq",
		"checkpoints", "checkpoints_matched", "last_checkpoint_seq", "reconciled",
		"hub_checkpoints_compared", "hub_checkpoints_matched", "hub_last_checkpoint_seq", "hub_mismatch")
	for _, r := range c.Regions {
		row(CSVReconciliation, string(r.ID), r.Name, r.Status, u64(r.Messages), u64(r.Events), u64(r.FirstSeq), u64(r.LastSeq), r.Hash, u64(r.HashSeq),
			itoa(r.Checkpoints), itoa(r.Matched), u64(r.LastCheckpoint), strconv.FormatBool(r.Reconciled),
			itoa(r.HubCompared), itoa(r.HubMatched), u64(r.HubLastCheckpoint), r.HubMismatch)
	}

	section("contest", "status", "winner", "winner_name", "at", "by", "reason", "seq",
		"counted_share", "margin", "margin_lo99", "margin_hi99", "precincts_reporting", "precincts_total")
	for _, cl := range c.Calls {
		share, margin, lo, hi, rep, tot := "", "", "", "", "", ""
		if b := cl.Basis; b != nil {
			share = strconv.FormatFloat(b.CountedShare, 'f', 4, 64)
			margin = strconv.FormatFloat(b.Margin.Estimate, 'f', 4, 64)
			lo, hi = strconv.FormatFloat(b.Margin.I99.Lo, 'f', 4, 64), strconv.FormatFloat(b.Margin.I99.Hi, 'f', 4, 64)
			rep, tot = itoa(b.PrecinctsReporting), itoa(b.PrecinctsTotal)
		}
		row(CSVCalls, string(cl.Contest), cl.Status, string(cl.Winner), cl.WinnerName, csvTime(cl.At), cl.By, cl.Reason, u64(cl.Seq), share, margin, lo, hi, rep, tot)
	}

	section("kind", "region", "seq", "event", "precinct", "contest", "candidate", "message")
	for _, d := range c.Discrepancies {
		row(CSVDiscrepancies, d.Kind, string(d.Region), u64(d.Seq), string(d.Event), string(d.Precinct), string(d.Contest), string(d.Candidate), d.Message)
	}
	if c.DiscrepanciesMore > 0 {
		row(CSVDiscrepancies, "", "", "", "", "", "", "", fmt.Sprintf("%d more not listed", c.DiscrepanciesMore))
	}

	section("note")
	for _, n := range c.allNotes() {
		row(CSVNotes, n)
	}
	cw.Flush()
	return cw.Error()
}

// allNotes are the report's notes with each contest's remarks on vote
// types and turnout.
func (c *Canvass) allNotes() []string {
	var out []string
	for _, con := range c.Contests {
		if con.VoteTypesNote != "" {
			out = append(out, fmt.Sprintf("%s: %s", con.Name, con.VoteTypesNote))
		}
		if con.TurnoutNote != "" {
			out = append(out, fmt.Sprintf("%s: %s", con.Name, con.TurnoutNote))
		}
		if con.BallotsCast == nil {
			out = append(out, fmt.Sprintf("%s: Ballots cast were not reported.", con.Name))
		}
	}
	return append(out, c.Notes...)
}

func itoa(n int) string   { return strconv.Itoa(n) }
func i64(n int64) string  { return strconv.FormatInt(n, 10) }
func u64(n uint64) string { return strconv.FormatUint(n, 10) }

func ptrI64(p *int64) string {
	if p == nil {
		return ""
	}
	return i64(*p)
}

func knownI64(n int64, known int) string {
	if known == 0 {
		return ""
	}
	return i64(n)
}

func ptrShare(p *float64) string {
	if p == nil {
		return ""
	}
	return strconv.FormatFloat(*p, 'f', 4, 64)
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}
