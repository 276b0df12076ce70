package tally_test

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tallyvote/tally"
)

// cdfSchemaPath is NIST's schema of SP 1500-100 v2, copied with its source
// named in testdata/nist/README.md.
const cdfSchemaPath = "testdata/nist/NIST_V2_election_results_reporting.json"

var cdfOpts = tally.CDFOptions{
	Issuer:             "Secretary of State of Testland",
	IssuerAbbreviation: "XA",
	Generated:          time.Date(2020, 11, 4, 6, 30, 15, 123, time.FixedZone("EST", -5*3600)),
}

// MustCDFSchema compiles the NIST v2 JSON schema, asserting formats.
func MustCDFSchema(tb testing.TB) *jsonschema.Schema {
	tb.Helper()
	f, err := os.Open(cdfSchemaPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		tb.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("nist-v2.json", doc); err != nil {
		tb.Fatal(err)
	}
	sch, err := c.Compile("nist-v2.json")
	if err != nil {
		tb.Fatal(err)
	}
	return sch
}

// MustBuildNH builds the 2020 election of the bundled New Hampshire data.
func MustBuildNH(tb testing.TB) (*tally.Election, tally.Counts) {
	tb.Helper()
	f, err := os.Open("cmd/tally/data/nh_president_precinct.csv")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	rows, err := tally.ReadResults(f)
	if err != nil {
		tb.Fatal(err)
	}
	e, counts, err := tally.BuildElection(rows, tally.BuildOptions{Year: 2020})
	if err != nil {
		tb.Fatal(err)
	}
	return e, counts
}

// MustApplyCounts applies one report per precinct and contest of counts,
// in election order, or reversed. With split n > 0, the votes of every
// n-th precinct (in election order) come by vote type (a third absentee,
// one vote other, the rest on election day) with its ballots cast. skip
// names precincts left out.
func MustApplyCounts(tb testing.TB, e *tally.Election, counts tally.Counts, reverse bool, split int, skip ...tally.PrecinctID) *tally.Totals {
	tb.Helper()
	tt := tally.NewTotals(e)
	seq := map[tally.RegionID]uint64{}
	ps := append([]tally.Precinct(nil), e.Precincts...)
	splitAt := map[tally.PrecinctID]bool{}
	for i, p := range ps {
		splitAt[p.ID] = split > 0 && i%split == 0
	}
	if reverse {
		for i, j := 0, len(ps)-1; i < j; i, j = i+1, j-1 {
			ps[i], ps[j] = ps[j], ps[i]
		}
	}
	at := time.Date(2020, 11, 3, 21, 0, 0, 0, time.UTC)
	for _, p := range ps {
		if contains(skip, p.ID) {
			continue
		}
		for _, c := range p.Contests {
			r := &tally.Report{
				ID: tally.EventID(string(p.Region) + "-" + string(p.ID) + "-" + string(c)), Region: p.Region,
				Precinct: p.ID, Contest: c, Votes: counts[p.ID][c], Complete: true, ReportedAt: at,
			}
			if splitAt[p.ID] {
				r.VoteTypes = map[tally.VoteType]map[tally.CandidateID]int64{}
				var ballots int64
				for cand, n := range r.Votes {
					abs, other := n/3, min(n, 1)
					add(r.VoteTypes, tally.VoteAbsentee, cand, abs)
					add(r.VoteTypes, tally.VoteOther, cand, other)
					add(r.VoteTypes, tally.VoteElectionDay, cand, n-abs-other)
					ballots += n
				}
				r.BallotsCast = &ballots
			}
			if err := r.Validate(e); err != nil {
				tb.Fatal(err)
			}
			seq[p.Region]++
			if !tt.Apply(seq[p.Region], r) {
				tb.Fatalf("report %s not applied", r.ID)
			}
		}
	}
	return tt
}

func add(m map[tally.VoteType]map[tally.CandidateID]int64, vt tally.VoteType, c tally.CandidateID, n int64) {
	if m[vt] == nil {
		m[vt] = map[tally.CandidateID]int64{}
	}
	m[vt][c] = n
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// MustCDF exports tt and returns the report and its JSON.
func MustCDF(tb testing.TB, tt *tally.Totals, opts tally.CDFOptions) (*tally.CDFElectionReport, []byte) {
	tb.Helper()
	rep, err := tt.CDF(opts)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		tb.Fatal(err)
	}
	return rep, b
}

// cdfLoadedElection has what the built elections lack: objects with no
// state, a precinct with no county, registered voters, two seats, a
// contest without an office, a candidate in two contests, a test flag.
const cdfLoadedElection = `{"id":"test-2024","name":"Test election","date":"2024-11-05","test":true,
"regions":[{"id":"r2","name":"Region two","state":"XC","counties":["Dale"]},{"id":"r1","name":"Region one","counties":["Dale"]}],
"contests":[
 {"id":"council","name":"Council","office":"","seats":2,"candidates":[{"id":"ann","name":"Ann A."},{"id":"bob","name":"Bob B.","party":"Green"}]},
 {"id":"mayor","name":"Mayor","office":"Mayor","state":"XC","seats":1,"candidates":[{"id":"bob","name":"Robert B.","party":"Greens"},{"id":"cy","name":"Cy C.","party":"Green"}]}],
"precincts":[
 {"id":"p1","name":"One","county":"","region":"r1","registered":900,"contests":["council"]},
 {"id":"p2","name":"Two","county":"Dale","state":"XC","region":"r2","contests":["mayor","council"],"source_id":"0002"},
 {"id":"p3","name":"Three","county":"Dale","region":"r2","contests":["council","mayor"]},
 {"id":"p4","name":"Four","county":"Dale","state":"XC","region":"r1","contests":["mayor","council"]}]}`

func mustLoad(tb testing.TB, s string) *tally.Election {
	tb.Helper()
	e, err := tally.LoadElection(strings.NewReader(s))
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func TestCDFSchema(t *testing.T) {
	sch := MustCDFSchema(t)
	small, smallCounts := MustBuildSmall(t)
	nh, nhCounts := MustBuildNH(t)
	loaded := mustLoad(t, cdfLoadedElection)
	certified := cdfOpts
	certified.Status = tally.CDFCertified
	summary := cdfOpts
	summary.Format = tally.CDFSummaryContest
	tests := []struct {
		name string
		tt   *tally.Totals
		opts tally.CDFOptions
	}{
		{"SmallPreElection", tally.NewTotals(small), cdfOpts},
		{"SmallPartialWithVoteTypes", MustApplyCounts(t, small, smallCounts, false, 2, "xa-north-2"), cdfOpts},
		{"SmallSummary", MustApplyCounts(t, small, smallCounts, false, 2), summary},
		{"NH2020", MustApplyCounts(t, nh, nhCounts, false, 0), cdfOpts},
		{"NH2020VoteTypesCertified", MustApplyCounts(t, nh, nhCounts, false, 2), certified},
		{"LoadedNoStateNoCounty", tally.NewTotals(loaded), cdfOpts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, b := MustCDF(t, tt.tt, tt.opts)
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(doc); err != nil {
				t.Fatalf("export does not validate against the NIST v2 schema: %v", err)
			}
		})
	}
}

// TestCDFSchemaRejects makes sure the schema check has teeth: a report
// with a bad enum value or a missing required field fails it.
func TestCDFSchemaRejects(t *testing.T) {
	sch := MustCDFSchema(t)
	e, counts := MustBuildSmall(t)
	rep, _ := MustCDF(t, MustApplyCounts(t, e, counts, false, 2), cdfOpts)
	tests := []struct {
		name   string
		mutate func(r *tally.CDFElectionReport)
	}{
		{"Status", func(r *tally.CDFElectionReport) { r.Status = "final" }},
		{"CountItemType", func(r *tally.CDFElectionReport) {
			r.Election[0].Contest[0].ContestSelection[0].VoteCounts[0].Type = "absentee-by-pigeon"
		}},
		{"UnitType", func(r *tally.CDFElectionReport) { r.GpUnit[0].Type = "region" }},
		{"GeneratedDate", func(r *tally.CDFElectionReport) { r.GeneratedDate = "yesterday" }},
		{"AtType", func(r *tally.CDFElectionReport) { r.Party[0].AtType = "ElectionResults.Faction" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cloneCDF(t, rep)
			tt.mutate(r)
			b, _ := json.Marshal(r)
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(doc); err == nil {
				t.Fatal("schema accepted a bad report")
			}
		})
	}
}

func cloneCDF(tb testing.TB, r *tally.CDFElectionReport) *tally.CDFElectionReport {
	tb.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		tb.Fatal(err)
	}
	var c tally.CDFElectionReport
	if err := json.Unmarshal(b, &c); err != nil {
		tb.Fatal(err)
	}
	return &c
}

// TestCDFTotals checks the counts of the export against the totals: per
// candidate, the precinct counts sum to the contest's votes, which the
// contest's district count equals, in total and per vote type.
func TestCDFTotals(t *testing.T) {
	small, smallCounts := MustBuildSmall(t)
	nh, nhCounts := MustBuildNH(t)
	tests := []struct {
		name string
		e    *tally.Election
		tt   *tally.Totals
		// statesKnown: every reported precinct has its ballots cast, so
		// the states' sums are given.
		statesKnown bool
	}{
		{"SmallPartial", small, MustApplyCounts(t, small, smallCounts, false, 2, "xa-north-2"), false},
		{"SmallAllSplit", small, MustApplyCounts(t, small, smallCounts, false, 1, "xa-north-2"), true},
		{"NH2020", nh, MustApplyCounts(t, nh, nhCounts, false, 2), false},
		{"NH2020AllSplit", nh, MustApplyCounts(t, nh, nhCounts, false, 1), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, _ := MustCDF(t, tt.tt, cdfOpts)
			for _, con := range rep.Election[0].Contest {
				id := tally.ContestID(strings.TrimPrefix(con.ID, "contest-"))
				res := tt.tt.ContestResult(id, nil)
				if con.SubUnitsReported != res.Precincts.Reporting || con.TotalSubUnits != res.Precincts.Total {
					t.Errorf("%s: SubUnitsReported/TotalSubUnits = %d/%d, want %d/%d", id, con.SubUnitsReported, con.TotalSubUnits, res.Precincts.Reporting, res.Precincts.Total)
				}
				want := map[tally.CandidateID]int64{}
				for _, cr := range res.Candidates {
					want[cr.ID] = cr.Votes
				}
				var total int64
				for _, sel := range con.ContestSelection {
					cand := tally.CandidateID(strings.TrimPrefix(sel.ID, "sel-"+string(id)+"."))
					precincts := map[string]int64{}
					district := map[string]int64{}
					for _, vc := range sel.VoteCounts {
						if vc.GpUnitID == con.ElectionDistrictID {
							district[vc.Type] += vc.Count
						} else if strings.HasPrefix(vc.GpUnitID, "gpu-precinct-") {
							precincts[vc.Type] += vc.Count
						} else {
							t.Errorf("%s/%s: count in unexpected GpUnit %q", id, cand, vc.GpUnitID)
						}
					}
					if precincts["total"] != want[cand] || district["total"] != want[cand] {
						t.Errorf("%s/%s: precincts sum to %d, district total %d; ContestResult votes %d", id, cand, precincts["total"], district["total"], want[cand])
					}
					for vt, byCand := range res.VoteTypes {
						if precincts[string(vt)] != byCand[cand] || district[string(vt)] != byCand[cand] {
							t.Errorf("%s/%s/%s: precincts sum to %d, district %d; ContestResult %d", id, cand, vt, precincts[string(vt)], district[string(vt)], byCand[cand])
						}
					}
					total += precincts["total"]
				}
				if total != res.TotalVotes || total == 0 {
					t.Errorf("%s: export sums to %d votes, ContestResult.TotalVotes = %d", id, total, res.TotalVotes)
				}
			}
			var ballots, stateBallots int64
			for _, bc := range rep.Election[0].BallotCounts {
				if strings.HasPrefix(bc.GpUnitID, "gpu-precinct-") {
					ballots += bc.BallotsCast
				} else {
					stateBallots += bc.BallotsCast
				}
			}
			var want int64
			for _, c := range tt.e.Contests {
				want += tt.tt.ContestResult(c.ID, nil).BallotsCast // one contest per precinct
			}
			wantStates := int64(0)
			if tt.statesKnown {
				wantStates = want
			}
			if ballots != want || stateBallots != wantStates || want == 0 {
				t.Errorf("BallotCounts: precincts %d, states %d; want %d, %d", ballots, stateBallots, want, wantStates)
			}
		})
	}
}

// TestCDFDeterministic: the same totals, reached in another order, give
// the same bytes; a summary leaves the precinct counts out.
func TestCDFDeterministic(t *testing.T) {
	e, counts := MustBuildNH(t)
	_, a := MustCDF(t, MustApplyCounts(t, e, counts, false, 2), cdfOpts)
	_, b := MustCDF(t, MustApplyCounts(t, e, counts, false, 2), cdfOpts)
	_, c := MustCDF(t, MustApplyCounts(t, e, counts, true, 2), cdfOpts)
	if !bytes.Equal(a, b) || !bytes.Equal(a, c) {
		t.Fatal("the same totals gave different bytes")
	}
	if !bytes.Contains(a, []byte(`"GeneratedDate":"2020-11-04T11:30:15Z"`)) {
		t.Errorf("GeneratedDate not in UTC to the second: %.300s", a)
	}
	summary := cdfOpts
	summary.Format = tally.CDFSummaryContest
	_, s := MustCDF(t, MustApplyCounts(t, e, counts, false, 2), summary)
	if bytes.Contains(s, []byte(`"GpUnitId":"gpu-precinct-`)) {
		t.Error("summary-contest export holds precinct counts")
	}
}

func TestCDFOptions(t *testing.T) {
	e, counts := MustBuildSmall(t)
	tests := []struct {
		name   string
		tt     *tally.Totals
		mutate func(o *tally.CDFOptions)
		want   tally.CDFStatus // "" when an error is wanted
		errMsg string
	}{
		{"PreElection", tally.NewTotals(e), func(o *tally.CDFOptions) {}, tally.CDFPreElection, ""},
		{"Partial", MustApplyCounts(t, e, counts, false, 0, "xb-dale-8"), func(o *tally.CDFOptions) {}, tally.CDFUnofficialPartial, ""},
		{"Complete", MustApplyCounts(t, e, counts, false, 0), func(o *tally.CDFOptions) {}, tally.CDFUnofficialComplete, ""},
		{"Correction", tally.NewTotals(e), func(o *tally.CDFOptions) { o.Status = tally.CDFCorrection }, tally.CDFCorrection, ""},
		{"NoIssuer", tally.NewTotals(e), func(o *tally.CDFOptions) { o.Issuer = " " }, "", "cdf: issuer: required"},
		{"NoTime", tally.NewTotals(e), func(o *tally.CDFOptions) { o.Generated = time.Time{} }, "", "cdf: generated: required"},
		{"BadStatus", tally.NewTotals(e), func(o *tally.CDFOptions) { o.Status = "final" }, "", `cdf: status: "final" is not a results status`},
		{"BadFormat", tally.NewTotals(e), func(o *tally.CDFOptions) { o.Format = "county-level" }, "", `cdf: format: "county-level"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := cdfOpts
			tt.mutate(&o)
			rep, err := tt.tt.CDF(o)
			if tt.errMsg != "" {
				if tally.ErrorCode(err) != tally.EINVALID || !strings.HasPrefix(tally.ErrorMessage(err), tt.errMsg) {
					t.Fatalf("CDF() error = %v, want invalid: %s", err, tt.errMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.Status != tt.want {
				t.Errorf("Status = %q, want %q", rep.Status, tt.want)
			}
		})
	}
}

// TestCDFRoundTrip: importing an export gives the election back. Contest
// baselines are projection settings with no place in the CDF: they do not
// survive.
func TestCDFRoundTrip(t *testing.T) {
	small, smallCounts := MustBuildSmall(t)
	nh, nhCounts := MustBuildNH(t)
	tests := []struct {
		name string
		e    *tally.Election
		tt   *tally.Totals
	}{
		{"Small", small, tally.NewTotals(small)},
		{"SmallWithCounts", small, MustApplyCounts(t, small, smallCounts, false, 2)},
		{"NH2020", nh, MustApplyCounts(t, nh, nhCounts, false, 2)},
		{"Loaded", mustLoad(t, cdfLoadedElection), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.tt == nil {
				tt.tt = tally.NewTotals(tt.e)
			}
			_, b := MustCDF(t, tt.tt, cdfOpts)
			got, err := tally.ImportCDF(b)
			if err != nil {
				t.Fatal(err)
			}
			want := withoutBaselines(t, tt.e)
			if !reflect.DeepEqual(got, want) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				t.Fatalf("ImportCDF(CDF(e)) != e\n got %s\nwant %s", gj, wj)
			}
			// And once more: the import exports to the same bytes.
			_, again := MustCDF(t, tally.NewTotals(got), cdfOpts)
			_, first := MustCDF(t, tally.NewTotals(tt.e), cdfOpts)
			if !bytes.Equal(again, first) {
				t.Error("export of the import differs from the export")
			}
		})
	}
}

// withoutBaselines returns a validated copy of e without contest baselines.
func withoutBaselines(tb testing.TB, e *tally.Election) *tally.Election {
	tb.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := tally.LoadElection(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	for i := range c.Contests {
		c.Contests[i].Baseline = nil
	}
	return c
}

func TestImportCDFErrors(t *testing.T) {
	e, _ := MustBuildSmall(t)
	rep, _ := MustCDF(t, tally.NewTotals(e), cdfOpts)
	unit := func(r *tally.CDFElectionReport, id string) *tally.CDFGpUnit {
		for i := range r.GpUnit {
			if r.GpUnit[i].ID == id {
				return &r.GpUnit[i]
			}
		}
		t.Fatalf("no GpUnit %q", id)
		return nil
	}
	tests := []struct {
		name   string
		mutate func(r *tally.CDFElectionReport)
		raw    string // used instead of the mutated report when set
		want   string
	}{
		{"Malformed", nil, `{"@type":`, "cdf: malformed JSON"},
		{"Trailing", nil, `{"@type":"ElectionResults.ElectionReport"} {}`, "cdf: unexpected data after"},
		{"CountNotInteger", func(r *tally.CDFElectionReport) {}, `{"@type":"ElectionResults.ElectionReport","Election":[{"Contest":[{"ContestSelection":[{"VoteCounts":[{"Count":"many"}]}]}]}]}`,
			"cdf: Election.Contest.ContestSelection.VoteCounts.Count: must be"},
		{"ReportType", func(r *tally.CDFElectionReport) { r.AtType = "ElectionReport" }, "", `cdf: @type: "ElectionReport", want "ElectionResults.ElectionReport"`},
		{"NoElection", func(r *tally.CDFElectionReport) { r.Election = nil }, "", "cdf: Election: 0 elections, want exactly 1"},
		{"UnknownComposing", func(r *tally.CDFElectionReport) {
			u := unit(r, "gpu-county-xa-north")
			u.ComposingGpUnitIDs = append(u.ComposingGpUnitIDs, "x")
		}, "", `cdf: GpUnit[4].ComposingGpUnitIds[2]: unknown id "x"`},
		{"DuplicateUnit", func(r *tally.CDFElectionReport) { r.GpUnit[1].ID = r.GpUnit[2].ID }, "", `cdf: GpUnit[2].@id: duplicate id "gpu-state-XB"`},
		{"UnitType", func(r *tally.CDFElectionReport) { r.GpUnit[0].AtType = "ElectionResults.Precinct" }, "", `cdf: GpUnit[0].@type: "ElectionResults.Precinct"`},
		{"TwoRegions", func(r *tally.CDFElectionReport) {
			u := unit(r, "gpu-region-xa-2")
			u.ComposingGpUnitIDs = append(u.ComposingGpUnitIDs, "gpu-precinct-xa-north-1")
		}, "", `ComposingGpUnitIds[2]: "gpu-precinct-xa-north-1" is already in region "gpu-region-xa-1"`},
		{"NoRegion", func(r *tally.CDFElectionReport) { unit(r, "gpu-region-xb-1").ComposingGpUnitIDs = nil }, "", `cdf: GpUnit[17]: precinct "gpu-precinct-xb-dale-8" is in no region`},
		{"BadRegionID", func(r *tally.CDFElectionReport) {
			unit(r, "gpu-region-xb-2").ID = "gpu-region-a b"
			unit(r, "gpu-state-XB").ComposingGpUnitIDs[3] = "gpu-region-a b"
		}, "", `cdf: GpUnit[11].@id: region id "a b" may hold only`},
		{"District", func(r *tally.CDFElectionReport) { r.Election[0].Contest[1].ElectionDistrictID = "gpu-nowhere" }, "", `cdf: Election[0].Contest[1].ElectionDistrictId: unknown id "gpu-nowhere"`},
		{"ContestType", func(r *tally.CDFElectionReport) {
			r.Election[0].Contest[0].AtType = "ElectionResults.BallotMeasureContest"
		}, "", `cdf: Election[0].Contest[0].@type: "ElectionResults.BallotMeasureContest" is not supported`},
		{"ContestID", func(r *tally.CDFElectionReport) { r.Election[0].Contest[0].ID = "contest-a b" }, "", `cdf: Election[0].Contest[0].@id: contest id "a b" may hold only`},
		{"Candidate", func(r *tally.CDFElectionReport) {
			r.Election[0].Contest[0].ContestSelection[1].CandidateIDs = []string{"cand-nobody"}
		}, "", `cdf: Election[0].Contest[0].ContestSelection[1].CandidateIds[0]: unknown id "cand-nobody"`},
		{"NoCandidate", func(r *tally.CDFElectionReport) {
			r.Election[0].Contest[0].ContestSelection[0].CandidateIDs = nil
		}, "", `cdf: Election[0].Contest[0].ContestSelection[0].CandidateIds: at least one candidate required`},
		{"Party", func(r *tally.CDFElectionReport) { r.Election[0].Candidate[0].PartyID = "party-x" }, "", `cdf: Election[0].Candidate[0].PartyId: unknown id "party-x"`},
		{"Office", func(r *tally.CDFElectionReport) { r.Election[0].Contest[0].OfficeIDs = []string{"office-king"} }, "", `cdf: Election[0].Contest[0].OfficeIds[0]: unknown id "office-king"`},
		{"StyleContest", func(r *tally.CDFElectionReport) {
			r.Election[0].BallotStyle[0].OrderedContent[0].ContestID = "contest-x"
		}, "", `cdf: Election[0].BallotStyle[0].OrderedContent[0].ContestId: unknown id "contest-x"`},
		{"StyleUnit", func(r *tally.CDFElectionReport) {
			r.Election[0].BallotStyle[1].GpUnitIDs[0] = "gpu-x"
		}, "", `cdf: Election[0].BallotStyle[1].GpUnitIds[0]: unknown id "gpu-x"`},
		{"TwoStyles", func(r *tally.CDFElectionReport) {
			bs := &r.Election[0].BallotStyle[1]
			bs.GpUnitIDs = append(bs.GpUnitIDs, r.Election[0].BallotStyle[0].GpUnitIDs[0])
		}, "", `precinct "gpu-precinct-xa-north-1" is in another ballot style too`},
		{"Validate", func(r *tally.CDFElectionReport) { r.Election[0].Contest[0].NumberElected = -1 }, "", "cdf: election: contests[0].seats: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.raw)
			if tt.raw == "" {
				r := cloneCDF(t, rep)
				tt.mutate(r)
				b, _ = json.Marshal(r)
			}
			_, err := tally.ImportCDF(b)
			if tally.ErrorCode(err) != tally.EINVALID || !strings.Contains(tally.ErrorMessage(err), tt.want) {
				t.Fatalf("ImportCDF() error = %v, want invalid: %s", err, tt.want)
			}
		})
	}
}

// FuzzImportCDF: no panic; an error is EINVALID; an imported election
// exports and imports again to the same election.
func FuzzImportCDF(f *testing.F) {
	e, counts := MustBuildSmall(f)
	_, small := MustCDF(f, MustApplyCounts(f, e, counts, false, 2), cdfOpts)
	_, loaded := MustCDF(f, tally.NewTotals(mustLoad(f, cdfLoadedElection)), cdfOpts)
	f.Add(small)
	f.Add(loaded)
	f.Add([]byte(`{"@type":"ElectionResults.ElectionReport","Election":[{"@type":"ElectionResults.Election","Name":null}]}`))
	f.Add([]byte(`{"@type":"ElectionResults.ElectionReport","GpUnit":[{"@id":"a","@type":"ElectionResults.ReportingUnit","Type":"state","ComposingGpUnitIds":["a"]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := tally.ImportCDF(b)
		if err != nil {
			if tally.ErrorCode(err) != tally.EINVALID {
				t.Fatalf("ImportCDF() code %q: %v", tally.ErrorCode(err), err)
			}
			return
		}
		rep, err := tally.NewTotals(e).CDF(cdfOpts)
		if err != nil {
			t.Fatalf("CDF() of an imported election: %v", err)
		}
		out, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		again, err := tally.ImportCDF(out)
		if err != nil {
			t.Fatalf("ImportCDF() of an export: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(e, again) {
			t.Fatalf("round trip changed the election:\n%+v\n%+v", e, again)
		}
	})
}

// cdfForeign is a report Tally did not write: its own @ids, a state known
// by its name (in two languages), a reporting device, a coalition, a
// ticket of two candidates, a ballot style listing a county and a header,
// and fields Tally does not model.
var cdfForeign = regexp.MustCompile(`T"([^"]*)"`).ReplaceAllString(`{
"@type":"ElectionResults.ElectionReport","Format":"summary-contest","GeneratedDate":"2024-11-06T02:00:00Z",
"Issuer":"Someone","IssuerAbbreviation":"S","SequenceStart":1,"SequenceEnd":1,"Status":"unofficial-partial","VendorApplicationId":"Other",
"GpUnit":[
 {"@id":"ru-nh","@type":"ElectionResults.ReportingUnit","Type":"state","ComposingGpUnitIds":["ru-carroll","zone-1"],
  "Name":{"@type":"ElectionResults.InternationalizedText","Text":[
   {"@type":"ElectionResults.LanguageString","Content":"Nouveau-Hampshire","Language":"fr"},
   {"@type":"ElectionResults.LanguageString","Content":"New Hampshire","Language":"en"}]}},
 {"@id":"ru-carroll","@type":"ElectionResults.ReportingUnit","Type":"county","Name":T"Carroll","ComposingGpUnitIds":["ru-albany","ru-bartlett"]},
 {"@id":"ru-bartlett","@type":"ElectionResults.ReportingUnit","Type":"precinct","Name":T"Bartlett","VotersRegistered":2500,
  "ContactInformation":{"@type":"ElectionResults.ContactInformation","Name":"Town hall"},"ComposingGpUnitIds":["dev-1"]},
 {"@id":"dev-1","@type":"ElectionResults.ReportingDevice","SerialNumber":"123"},
 {"@id":"zone-1","@type":"ElectionResults.ReportingUnit","Type":"other","OtherType":"region","Name":T"North","ComposingGpUnitIds":["ru-albany","ru-bartlett"]},
 {"@id":"ru-albany","@type":"ElectionResults.ReportingUnit","Type":"precinct","Name":T"Albany",
  "ExternalIdentifier":[{"@type":"ElectionResults.ExternalIdentifier","Type":"local-level","Value":"ALBANY"}]}],
"Party":[{"@id":"p-dem","@type":"ElectionResults.Party","Name":T"DEM","Color":"0000ff"},
 {"@id":"c-1","@type":"ElectionResults.Coalition","Name":T"Fusion","PartyIds":["p-dem"]}],
"Office":[{"@id":"o-pres","@type":"ElectionResults.Office","Name":T"President"}],
"Election":[{"@type":"ElectionResults.Election","Name":T"2024 General","StartDate":"2024-11-05","EndDate":"2024-11-05",
 "Type":"general","ElectionScopeId":"ru-nh",
 "Candidate":[{"@id":"c-harris","@type":"ElectionResults.Candidate","BallotName":T"Kamala Harris","PartyId":"p-dem"},
  {"@id":"c-walz","@type":"ElectionResults.Candidate","BallotName":T"Tim Walz","PartyId":"p-dem"},
  {"@id":"c-x","@type":"ElectionResults.Candidate","BallotName":T"X","PartyId":"c-1","IsIncumbent":false}],
 "Contest":[{"@id":"k-pres","@type":"ElectionResults.CandidateContest","Name":"President","ElectionDistrictId":"ru-nh",
  "VotesAllowed":1,"OfficeIds":["o-pres"],"ContestSelection":[
   {"@id":"s-1","@type":"ElectionResults.CandidateSelection","CandidateIds":["c-harris","c-walz"],
    "VoteCounts":[{"@type":"ElectionResults.VoteCounts","Count":12,"GpUnitId":"ru-albany","Type":"absentee-mail"}]},
   {"@id":"s-2","@type":"ElectionResults.CandidateSelection","CandidateIds":["c-x"],"IsWriteIn":true}]}],
 "BallotStyle":[{"@type":"ElectionResults.BallotStyle","GpUnitIds":["ru-carroll","ru-albany","ru-bartlett"],
  "OrderedContent":[{"@type":"ElectionResults.OrderedHeader","HeaderId":"h-1"},{"@type":"ElectionResults.OrderedContest","ContestId":"k-pres"}]}]}]}`,
	`{"@type":"ElectionResults.InternationalizedText","Text":[{"@type":"ElectionResults.LanguageString","Content":"$1","Language":"en"}]}`)

func TestImportCDFForeign(t *testing.T) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(cdfForeign))
	if err != nil {
		t.Fatal(err)
	}
	if err := MustCDFSchema(t).Validate(doc); err != nil {
		t.Fatalf("the foreign report is not valid CDF: %v", err)
	}
	got, err := tally.ImportCDF([]byte(cdfForeign))
	if err != nil {
		t.Fatal(err)
	}
	want := mustLoad(t, `{"id":"2024-general","name":"2024 General","date":"2024-11-05",
"regions":[{"id":"zone-1","name":"North","state":"NH","counties":["Carroll"]}],
"contests":[{"id":"k-pres","name":"President","office":"President","state":"NH","seats":1,
 "candidates":[{"id":"c-harris","name":"Kamala Harris","party":"DEM"},{"id":"c-x","name":"X","party":"Fusion"}]}],
"precincts":[
 {"id":"ru-bartlett","name":"Bartlett","county":"Carroll","state":"NH","region":"zone-1","registered":2500,"contests":["k-pres"]},
 {"id":"ru-albany","name":"Albany","county":"Carroll","state":"NH","region":"zone-1","contests":["k-pres"],"source_id":"ALBANY"}]}`)
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		t.Fatalf("ImportCDF() =\n%s\nwant\n%s", gj, wj)
	}
}
