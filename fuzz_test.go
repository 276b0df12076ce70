package tally_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/tallyvote/tally"
)

// The fuzz targets of every decoder and validator of outside input. Their
// seed corpora are in testdata/fuzz/<target>/, crashers found included, and
// CI runs each for a bounded time (.ci/run).

const fuzzReport = `{"id":"xa-1-r1","region":"xa-1","precinct":"xa-north-1","contest":"xa-president","votes":{"smith":10,"jones":5},"complete":true,"reported_at":"2020-11-03T21:00:00Z"}`

func FuzzDecodeReports(f *testing.F) {
	f.Add([]byte(fuzzReport), 2)
	f.Add([]byte("["+fuzzReport+","+fuzzReport+"]"), 0)
	f.Add([]byte(`{"reports":[`+fuzzReport+`]}`), 1)
	f.Add([]byte(`{"reports":[]}`), 1)
	f.Add([]byte(`[{"id":1}]`), 5)
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		rs, err := tally.DecodeReports(b, max)
		if err != nil {
			if c := tally.ErrorCode(err); c != tally.EINVALID && c != tally.ETOOLARGE {
				t.Fatalf("DecodeReports() error code %q, want invalid or too_large: %v", c, err)
			}
			return
		}
		if len(rs) == 0 || (max > 0 && len(rs) > max) {
			t.Fatalf("DecodeReports() = %d reports with max %d", len(rs), max)
		}
		for _, r := range rs {
			if r == nil {
				t.Fatal("DecodeReports() returned a nil report")
			}
		}
	})
}

func FuzzValidateReport(f *testing.F) {
	e, _ := MustBuildSmall(f)
	f.Add([]byte(fuzzReport))
	f.Add([]byte(`{"id":"xa-1-r1","region":"xa-1","precinct":"xa-north-1","contest":"xa-president","votes":null,"vote_types":{"early":{"smith":1}},"ballots_cast":1,"complete":false,"reported_at":"2020-11-03T21:00:00Z"}`))
	f.Add([]byte(`{"id":"xa-1-c","region":"xa-1","precinct":"xa-north-1","contest":"xa-president","votes":{"smith":9223372036854775807,"jones":1},"complete":true,"reported_at":"2020-11-03T21:00:00Z","correction":{"supersedes":"xa-1-r1","supersedes_seq":1,"reason":"typo"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := tally.DecodeReport(b)
		if err != nil {
			return
		}
		if err := r.Validate(e); err != nil {
			if tally.ErrorCode(err) != tally.EINVALID {
				t.Fatalf("Validate() code %q, want invalid: %v", tally.ErrorCode(err), err)
			}
			return
		}
		// A valid report is valid again, and its totals are non-negative.
		if err := r.Validate(e); err != nil {
			t.Fatalf("Validate() not idempotent: %v", err)
		}
		if r.TotalVotes() < 0 {
			t.Fatalf("valid report with negative total %d", r.TotalVotes())
		}
	})
}

func FuzzVerifySignature(f *testing.F) {
	e, _ := MustBuildSmall(f)
	seed, pub := tally.NewOfficeKey()
	offs, err := tally.NewOffices(e, "xa-1", []tally.Office{{ID: "north", PublicKey: pub, Counties: []string{"North"}}})
	if err != nil {
		f.Fatal(err)
	}
	key, err := tally.ParseSeed(seed)
	if err != nil {
		f.Fatal(err)
	}
	r, _ := tally.DecodeReport([]byte(fuzzReport))
	if err := r.Sign("north", key); err != nil {
		f.Fatal(err)
	}
	signed, _ := r.Encode()
	f.Add(signed)
	f.Add(bytes.Replace(signed, []byte(`"smith":10`), []byte(`"smith":11`), 1))
	f.Add([]byte(fuzzReport))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := tally.DecodeReport(b)
		if err != nil {
			return
		}
		err = offs.Authorize(r)
		if err == nil {
			// Only bytes equal, once canonical, to what the key signed
			// may pass: the fuzzer has no key.
			got, _ := r.SignedBytes()
			r0, _ := tally.DecodeReport(signed)
			exp, _ := r0.SignedBytes()
			if !bytes.Equal(got, exp) {
				t.Fatalf("Authorize() passed bytes the office never signed:\n%s", got)
			}
			return
		}
		if c := tally.ErrorCode(err); c != tally.EUNAUTHORIZED && c != tally.EFORBIDDEN {
			t.Fatalf("Authorize() code %q: %v", c, err)
		}
	})
}

func FuzzReadResults(f *testing.F) {
	small, err := os.ReadFile("testdata/results_small.csv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(small)
	f.Add([]byte("state,year,county,precinct_id,precinct_name,office,candidate,party,votes\nXA,2020,N,1,W,President,A,D,-1\n"))
	f.Add([]byte("votes,party,candidate,office,precinct_name,precinct_id,county,year,state\n1,D,A,President,W,1,N,2020,XA\n"))
	f.Add([]byte("state,year\n\"unterminated\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := tally.ReadResults(bytes.NewReader(b))
		if err != nil {
			if tally.ErrorCode(err) != tally.EINVALID {
				t.Fatalf("ReadResults() code %q: %v", tally.ErrorCode(err), err)
			}
			return
		}
		// Whatever reads must build, or be refused cleanly.
		e, _, err := tally.BuildElection(rows, tally.BuildOptions{})
		if err != nil {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("BuildElection() built an invalid election: %v", err)
		}
	})
}

func FuzzLoadElection(f *testing.F) {
	e, _ := MustBuildSmall(f)
	def, err := json.Marshal(e)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(def)
	f.Add([]byte(`{"id":"x","name":"X","regions":[{"id":"r"}],"contests":[],"precincts":[]}`))
	f.Add([]byte(`{"id":"x","regions":[{"id":"r"},{"id":"r"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := tally.LoadElection(bytes.NewReader(b))
		if err != nil {
			if tally.ErrorCode(err) != tally.EINVALID {
				t.Fatalf("LoadElection() code %q: %v", tally.ErrorCode(err), err)
			}
			return
		}
		// A loaded election round-trips.
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("marshal loaded election: %v", err)
		}
		if _, err := tally.LoadElection(bytes.NewReader(again)); err != nil {
			t.Fatalf("reload of loaded election: %v\n%s", err, again)
		}
	})
}

func FuzzReadReportsCSV(f *testing.F) {
	f.Add([]byte("precinct,contest,candidate,votes,complete\nxa-north-1,xa-president,smith,10,true\nxa-north-1,xa-president,jones,5,true\nxa-north-2,xa-president,smith,1,false\n"))
	f.Add([]byte("precinct,contest,candidate,votes,complete\np,c,x,-1,true\n"))
	f.Add([]byte("precinct,contest,candidate,votes,complete\np,c,x,1,true\np,c,x,2,true\n"))
	f.Add([]byte("precinct,contest\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := tally.ReadReportsCSV(bytes.NewReader(b), "xa-1")
		if err != nil {
			if tally.ErrorCode(err) != tally.EINVALID {
				t.Fatalf("ReadReportsCSV() code %q: %v", tally.ErrorCode(err), err)
			}
			return
		}
		for _, r := range rs {
			if len(r.Votes) == 0 || r.Region != "xa-1" {
				t.Fatalf("report %+v: no votes or wrong region", r)
			}
			for _, n := range r.Votes {
				if n < 0 {
					t.Fatalf("negative count in %+v", r)
				}
			}
		}
	})
}
