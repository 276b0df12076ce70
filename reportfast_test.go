package tally

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeCanonicalReport checks the canonical fast path of DecodeReport
// against encoding/json: whatever it accepts, encoding/json accepts too and
// decodes to the same report.
func FuzzDecodeCanonicalReport(f *testing.F) {
	n := int64(120)
	reps := []*Report{
		{ID: "r1-a", Region: "r1", Precinct: "p1", Contest: "c", Votes: map[CandidateID]int64{"a": 1, "b": 0},
			ReportedAt: time.Date(2020, 11, 3, 21, 0, 0, 5, time.UTC)},
		{ID: "r1-b", Region: "r1", Precinct: "p1", Contest: "c", Votes: map[CandidateID]int64{"a": 10},
			VoteTypes:   map[VoteType]map[CandidateID]int64{"early": {"a": 4}, "election-day": {"a": 6}},
			BallotsCast: &n, Overvotes: 2, Undervotes: 3, Complete: true, Office: "north", Signature: "c2ln",
			Correction: &Correction{Supersedes: "r1-a", SupersedesSeq: 7, Reason: "typo <&>"},
			ReportedAt: time.Date(2020, 11, 3, 21, 0, 0, 0, time.FixedZone("x", 3600))},
	}
	for _, r := range reps {
		b, err := r.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"id":"a","votes":{"a":01}}`))
	f.Add([]byte(`{"id":"a","id":"b"}`))
	f.Add([]byte(`{"votes":{},"vote_types":{"x":{}},"correction":{}}`))
	f.Add([]byte(`{"reported_at":"2020-11-03T21:00:00+01:00"}`))
	// The seeds of DecodeReport's own fuzz target too.
	for _, dir := range []string{"FuzzDecodeReport", "FuzzValidateReport"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			// go test fuzz v1, then []byte("...") lines.
			for _, line := range strings.Split(string(b), "\n")[1:] {
				if s, ok := strings.CutPrefix(line, "[]byte("); ok {
					if v, err := strconv.Unquote(strings.TrimSuffix(s, ")")); err == nil {
						f.Add([]byte(v))
					}
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodeCanonicalReport(b)
		if !ok {
			return
		}
		slow, err := decodeReportJSON(b)
		if err != nil {
			t.Fatalf("fast path accepted what encoding/json refuses (%v): %q", err, b)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("fast path decoded %q to\n%+v\nencoding/json to\n%+v", b, fast, slow)
		}
	})
}

// TestDecodeCanonicalReport checks that the fast path takes what Encode
// writes, so that the events of a stream do not fall back.
func TestDecodeCanonicalReport(t *testing.T) {
	n := int64(9)
	r := &Report{ID: "r1-b", Region: "r1", Precinct: "p1", Contest: "c", Votes: map[CandidateID]int64{"a": 10, "b": 0},
		VoteTypes:   map[VoteType]map[CandidateID]int64{"early": {"a": 4}, "election-day": {"a": 6}},
		BallotsCast: &n, Complete: true, ReportedAt: time.Date(2020, 11, 3, 21, 0, 0, 0, time.UTC),
		Correction: &Correction{Supersedes: "r1-a", SupersedesSeq: 7, Reason: "typo"}}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := decodeCanonicalReport(b)
	if !ok {
		t.Fatalf("decodeCanonicalReport(%s) refused it", b)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("decodeCanonicalReport() = %+v, want %+v", got, r)
	}
}
