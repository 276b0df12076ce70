package tally

import (
	"bytes"
	"testing"
	"time"
)

// FuzzEncodeReport checks the fast path of Report.Encode against
// encoding/json: whenever it writes a report, it writes the same bytes.
func FuzzEncodeReport(f *testing.F) {
	f.Add("r1-a", "r1", "p1", "c", "alice", "bob", "early", int64(120), int64(80), int64(200), int64(0), int64(0),
		true, int64(1604437200000000005), 0, "", "", uint64(0), "", "", uint8(0))
	f.Add("r1-b", "r1", "p1", "c", "a", "b", "election-day", int64(4), int64(-6), int64(9), int64(2), int64(3),
		false, int64(1604437200000000000), 3600, "north", "r1-a", uint64(7), "typo <&>", "c2ln", uint8(0xff))
	f.Add("id\"q", "r\\1", "p\u00e9", "c\n", "a\u2028", "b\x7f", "x\xff", int64(1), int64(2), int64(3), int64(0), int64(0),
		false, int64(-62135596800000000000/1000), -1800, "o\tx", "s", uint64(1), "why\x00", "sig", uint8(0x0f))
	f.Add("far", "r1", "p1", "c", "a", "b", "e", int64(1), int64(1), int64(1), int64(1), int64(1),
		true, int64(1<<62), 0, "", "", uint64(0), "", "", uint8(0x01))
	f.Fuzz(func(t *testing.T, id, region, precinct, contest, c1, c2, vt string, n1, n2, ballots, over, under int64,
		complete bool, at int64, zone int, office, supersedes string, seq uint64, reason, sig string, flags uint8) {
		r := &Report{ID: EventID(id), Region: RegionID(region), Precinct: PrecinctID(precinct), Contest: ContestID(contest),
			Overvotes: over, Undervotes: under, Complete: complete, Office: office, Signature: sig,
			ReportedAt: time.Unix(0, at).In(time.FixedZone("z", zone%(24*3600)))}
		if flags&1 == 0 {
			r.Votes = map[CandidateID]int64{CandidateID(c1): n1, CandidateID(c2): n2}
		}
		if flags&2 != 0 {
			r.VoteTypes = map[VoteType]map[CandidateID]int64{VoteType(vt): {CandidateID(c1): n1}, "mail": nil}
		}
		if flags&4 != 0 {
			r.VoteTypes = map[VoteType]map[CandidateID]int64{}
		}
		if flags&8 != 0 {
			r.BallotsCast = &ballots
		}
		if flags&16 != 0 {
			r.Correction = &Correction{Supersedes: EventID(supersedes), SupersedesSeq: seq, Reason: reason}
		}
		slow, serr := r.encodeJSON()
		fast, ok := appendCanonicalReport(nil, r)
		if !ok {
			return
		}
		if serr != nil {
			t.Fatalf("fast path wrote %s where encoding/json fails: %v", fast, serr)
		}
		if !bytes.Equal(fast, slow) {
			t.Fatalf("fast path wrote\n%s\nencoding/json\n%s", fast, slow)
		}
	})
}

// TestEncodeReportFast checks that the reports of a night take the fast
// path of Encode, so that regions do not fall back to encoding/json.
func TestEncodeReportFast(t *testing.T) {
	n := int64(9)
	for _, r := range []*Report{
		{ID: "r1-a", Region: "r1", Precinct: "p1", Contest: "c", Votes: map[CandidateID]int64{"a": 1, "b": 0},
			ReportedAt: time.Date(2020, 11, 3, 21, 0, 0, 5, time.UTC)},
		{ID: "r1-b", Region: "r1", Precinct: "p1", Contest: "c", Votes: map[CandidateID]int64{"a": 10, "b": 0},
			VoteTypes:   map[VoteType]map[CandidateID]int64{"early": {"a": 4}, "election-day": {"a": 6}},
			BallotsCast: &n, Overvotes: 1, Undervotes: 2, Complete: true, Office: "north", Signature: "c2ln",
			ReportedAt: time.Date(2020, 11, 3, 21, 0, 0, 0, time.FixedZone("x", -5*3600)),
			Correction: &Correction{Supersedes: "r1-a", SupersedesSeq: 7, Reason: "typo <&>"}},
	} {
		fast, ok := appendCanonicalReport(nil, r)
		if !ok {
			t.Fatalf("report %s: fast path refused it", r.ID)
		}
		slow, err := r.encodeJSON()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fast, slow) {
			t.Errorf("report %s: fast path wrote\n%s\nencoding/json\n%s", r.ID, fast, slow)
		}
	}
}

func BenchmarkReportEncode(b *testing.B) {
	r := &Report{ID: "r1-p1234-c02-2", Region: "r1", Precinct: "p1234", Contest: "r1-c02",
		Votes:      map[CandidateID]int64{"alice": 1234, "bob": 987, "carol": 55},
		Complete:   true,
		ReportedAt: time.Date(2020, 11, 3, 21, 0, 0, 0, time.UTC)}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.Encode(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.encodeJSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
