package tally

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// This file maps an election and its totals to the Election Results Common
// Data Format of NIST SP 1500-100 version 2, in its JSON form, and back.
// Field names and "@type" values are the schema's, from
// usnistgov/ElectionResultsReporting (branch version2), developed by the
// National Institute of Standards and Technology. Only the subset Tally
// needs is modelled.
//
// Tally's objects become these CDF objects, with @ids derived from Tally's
// ids so that the same election always gives the same ids:
//
//	states      ReportingUnit Type "state"                  gpu-state-<code>
//	counties    ReportingUnit Type "county"                 gpu-county-<state>-<county> (slugs)
//	regions     ReportingUnit Type "other", OtherType "region"  gpu-region-<id>
//	precincts   ReportingUnit Type "precinct"               gpu-precinct-<id>
//	contests    CandidateContest                            contest-<id>
//	candidates  Candidate and CandidateSelection            cand-<contest>.<id>, sel-<contest>.<id>
//	            Person, one per candidate id                person-<id>
//	parties     Party                                       party-<slug>
//	offices     Office                                      office-<slug>
//
// A state composes its counties and its regions; a county and a region each
// compose their precincts (a region is a district across counties). When the
// election spans more than one state, or has objects without a state, a
// ReportingUnit of Type "country" (gpu-country) composes the states and is
// the election's scope; otherwise the one state is. The contests on a
// precinct's ballot are a BallotStyle.

// CDF "@type" values, as the schema spells them.
const (
	cdfElectionReport   = "ElectionResults.ElectionReport"
	cdfElection         = "ElectionResults.Election"
	cdfReportingUnit    = "ElectionResults.ReportingUnit"
	cdfReportingDevice  = "ElectionResults.ReportingDevice"
	cdfParty            = "ElectionResults.Party"
	cdfCoalition        = "ElectionResults.Coalition"
	cdfPerson           = "ElectionResults.Person"
	cdfCandidate        = "ElectionResults.Candidate"
	cdfOffice           = "ElectionResults.Office"
	cdfCandidateContest = "ElectionResults.CandidateContest"
	cdfCandidateSel     = "ElectionResults.CandidateSelection"
	cdfVoteCounts       = "ElectionResults.VoteCounts"
	cdfBallotCounts     = "ElectionResults.BallotCounts"
	cdfBallotStyle      = "ElectionResults.BallotStyle"
	cdfOrderedContest   = "ElectionResults.OrderedContest"
	cdfCountStatus      = "ElectionResults.CountStatus"
	cdfExternalID       = "ElectionResults.ExternalIdentifier"
	cdfIntlText         = "ElectionResults.InternationalizedText"
	cdfLanguageString   = "ElectionResults.LanguageString"
)

// The @id prefixes of the objects Tally exports. ImportCDF strips them to
// recover Tally's ids.
const (
	cdfStatePrefix    = "gpu-state-"
	cdfCountyPrefix   = "gpu-county-"
	cdfRegionPrefix   = "gpu-region-"
	cdfPrecinctPrefix = "gpu-precinct-"
	cdfCountryID      = "gpu-country"
	cdfContestPrefix  = "contest-"
	cdfCandPrefix     = "cand-"
	cdfSelPrefix      = "sel-"
	cdfPersonPrefix   = "person-"
	cdfPartyPrefix    = "party-"
	cdfOfficePrefix   = "office-"
	cdfRegionType     = "region"   // OtherType of a region's ReportingUnit
	cdfTallyIDType    = "tally-id" // OtherType of the election's ExternalIdentifier
)

// CDFStatus is an ElectionReport's Status: the schema's ResultsStatus.
type CDFStatus string

// Results statuses (ResultsStatus).
const (
	CDFPreElection        CDFStatus = "pre-election"
	CDFUnofficialPartial  CDFStatus = "unofficial-partial"
	CDFUnofficialComplete CDFStatus = "unofficial-complete"
	CDFCertified          CDFStatus = "certified"
	CDFCorrection         CDFStatus = "correction"
	CDFRecount            CDFStatus = "recount"
)

func (s CDFStatus) valid() bool {
	switch s {
	case CDFPreElection, CDFUnofficialPartial, CDFUnofficialComplete, CDFCertified, CDFCorrection, CDFRecount:
		return true
	}
	return false
}

// CDFFormat is an ElectionReport's Format: the schema's ReportDetailLevel.
type CDFFormat string

// Report detail levels (ReportDetailLevel).
const (
	// CDFPrecinctLevel gives the counts of every reported precinct and the
	// contest totals.
	CDFPrecinctLevel CDFFormat = "precinct-level"
	// CDFSummaryContest gives the contest totals only.
	CDFSummaryContest CDFFormat = "summary-contest"
)

// CDFElectionReport is the root of a CDF file: an ElectionReport. The CDF
// types' JSON names are the schema's; in Go, AtType holds "@type", ID
// "@id", and "Id" is spelt "ID".
type CDFElectionReport struct {
	AtType              string        `json:"@type"` // ElectionResults.ElectionReport
	Election            []CDFElection `json:"Election,omitempty"`
	Format              CDFFormat     `json:"Format"`
	GeneratedDate       string        `json:"GeneratedDate"` // RFC 3339, seconds, with zone
	GpUnit              []CDFGpUnit   `json:"GpUnit,omitempty"`
	IsTest              bool          `json:"IsTest,omitempty"`
	Issuer              string        `json:"Issuer"`
	IssuerAbbreviation  string        `json:"IssuerAbbreviation"`
	Office              []CDFOffice   `json:"Office,omitempty"`
	Party               []CDFParty    `json:"Party,omitempty"`
	Person              []CDFPerson   `json:"Person,omitempty"`
	SequenceEnd         int           `json:"SequenceEnd"`
	SequenceStart       int           `json:"SequenceStart"`
	Status              CDFStatus     `json:"Status"`
	VendorApplicationID string        `json:"VendorApplicationId"`
}

// CDFElection is an Election: its ballot styles, candidates and contests,
// and the ballots cast where known.
type CDFElection struct {
	AtType             string                  `json:"@type"` // ElectionResults.Election
	BallotCounts       []CDFBallotCounts       `json:"BallotCounts,omitempty"`
	BallotStyle        []CDFBallotStyle        `json:"BallotStyle,omitempty"`
	Candidate          []CDFCandidate          `json:"Candidate,omitempty"`
	Contest            []CDFContest            `json:"Contest,omitempty"`
	ElectionScopeID    string                  `json:"ElectionScopeId"`
	EndDate            string                  `json:"EndDate"` // YYYY-MM-DD
	ExternalIdentifier []CDFExternalIdentifier `json:"ExternalIdentifier,omitempty"`
	Name               *CDFText                `json:"Name"`
	StartDate          string                  `json:"StartDate"` // YYYY-MM-DD
	Type               string                  `json:"Type"`      // ElectionType: general, primary, ...
}

// CDFGpUnit is a ReportingUnit: a state, county, precinct, Tally region
// (Type "other", OtherType "region") or the country. ImportCDF also accepts
// a ReportingDevice and ignores it.
type CDFGpUnit struct {
	ID                 string                  `json:"@id"`
	AtType             string                  `json:"@type"` // ElectionResults.ReportingUnit
	ComposingGpUnitIDs []string                `json:"ComposingGpUnitIds,omitempty"`
	ExternalIdentifier []CDFExternalIdentifier `json:"ExternalIdentifier,omitempty"`
	Name               *CDFText                `json:"Name,omitempty"`
	OtherType          string                  `json:"OtherType,omitempty"`
	Type               string                  `json:"Type"` // ReportingUnitType: state, county, precinct, other, ...
	VotersRegistered   int64                   `json:"VotersRegistered,omitempty"`
}

// CDFParty is a Party (or, read by ImportCDF, a Coalition).
type CDFParty struct {
	ID     string   `json:"@id"`
	AtType string   `json:"@type"` // ElectionResults.Party
	Name   *CDFText `json:"Name"`
}

// CDFPerson is a Person: one per Tally candidate id, which candidates of
// several contests share.
type CDFPerson struct {
	ID       string   `json:"@id"`
	AtType   string   `json:"@type"` // ElectionResults.Person
	FullName *CDFText `json:"FullName,omitempty"`
}

// CDFCandidate is a Candidate: one per contest and Tally candidate.
type CDFCandidate struct {
	ID         string   `json:"@id"`
	AtType     string   `json:"@type"` // ElectionResults.Candidate
	BallotName *CDFText `json:"BallotName"`
	PartyID    string   `json:"PartyId,omitempty"`
	PersonID   string   `json:"PersonId,omitempty"`
}

// CDFOffice is an Office: a Tally contest's Office.
type CDFOffice struct {
	ID     string   `json:"@id"`
	AtType string   `json:"@type"` // ElectionResults.Office
	Name   *CDFText `json:"Name"`
}

// CDFContest is a CandidateContest.
type CDFContest struct {
	ID                 string           `json:"@id"`
	AtType             string           `json:"@type"` // ElectionResults.CandidateContest
	ContestSelection   []CDFSelection   `json:"ContestSelection,omitempty"`
	CountStatus        []CDFCountStatus `json:"CountStatus,omitempty"`
	ElectionDistrictID string           `json:"ElectionDistrictId"`
	Name               string           `json:"Name"`
	NumberElected      int              `json:"NumberElected,omitempty"`
	OfficeIDs          []string         `json:"OfficeIds,omitempty"`
	SubUnitsReported   int              `json:"SubUnitsReported,omitempty"`
	TotalSubUnits      int              `json:"TotalSubUnits,omitempty"`
	VoteVariation      string           `json:"VoteVariation,omitempty"` // plurality, n-of-m, ...
	VotesAllowed       int              `json:"VotesAllowed"`
}

// CDFSelection is a CandidateSelection with its counts.
type CDFSelection struct {
	ID           string          `json:"@id"`
	AtType       string          `json:"@type"` // ElectionResults.CandidateSelection
	CandidateIDs []string        `json:"CandidateIds,omitempty"`
	VoteCounts   []CDFVoteCounts `json:"VoteCounts,omitempty"`
}

// CDFVoteCounts is one count of a selection in one GpUnit: VoteCounts.
// Type is a CountItemType: "total", or a Tally VoteType, whose names are
// the schema's ("other" with OtherType "unspecified").
type CDFVoteCounts struct {
	AtType    string `json:"@type"` // ElectionResults.VoteCounts
	Count     int64  `json:"Count"`
	GpUnitID  string `json:"GpUnitId"`
	OtherType string `json:"OtherType,omitempty"`
	Type      string `json:"Type"`
}

// CDFBallotCounts is the number of ballots cast in one GpUnit: BallotCounts.
type CDFBallotCounts struct {
	AtType      string `json:"@type"` // ElectionResults.BallotCounts
	BallotsCast int64  `json:"BallotsCast"`
	GpUnitID    string `json:"GpUnitId"`
	Type        string `json:"Type"` // CountItemType; "total"
}

// CDFBallotStyle is a BallotStyle: the contests, in ballot order, of the
// precincts it lists.
type CDFBallotStyle struct {
	AtType         string              `json:"@type"` // ElectionResults.BallotStyle
	GpUnitIDs      []string            `json:"GpUnitIds"`
	OrderedContent []CDFOrderedContest `json:"OrderedContent,omitempty"`
}

// CDFOrderedContest is an OrderedContest of a ballot style. ImportCDF
// skips OrderedHeader items.
type CDFOrderedContest struct {
	AtType    string `json:"@type"` // ElectionResults.OrderedContest
	ContestID string `json:"ContestId,omitempty"`
}

// CDFCountStatus is a CountStatus: how far the count of a contest is.
type CDFCountStatus struct {
	AtType string `json:"@type"`  // ElectionResults.CountStatus
	Status string `json:"Status"` // CountItemStatus: completed, in-process, not-processed
	Type   string `json:"Type"`   // CountItemType; "total"
}

// CDFExternalIdentifier is an ExternalIdentifier.
type CDFExternalIdentifier struct {
	AtType    string `json:"@type"` // ElectionResults.ExternalIdentifier
	OtherType string `json:"OtherType,omitempty"`
	Type      string `json:"Type"` // IdentifierType: ocd-id, local-level, other, ...
	Value     string `json:"Value"`
}

// CDFText is an InternationalizedText. Tally writes one English string.
type CDFText struct {
	AtType string              `json:"@type"` // ElectionResults.InternationalizedText
	Text   []CDFLanguageString `json:"Text"`
}

// CDFLanguageString is one language's text of a CDFText.
type CDFLanguageString struct {
	AtType   string `json:"@type"` // ElectionResults.LanguageString
	Content  string `json:"Content"`
	Language string `json:"Language"`
}

func cdfText(s string) *CDFText {
	return &CDFText{AtType: cdfIntlText, Text: []CDFLanguageString{{AtType: cdfLanguageString, Content: s, Language: "en"}}}
}

// String returns the English text of t, or its first text when it has no
// English one; "" for a nil t.
func (t *CDFText) String() string {
	if t == nil || len(t.Text) == 0 {
		return ""
	}
	for _, l := range t.Text {
		if l.Language == "en" || strings.HasPrefix(l.Language, "en-") {
			return l.Content
		}
	}
	return t.Text[0].Content
}

// CDFOptions says how Totals.CDF writes an ElectionReport.
type CDFOptions struct {
	// Issuer names the authority issuing the report; required.
	Issuer string
	// IssuerAbbreviation abbreviates Issuer; "" means Issuer.
	IssuerAbbreviation string
	// Generated is when the report is generated (GeneratedDate), written in
	// UTC to the second; required, so that the same totals and options
	// always give the same bytes.
	Generated time.Time
	// Status is the results status; "" derives it from the totals:
	// pre-election when nothing is reported, unofficial-complete when every
	// precinct of every contest has a complete report, else
	// unofficial-partial.
	Status CDFStatus
	// Format is the detail level; "" means CDFPrecinctLevel.
	Format CDFFormat
	// VendorApplicationID names the application; "" means "Tally".
	VendorApplicationID string
}

// CDF exports the election of t and its totals as a NIST SP 1500-100 v2
// ElectionReport: every state, county, region and precinct as GpUnits;
// parties, offices, persons, candidates and candidate contests; each
// candidate's counts (total, and per vote type where reported) from the
// latest report of each precinct, and summed at the contest's election
// district; and the ballots cast where reported. The same totals and
// options give the same JSON bytes. Bad options have code EINVALID.
func (t *Totals) CDF(opts CDFOptions) (*CDFElectionReport, error) {
	if strings.TrimSpace(opts.Issuer) == "" {
		return nil, Errorf(EINVALID, "cdf: issuer: required")
	}
	if opts.Generated.IsZero() {
		return nil, Errorf(EINVALID, "cdf: generated: required")
	}
	if opts.IssuerAbbreviation == "" {
		opts.IssuerAbbreviation = opts.Issuer
	}
	if opts.VendorApplicationID == "" {
		opts.VendorApplicationID = "Tally"
	}
	switch opts.Format {
	case "":
		opts.Format = CDFPrecinctLevel
	case CDFPrecinctLevel, CDFSummaryContest:
	default:
		return nil, Errorf(EINVALID, "cdf: format: %q is not a report detail level; want %s or %s", opts.Format, CDFPrecinctLevel, CDFSummaryContest)
	}
	if opts.Status == "" {
		opts.Status = t.cdfStatus()
	} else if !opts.Status.valid() {
		return nil, Errorf(EINVALID, "cdf: status: %q is not a results status", opts.Status)
	}

	e := t.e
	u := newCDFUnits(e)
	rep := &CDFElectionReport{
		AtType:              cdfElectionReport,
		Format:              opts.Format,
		GeneratedDate:       opts.Generated.UTC().Format("2006-01-02T15:04:05Z"),
		GpUnit:              u.units,
		IsTest:              e.Test,
		Issuer:              opts.Issuer,
		IssuerAbbreviation:  opts.IssuerAbbreviation,
		SequenceStart:       1,
		SequenceEnd:         1,
		Status:              opts.Status,
		VendorApplicationID: opts.VendorApplicationID,
	}

	// Parties, offices and persons: sorted by name or id, ids made unique.
	partyID := map[string]string{}
	officeID := map[string]string{}
	personName := map[CandidateID]string{}
	for _, c := range e.Contests {
		if c.Office != "" {
			officeID[c.Office] = ""
		}
		for _, cd := range c.Candidates {
			if cd.Party != "" {
				partyID[cd.Party] = ""
			}
			if _, ok := personName[cd.ID]; !ok {
				personName[cd.ID] = cd.Name
			}
		}
	}
	ids := cdfIDs{}
	for _, name := range sortedKeys(partyID) {
		partyID[name] = ids.alloc(cdfPartyPrefix + Slug(name))
		rep.Party = append(rep.Party, CDFParty{ID: partyID[name], AtType: cdfParty, Name: cdfText(name)})
	}
	for _, name := range sortedKeys(officeID) {
		officeID[name] = ids.alloc(cdfOfficePrefix + Slug(name))
		rep.Office = append(rep.Office, CDFOffice{ID: officeID[name], AtType: cdfOffice, Name: cdfText(name)})
	}
	for _, id := range sortedKeys(personName) {
		rep.Person = append(rep.Person, CDFPerson{ID: cdfPersonPrefix + string(id), AtType: cdfPerson, FullName: cdfText(personName[id])})
	}

	el := CDFElection{
		AtType:             cdfElection,
		BallotStyle:        cdfBallotStyles(e),
		ElectionScopeID:    u.scope,
		StartDate:          e.Date,
		EndDate:            e.Date,
		ExternalIdentifier: []CDFExternalIdentifier{{AtType: cdfExternalID, Type: "other", OtherType: cdfTallyIDType, Value: e.ID}},
		Name:               cdfText(e.Name),
		Type:               "general", // Tally runs general elections
	}
	for _, c := range e.Contests {
		district := u.scope
		if c.State != "" {
			district = u.state[c.State]
		}
		con := CDFContest{
			ID: cdfContestPrefix + string(c.ID), AtType: cdfCandidateContest, ElectionDistrictID: district,
			Name: c.Name, NumberElected: c.Seats, VotesAllowed: c.Seats, VoteVariation: "plurality",
		}
		if c.Seats > 1 {
			con.VoteVariation = "n-of-m"
		}
		if c.Office != "" {
			con.OfficeIDs = []string{officeID[c.Office]}
		}
		precincts := e.ContestPrecincts(c.ID)
		ct := t.contests[c.ID]
		con.TotalSubUnits = len(precincts)
		status := "not-processed"
		if ct != nil {
			con.SubUnitsReported = ct.Reporting
			status = "in-process"
			if ct.Complete == len(precincts) {
				status = "completed"
			}
		}
		con.CountStatus = []CDFCountStatus{{AtType: cdfCountStatus, Status: status, Type: "total"}}
		for _, cd := range c.Candidates {
			candID := cdfCandPrefix + string(c.ID) + "." + string(cd.ID)
			el.Candidate = append(el.Candidate, CDFCandidate{
				ID: candID, AtType: cdfCandidate, BallotName: cdfText(cd.Name),
				PartyID: partyID[cd.Party], PersonID: cdfPersonPrefix + string(cd.ID),
			})
			sel := CDFSelection{ID: cdfSelPrefix + string(c.ID) + "." + string(cd.ID), AtType: cdfCandidateSel, CandidateIDs: []string{candID}}
			if ct != nil {
				sel.VoteCounts = appendCDFCounts(sel.VoteCounts, district, cd.ID, ct.Votes, ct.VoteTypes)
			}
			if opts.Format == CDFPrecinctLevel {
				for _, p := range precincts {
					if cell := t.Cell(p, c.ID); cell != nil {
						sel.VoteCounts = appendCDFCounts(sel.VoteCounts, cdfPrecinctPrefix+string(p), cd.ID, cell.Votes, cell.VoteTypes)
					}
				}
			}
			con.ContestSelection = append(con.ContestSelection, sel)
		}
		el.Contest = append(el.Contest, con)
	}
	el.BallotCounts = t.cdfBallotCounts(u, opts.Format)
	rep.Election = []CDFElection{el}
	return rep, nil
}

// cdfStatus derives a report's status from what has been reported.
func (t *Totals) cdfStatus() CDFStatus {
	if t.ncells == 0 {
		return CDFPreElection
	}
	for _, c := range t.e.Contests {
		ct := t.contests[c.ID]
		if n := len(t.e.ContestPrecincts(c.ID)); n > 0 && (ct == nil || ct.Complete < n) {
			return CDFUnofficialPartial
		}
	}
	return CDFUnofficialComplete
}

// appendCDFCounts appends candidate cand's total and its count per vote
// type (sorted) in GpUnit unit.
func appendCDFCounts(vcs []CDFVoteCounts, unit string, cand CandidateID, votes map[CandidateID]int64, byType map[VoteType]map[CandidateID]int64) []CDFVoteCounts {
	vcs = append(vcs, CDFVoteCounts{AtType: cdfVoteCounts, Count: votes[cand], GpUnitID: unit, Type: "total"})
	for _, vt := range sortedVoteTypes(byType) {
		vc := CDFVoteCounts{AtType: cdfVoteCounts, Count: byType[vt][cand], GpUnitID: unit, Type: string(vt)}
		if vt == VoteOther {
			vc.OtherType = "unspecified"
		}
		vcs = append(vcs, vc)
	}
	return vcs
}

// cdfBallotCounts gives the ballots cast in each precinct that reported
// them, and their sum per state when every reported precinct of the state
// did (a partial sum would read as fewer ballots than votes). A precinct's
// ballots cast is the most any of its contests reports: every ballot of a
// precinct carries all its contests, and a contest reporting fewer has not
// counted them all yet.
func (t *Totals) cdfBallotCounts(u *cdfUnits, format CDFFormat) []CDFBallotCounts {
	reported := map[PrecinctID]bool{}
	byPrecinct := map[PrecinctID]int64{}
	t.eachCell(func(p PrecinctID, _ ContestID, cl *cell) {
		reported[p] = true
		if cl.ballotsCast > byPrecinct[p] {
			byPrecinct[p] = cl.ballotsCast
		}
	})
	if len(byPrecinct) == 0 {
		return nil
	}
	byState := map[string]int64{}
	unknown := map[string]bool{} // states with a reported precinct without ballots
	var precincts []CDFBallotCounts
	for _, p := range t.e.Precincts {
		if !reported[p.ID] {
			continue
		}
		n, ok := byPrecinct[p.ID]
		if !ok {
			unknown[p.State] = true
			continue
		}
		byState[p.State] += n
		precincts = append(precincts, CDFBallotCounts{AtType: cdfBallotCounts, BallotsCast: n, GpUnitID: cdfPrecinctPrefix + string(p.ID), Type: "total"})
	}
	var out []CDFBallotCounts
	for _, st := range sortedKeys(byState) {
		if st != "" && !unknown[st] {
			out = append(out, CDFBallotCounts{AtType: cdfBallotCounts, BallotsCast: byState[st], GpUnitID: u.state[st], Type: "total"})
		}
	}
	if format == CDFPrecinctLevel {
		out = append(out, precincts...)
	}
	return out
}

// cdfBallotStyles gives one ballot style per distinct list of contests,
// in the order of the first precinct with it.
func cdfBallotStyles(e *Election) []CDFBallotStyle {
	var styles []CDFBallotStyle
	index := map[string]int{}
	for _, p := range e.Precincts {
		if len(p.Contests) == 0 {
			continue
		}
		var key strings.Builder
		for _, c := range p.Contests {
			key.WriteString(string(c))
			key.WriteByte(',')
		}
		i, ok := index[key.String()]
		if !ok {
			i = len(styles)
			index[key.String()] = i
			bs := CDFBallotStyle{AtType: cdfBallotStyle}
			for _, c := range p.Contests {
				bs.OrderedContent = append(bs.OrderedContent, CDFOrderedContest{AtType: cdfOrderedContest, ContestID: cdfContestPrefix + string(c)})
			}
			styles = append(styles, bs)
		}
		styles[i].GpUnitIDs = append(styles[i].GpUnitIDs, cdfPrecinctPrefix+string(p.ID))
	}
	return styles
}

// cdfUnits is the GpUnits of an election and the ids of its states.
type cdfUnits struct {
	units []CDFGpUnit
	scope string            // the election's scope: the country or the one state
	state map[string]string // state code -> @id
}

func newCDFUnits(e *Election) *cdfUnits {
	type countyKey struct{ state, county string }
	stateSet := map[string]bool{}
	stateless := false
	note := func(st string) {
		if st == "" {
			stateless = true
		} else {
			stateSet[st] = true
		}
	}
	counties := map[countyKey]string{}
	for _, r := range e.Regions {
		note(r.State)
	}
	for _, c := range e.Contests {
		note(c.State)
	}
	for _, p := range e.Precincts {
		note(p.State)
		if p.County != "" {
			counties[countyKey{p.State, p.County}] = ""
		}
	}
	states := sortedKeys(stateSet)
	u := &cdfUnits{state: map[string]string{}}
	var root *CDFGpUnit
	if len(states) != 1 || stateless {
		root = &CDFGpUnit{ID: cdfCountryID, AtType: cdfReportingUnit, Type: "country"}
		u.scope = root.ID
	}
	stateUnits := make([]CDFGpUnit, len(states))
	for i, st := range states {
		su := CDFGpUnit{ID: cdfStatePrefix + st, AtType: cdfReportingUnit, Type: "state", Name: cdfText(stateName(st))}
		if _, ok := stateNames[st]; ok {
			su.ExternalIdentifier = []CDFExternalIdentifier{{AtType: cdfExternalID, Type: "ocd-id", Value: "ocd-division/country:us/state:" + strings.ToLower(st)}}
		}
		stateUnits[i] = su
		u.state[st] = su.ID
		if root != nil {
			root.ComposingGpUnitIDs = append(root.ComposingGpUnitIDs, su.ID)
		} else {
			u.scope = su.ID
		}
	}
	// parent adds child to the state st, or the root when st is "".
	parent := func(st, child string) {
		if st == "" {
			root.ComposingGpUnitIDs = append(root.ComposingGpUnitIDs, child)
			return
		}
		for i := range stateUnits {
			if states[i] == st {
				stateUnits[i].ComposingGpUnitIDs = append(stateUnits[i].ComposingGpUnitIDs, child)
				return
			}
		}
	}
	keys := make([]countyKey, 0, len(counties))
	for k := range counties {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].state != keys[j].state {
			return keys[i].state < keys[j].state
		}
		return keys[i].county < keys[j].county
	})
	ids := cdfIDs{}
	countyUnits := make([]CDFGpUnit, len(keys))
	countyIndex := map[countyKey]int{}
	for i, k := range keys {
		base := cdfCountyPrefix + Slug(k.county)
		if k.state != "" {
			base = cdfCountyPrefix + Slug(k.state) + "-" + Slug(k.county)
		}
		countyUnits[i] = CDFGpUnit{ID: ids.alloc(base), AtType: cdfReportingUnit, Type: "county", Name: cdfText(k.county)}
		countyIndex[k] = i
		parent(k.state, countyUnits[i].ID)
	}
	regionUnits := make([]CDFGpUnit, len(e.Regions))
	regionIndex := map[RegionID]int{}
	for i, r := range e.Regions {
		regionUnits[i] = CDFGpUnit{ID: cdfRegionPrefix + string(r.ID), AtType: cdfReportingUnit, Type: "other", OtherType: cdfRegionType, Name: cdfText(r.Name)}
		regionIndex[r.ID] = i
		parent(r.State, regionUnits[i].ID)
	}
	precinctUnits := make([]CDFGpUnit, len(e.Precincts))
	for i, p := range e.Precincts {
		pu := CDFGpUnit{ID: cdfPrecinctPrefix + string(p.ID), AtType: cdfReportingUnit, Type: "precinct", Name: cdfText(p.Name), VotersRegistered: p.Registered}
		if p.SourceID != "" {
			pu.ExternalIdentifier = []CDFExternalIdentifier{{AtType: cdfExternalID, Type: "local-level", Value: p.SourceID}}
		}
		precinctUnits[i] = pu
		if p.County != "" {
			ci := countyIndex[countyKey{p.State, p.County}]
			countyUnits[ci].ComposingGpUnitIDs = append(countyUnits[ci].ComposingGpUnitIDs, pu.ID)
		} else {
			parent(p.State, pu.ID)
		}
		if ri, ok := regionIndex[p.Region]; ok {
			regionUnits[ri].ComposingGpUnitIDs = append(regionUnits[ri].ComposingGpUnitIDs, pu.ID)
		}
	}
	if root != nil {
		u.units = append(u.units, *root)
	}
	u.units = append(u.units, stateUnits...)
	u.units = append(u.units, countyUnits...)
	u.units = append(u.units, regionUnits...)
	u.units = append(u.units, precinctUnits...)
	return u
}

// cdfIDs makes @ids unique: a base already given gets "-2", "-3", ...
type cdfIDs map[string]bool

func (ids cdfIDs) alloc(base string) string {
	id := base
	for n := 2; ids[id]; n++ {
		id = fmt.Sprintf("%s-%d", base, n)
	}
	ids[id] = true
	return id
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ImportCDF rebuilds an election definition from a CDF ElectionReport in
// JSON (NIST SP 1500-100 v2), such as Totals.CDF writes, and validates it.
// It reads the one Election of the report: regions (ReportingUnits of Type
// "other" and OtherType "region") and precincts in GpUnit order, each
// precinct's county, state and region from the units that compose it, its
// contests from the ballot styles, and the candidate contests with their
// candidates, parties, offices, states and seats. Tally ids are the @ids
// without the prefixes Totals.CDF gives them. Counts are not read. Fields
// Tally does not model are ignored; other contest, selection, GpUnit and
// party kinds are refused. Errors have code EINVALID and name the field,
// as in `GpUnit[12].ComposingGpUnitIds[0]: unknown id "x"`.
func ImportCDF(b []byte) (*Election, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var rep CDFElectionReport
	if err := dec.Decode(&rep); err != nil {
		return nil, Errorf(EINVALID, "cdf: %s", jsonErrorText(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, Errorf(EINVALID, "cdf: unexpected data after the ElectionReport object")
	}
	if rep.AtType != cdfElectionReport {
		return nil, Errorf(EINVALID, "cdf: @type: %q, want %q", rep.AtType, cdfElectionReport)
	}
	if len(rep.Election) != 1 {
		return nil, Errorf(EINVALID, "cdf: Election: %d elections, want exactly 1", len(rep.Election))
	}
	el := &rep.Election[0]
	if el.AtType != cdfElection {
		return nil, Errorf(EINVALID, "cdf: Election[0].@type: %q, want %q", el.AtType, cdfElection)
	}
	e := &Election{Name: el.Name.String(), Date: el.StartDate, Test: rep.IsTest}
	for _, x := range el.ExternalIdentifier {
		if x.Type == "other" && x.OtherType == cdfTallyIDType {
			e.ID = x.Value
			break
		}
	}
	if e.ID == "" {
		e.ID = Slug(e.Name)
	}

	g, err := readCDFUnits(rep.GpUnit)
	if err != nil {
		return nil, err
	}
	precinctIdx := map[string]int{}
	for i := range rep.GpUnit {
		gu := &rep.GpUnit[i]
		switch {
		case g.isRegion(gu):
			id := strings.TrimPrefix(gu.ID, cdfRegionPrefix)
			if err := ValidToken(id); err != nil {
				return nil, Errorf(EINVALID, "cdf: GpUnit[%d].@id: region id %s", i, err)
			}
			e.Regions = append(e.Regions, Region{ID: RegionID(id), Name: gu.Name.String(), State: g.stateOf(gu.ID)})
		case gu.AtType == cdfReportingUnit && gu.Type == "precinct":
			id := strings.TrimPrefix(gu.ID, cdfPrecinctPrefix)
			if err := ValidToken(id); err != nil {
				return nil, Errorf(EINVALID, "cdf: GpUnit[%d].@id: precinct id %s", i, err)
			}
			p := Precinct{ID: PrecinctID(id), Name: gu.Name.String(), Registered: gu.VotersRegistered}
			if c, ok := g.parent[gu.ID]["county"]; ok {
				p.County = g.unit(c).Name.String()
				p.State = g.stateOf(c)
			} else {
				p.State = g.stateOf(gu.ID)
			}
			r, ok := g.parent[gu.ID][cdfRegionType]
			if !ok {
				return nil, Errorf(EINVALID, "cdf: GpUnit[%d]: precinct %q is in no region (no ReportingUnit of OtherType %q lists it)", i, gu.ID, cdfRegionType)
			}
			p.Region = RegionID(strings.TrimPrefix(r, cdfRegionPrefix))
			for _, x := range gu.ExternalIdentifier {
				if x.Type == "local-level" {
					p.SourceID = x.Value
					break
				}
			}
			precinctIdx[gu.ID] = len(e.Precincts)
			e.Precincts = append(e.Precincts, p)
		}
	}
	// A region's counties are those of its precincts: the CDF has no other
	// record of them.
	counties := map[RegionID]map[string]bool{}
	for _, p := range e.Precincts {
		if p.County == "" {
			continue
		}
		if counties[p.Region] == nil {
			counties[p.Region] = map[string]bool{}
		}
		counties[p.Region][p.County] = true
	}
	for i := range e.Regions {
		e.Regions[i].Counties = sortedKeys(counties[e.Regions[i].ID])
	}

	party := map[string]string{}
	for i, p := range rep.Party {
		if p.AtType != cdfParty && p.AtType != cdfCoalition {
			return nil, Errorf(EINVALID, "cdf: Party[%d].@type: %q, want %q", i, p.AtType, cdfParty)
		}
		if _, dup := party[p.ID]; dup {
			return nil, Errorf(EINVALID, "cdf: Party[%d].@id: duplicate id %q", i, p.ID)
		}
		party[p.ID] = p.Name.String()
	}
	office := map[string]string{}
	for i, o := range rep.Office {
		if o.AtType != cdfOffice {
			return nil, Errorf(EINVALID, "cdf: Office[%d].@type: %q, want %q", i, o.AtType, cdfOffice)
		}
		if _, dup := office[o.ID]; dup {
			return nil, Errorf(EINVALID, "cdf: Office[%d].@id: duplicate id %q", i, o.ID)
		}
		office[o.ID] = o.Name.String()
	}
	cands := map[string]*CDFCandidate{}
	for i := range el.Candidate {
		c := &el.Candidate[i]
		if c.AtType != cdfCandidate {
			return nil, Errorf(EINVALID, "cdf: Election[0].Candidate[%d].@type: %q, want %q", i, c.AtType, cdfCandidate)
		}
		if _, dup := cands[c.ID]; dup {
			return nil, Errorf(EINVALID, "cdf: Election[0].Candidate[%d].@id: duplicate id %q", i, c.ID)
		}
		if c.PartyID != "" {
			if _, ok := party[c.PartyID]; !ok {
				return nil, Errorf(EINVALID, "cdf: Election[0].Candidate[%d].PartyId: unknown id %q", i, c.PartyID)
			}
		}
		cands[c.ID] = c
	}

	contestID := map[string]ContestID{}
	for i := range el.Contest {
		con := &el.Contest[i]
		path := fmt.Sprintf("Election[0].Contest[%d]", i)
		if con.AtType != cdfCandidateContest {
			return nil, Errorf(EINVALID, "cdf: %s.@type: %q is not supported; want %q", path, con.AtType, cdfCandidateContest)
		}
		id := strings.TrimPrefix(con.ID, cdfContestPrefix)
		if err := ValidToken(id); err != nil {
			return nil, Errorf(EINVALID, "cdf: %s.@id: contest id %s", path, err)
		}
		if _, dup := contestID[con.ID]; dup {
			return nil, Errorf(EINVALID, "cdf: %s.@id: duplicate id %q", path, con.ID)
		}
		contestID[con.ID] = ContestID(id)
		c := Contest{ID: ContestID(id), Name: con.Name, Seats: con.NumberElected}
		if c.Seats == 0 {
			c.Seats = con.VotesAllowed
		}
		if con.ElectionDistrictID != "" {
			d := g.unit(con.ElectionDistrictID)
			if d == nil {
				return nil, Errorf(EINVALID, "cdf: %s.ElectionDistrictId: unknown id %q", path, con.ElectionDistrictID)
			}
			if d.Type == "state" {
				c.State = g.stateCode(d)
			}
		}
		switch len(con.OfficeIDs) {
		case 0:
		case 1:
			name, ok := office[con.OfficeIDs[0]]
			if !ok {
				return nil, Errorf(EINVALID, "cdf: %s.OfficeIds[0]: unknown id %q", path, con.OfficeIDs[0])
			}
			c.Office = name
		default:
			return nil, Errorf(EINVALID, "cdf: %s.OfficeIds: %d offices, Tally holds at most 1", path, len(con.OfficeIDs))
		}
		for j, sel := range con.ContestSelection {
			spath := fmt.Sprintf("%s.ContestSelection[%d]", path, j)
			if sel.AtType != cdfCandidateSel {
				return nil, Errorf(EINVALID, "cdf: %s.@type: %q is not supported; want %q", spath, sel.AtType, cdfCandidateSel)
			}
			if len(sel.CandidateIDs) == 0 {
				return nil, Errorf(EINVALID, "cdf: %s.CandidateIds: at least one candidate required", spath)
			}
			// A ticket (president and running mate) is one Tally
			// candidate, named after its first candidate.
			cd := cands[sel.CandidateIDs[0]]
			if cd == nil {
				return nil, Errorf(EINVALID, "cdf: %s.CandidateIds[0]: unknown id %q", spath, sel.CandidateIDs[0])
			}
			cid := strings.TrimPrefix(cd.ID, cdfCandPrefix+id+".")
			if err := ValidToken(cid); err != nil {
				return nil, Errorf(EINVALID, "cdf: %s.CandidateIds[0]: candidate id %s", spath, err)
			}
			c.Candidates = append(c.Candidates, Candidate{ID: CandidateID(cid), Name: cd.BallotName.String(), Party: party[cd.PartyID]})
		}
		e.Contests = append(e.Contests, c)
	}

	styled := map[string]bool{}
	for i, bs := range el.BallotStyle {
		path := fmt.Sprintf("Election[0].BallotStyle[%d]", i)
		var contests []ContestID
		for j, oc := range bs.OrderedContent {
			if oc.AtType != cdfOrderedContest {
				continue // an OrderedHeader
			}
			c, ok := contestID[oc.ContestID]
			if !ok {
				return nil, Errorf(EINVALID, "cdf: %s.OrderedContent[%d].ContestId: unknown id %q", path, j, oc.ContestID)
			}
			contests = append(contests, c)
		}
		for j, id := range bs.GpUnitIDs {
			if g.unit(id) == nil {
				return nil, Errorf(EINVALID, "cdf: %s.GpUnitIds[%d]: unknown id %q", path, j, id)
			}
			pi, ok := precinctIdx[id]
			if !ok {
				continue // not a precinct: Tally's ballots are per precinct
			}
			if styled[id] {
				return nil, Errorf(EINVALID, "cdf: %s.GpUnitIds[%d]: precinct %q is in another ballot style too", path, j, id)
			}
			styled[id] = true
			e.Precincts[pi].Contests = append([]ContestID(nil), contests...)
		}
	}
	if err := e.Validate(); err != nil {
		return nil, Errorf(EINVALID, "cdf: %s", ErrorMessage(err))
	}
	return e, nil
}

// cdfGraph indexes the GpUnits of a report and who composes whom.
type cdfGraph struct {
	units  []CDFGpUnit
	byID   map[string]int
	parent map[string]map[string]string // child @id -> parent kind -> parent @id
}

func (g *cdfGraph) unit(id string) *CDFGpUnit {
	i, ok := g.byID[id]
	if !ok {
		return nil
	}
	return &g.units[i]
}

func (g *cdfGraph) isRegion(u *CDFGpUnit) bool {
	return u.AtType == cdfReportingUnit && u.Type == "other" && u.OtherType == cdfRegionType
}

// stateOf returns the code of the state composing unit id, or "".
func (g *cdfGraph) stateOf(id string) string {
	s, ok := g.parent[id]["state"]
	if !ok {
		return ""
	}
	return g.stateCode(g.unit(s))
}

// stateCode returns a state unit's code: its @id without the prefix Tally
// gives it, else the code of its name ("New Hampshire" is NH), else its
// name, else its @id.
func (g *cdfGraph) stateCode(u *CDFGpUnit) string {
	if code, ok := strings.CutPrefix(u.ID, cdfStatePrefix); ok && code != "" {
		return code
	}
	name := u.Name.String()
	for code, n := range stateNames {
		if strings.EqualFold(n, name) {
			return code
		}
	}
	if name != "" {
		return name
	}
	return u.ID
}

// readCDFUnits indexes the GpUnits and their composition: each unit is in
// at most one state, county and region.
func readCDFUnits(units []CDFGpUnit) (*cdfGraph, error) {
	g := &cdfGraph{units: units, byID: make(map[string]int, len(units)), parent: map[string]map[string]string{}}
	for i, u := range units {
		if u.AtType != cdfReportingUnit && u.AtType != cdfReportingDevice {
			return nil, Errorf(EINVALID, "cdf: GpUnit[%d].@type: %q, want %q", i, u.AtType, cdfReportingUnit)
		}
		if u.ID == "" {
			return nil, Errorf(EINVALID, "cdf: GpUnit[%d].@id: required", i)
		}
		if _, dup := g.byID[u.ID]; dup {
			return nil, Errorf(EINVALID, "cdf: GpUnit[%d].@id: duplicate id %q", i, u.ID)
		}
		g.byID[u.ID] = i
	}
	for i := range units {
		u := &units[i]
		kind := ""
		switch {
		case u.AtType != cdfReportingUnit:
		case u.Type == "state", u.Type == "county":
			kind = u.Type
		case g.isRegion(u):
			kind = cdfRegionType
		}
		for j, child := range u.ComposingGpUnitIDs {
			if _, ok := g.byID[child]; !ok {
				return nil, Errorf(EINVALID, "cdf: GpUnit[%d].ComposingGpUnitIds[%d]: unknown id %q", i, j, child)
			}
			if kind == "" {
				continue
			}
			if g.parent[child] == nil {
				g.parent[child] = map[string]string{}
			}
			if other, ok := g.parent[child][kind]; ok && other != u.ID {
				return nil, Errorf(EINVALID, "cdf: GpUnit[%d].ComposingGpUnitIds[%d]: %q is already in %s %q", i, j, child, kind, other)
			}
			g.parent[child][kind] = u.ID
		}
	}
	return g, nil
}
