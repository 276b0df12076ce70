package tally_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

func validReport(e *tally.Election) *tally.Report {
	p := e.Precinct("xa-north-1")
	return &tally.Report{
		ID: tally.EventID(string(p.Region) + "-r1"), Region: p.Region, Precinct: p.ID, Contest: "xa-president",
		Votes:    map[tally.CandidateID]int64{"smith": 10, "jones": 5},
		Complete: true, ReportedAt: time.Date(2020, 11, 3, 21, 0, 0, 0, time.UTC),
	}
}

func TestReportValidate(t *testing.T) {
	e, _ := MustBuildSmall(t)
	other := e.Precinct("xb-hill-7")
	tests := []struct {
		name   string
		mutate func(r *tally.Report)
		want   string // "" = valid
	}{
		{"Valid", func(r *tally.Report) {}, ""},
		{"NoID", func(r *tally.Report) { r.ID = "" }, "id: required"},
		{"IDWithoutRegion", func(r *tally.Report) { r.ID = "zz-1" }, "id:"},
		{"IDWithSpace", func(r *tally.Report) { r.ID += " x" }, "id:"},
		{"UnknownRegion", func(r *tally.Report) { r.Region = "zz"; r.ID = "zz-1" }, "region: unknown"},
		{"UnknownPrecinct", func(r *tally.Report) { r.Precinct = "nowhere" }, "precinct: unknown"},
		{"WrongRegion", func(r *tally.Report) { r.Precinct = other.ID; r.Contest = "xb-president" }, "belongs to region"},
		{"UnknownContest", func(r *tally.Report) { r.Contest = "mayor" }, "contest: unknown"},
		{"NotOnBallot", func(r *tally.Report) { r.Contest = "xb-president" }, "not on the ballot"},
		{"UnknownCandidate", func(r *tally.Report) { r.Votes["nobody"] = 1 }, "votes.nobody: unknown candidate"},
		{"NegativeVotes", func(r *tally.Report) { r.Votes["smith"] = -1 }, "votes.smith: must be a non-negative"},
		{"NoVotes", func(r *tally.Report) { r.Votes = nil }, "votes: at least one"},
		{"OverBallots", func(r *tally.Report) { r.BallotsCast = i64(14) }, "more than ballots_cast"},
		{"AtBallots", func(r *tally.Report) { r.BallotsCast = i64(15) }, ""},
		{"NegativeBallots", func(r *tally.Report) { r.BallotsCast = i64(-1) }, "ballots_cast: must be"},
		{"VoteTypesMatch", func(r *tally.Report) {
			r.VoteTypes = map[tally.VoteType]map[tally.CandidateID]int64{"early": {"smith": 4, "jones": 5}, "election-day": {"smith": 6}}
		}, ""},
		{"VoteTypesMismatch", func(r *tally.Report) {
			r.VoteTypes = map[tally.VoteType]map[tally.CandidateID]int64{"early": {"smith": 4, "jones": 5}}
		}, `counts for "smith" sum to 4`},
		{"UnknownVoteType", func(r *tally.Report) {
			r.VoteTypes = map[tally.VoteType]map[tally.CandidateID]int64{"mail-in-ish": {"smith": 10, "jones": 5}}
		}, "unknown vote type"},
		{"CorrectionValid", func(r *tally.Report) {
			r.Correction = &tally.Correction{Supersedes: r.ID + "-old", SupersedesSeq: 3, Reason: "typo"}
		}, ""},
		{"CorrectionNoReason", func(r *tally.Report) {
			r.Correction = &tally.Correction{Supersedes: r.ID + "-old", SupersedesSeq: 3}
		}, "correction.reason"},
		{"CorrectionNoSeq", func(r *tally.Report) {
			r.Correction = &tally.Correction{Supersedes: r.ID + "-old", Reason: "typo"}
		}, "correction.supersedes_seq"},
		{"CorrectionOfItself", func(r *tally.Report) {
			r.Correction = &tally.Correction{Supersedes: r.ID, SupersedesSeq: 1, Reason: "typo"}
		}, "supersede itself"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validReport(e)
			tt.mutate(r)
			err := r.Validate(e)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || tally.ErrorCode(err) != tally.EINVALID {
				t.Fatalf("Validate() = %v, want invalid containing %q", err, tt.want)
			}
		})
	}
}

func TestReportVoteTypesFillVotes(t *testing.T) {
	e, _ := MustBuildSmall(t)
	r := validReport(e)
	r.Votes = nil
	r.VoteTypes = map[tally.VoteType]map[tally.CandidateID]int64{"early": {"smith": 4}, "absentee": {"smith": 1, "jones": 2}}
	if err := r.Validate(e); err != nil {
		t.Fatal(err)
	}
	if want := map[tally.CandidateID]int64{"smith": 5, "jones": 2}; !reflect.DeepEqual(r.Votes, want) {
		t.Errorf("votes = %v, want %v", r.Votes, want)
	}
}

func TestEncodeCanonical(t *testing.T) {
	e, _ := MustBuildSmall(t)
	r := validReport(e)
	r.ReportedAt = r.ReportedAt.In(time.FixedZone("EST", -5*3600))
	a, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"xa-1-r1","region":"xa-1","precinct":"xa-north-1","contest":"xa-president","votes":{"jones":5,"smith":10},"complete":true,"reported_at":"2020-11-03T21:00:00Z"}`
	if r.Region != "xa-1" {
		want = strings.ReplaceAll(want, "xa-1", string(r.Region))
	}
	if string(a) != want {
		t.Errorf("Encode() =\n%s\nwant\n%s", a, want)
	}
	d, err := tally.DecodeReport(a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("decode/encode not stable:\n%s\n%s", a, b)
	}
}

func TestAssignIDStable(t *testing.T) {
	e, _ := MustBuildSmall(t)
	a, b := validReport(e), validReport(e)
	a.ID, b.ID = "", ""
	if err := a.AssignID(); err != nil {
		t.Fatal(err)
	}
	if err := b.AssignID(); err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || !strings.HasPrefix(string(a.ID), string(a.Region)+"-") {
		t.Errorf("ids %q, %q: want equal, starting with the region", a.ID, b.ID)
	}
	b.ID = ""
	b.Votes["smith"]++
	if err := b.AssignID(); err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID {
		t.Errorf("different reports got the same id %q", a.ID)
	}
}

func TestDecodeReports(t *testing.T) {
	one := `{"id":"a-1","region":"a","precinct":"p","contest":"c","votes":{"x":1},"complete":false,"reported_at":"2020-11-03T21:00:00Z"}`
	tests := []struct {
		name string
		in   string
		n    int
		code string
		want string
	}{
		{"Single", one, 1, "", ""},
		{"Array", "[" + one + "," + one + "]", 2, "", ""},
		{"Object", `{"reports":[` + one + `]}`, 1, "", ""},
		{"Empty", ``, 0, tally.EINVALID, "empty"},
		{"EmptyArray", `[]`, 0, tally.EINVALID, "no reports"},
		{"TooMany", "[" + one + "," + one + "," + one + "]", 0, tally.ETOOLARGE, "at most 2"},
		{"Malformed", `{"id":`, 0, tally.EINVALID, "malformed JSON"},
		{"UnknownField", `{"id":"a-1","colour":"red"}`, 0, tally.EINVALID, `unknown field "colour"`},
		{"Fractional", `{"id":"a-1","votes":{"x":1.5}}`, 0, tally.EINVALID, "votes.x: must be a non-negative integer, got 1.5"},
		{"StringCount", `{"id":"a-1","votes":{"x":"7"}}`, 0, tally.EINVALID, `votes.x: must be a non-negative integer, got "7"`},
		{"BadItem", "[" + one + `,{"id":1}]`, 0, tally.EINVALID, "reports[1]: id"},
		{"Trailing", one + `{}`, 0, tally.EINVALID, "after top-level value"},
		{"Scalar", `42`, 0, tally.EINVALID, "want a JSON object or array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := tally.DecodeReports([]byte(tt.in), 2)
			if tt.code == "" {
				if err != nil || len(rs) != tt.n {
					t.Fatalf("DecodeReports() = %d reports, %v; want %d, nil", len(rs), err, tt.n)
				}
				return
			}
			if tally.ErrorCode(err) != tt.code || !strings.Contains(tally.ErrorMessage(err), tt.want) {
				t.Fatalf("DecodeReports() err = %v, want %s containing %q", err, tt.code, tt.want)
			}
		})
	}
}

func FuzzDecodeReport(f *testing.F) {
	f.Add([]byte(`{"id":"a-1","region":"a","precinct":"p","contest":"c","votes":{"x":1},"complete":false,"reported_at":"2020-11-03T21:00:00Z"}`))
	f.Add([]byte(`{"id":"a-1","votes":{"x":1},"vote_types":{"early":{"x":1}},"ballots_cast":3,"correction":{"supersedes":"a-0","supersedes_seq":2,"reason":"r"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := tally.DecodeReport(b)
		if err != nil {
			return
		}
		enc, err := r.Encode()
		if err != nil {
			return // e.g. a time outside what JSON can hold
		}
		r2, err := tally.DecodeReport(enc)
		if err != nil {
			t.Fatalf("decode of encoded report: %v\n%s", err, enc)
		}
		enc2, err := r2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip not stable: %v\n%s\n%s", err, enc, enc2)
		}
	})
}
