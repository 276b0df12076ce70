package regional_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/regional"
)

const (
	reportN1 = `{"id":"north-r1","precinct":"n1","contest":"pres","votes":{"biden":10,"trump":5},"complete":false,"reported_at":"2024-11-05T20:00:00Z"}`
	reportN2 = `{"id":"north-r2","precinct":"n2","contest":"pres","votes":{"biden":3,"trump":7},"complete":true,"reported_at":"2024-11-05T20:01:00Z"}`
	reportG1 = `{"id":"north-r3","precinct":"n1","contest":"gov","votes":{"alice":8,"bob":6},"ballots_cast":15,"complete":true,"reported_at":"2024-11-05T20:02:00Z"}`
)

func TestSubmitSingle(t *testing.T) {
	n := MustOpenNode(t, nil)
	s := MustStream(t, n)
	res := post(t, n, "/api/v1/reports", reportN1).results(t)
	if len(res) != 1 || res[0].ID != "north-r1" || res[0].Seq != 1 || res[0].Duplicate {
		t.Fatalf("results = %+v, want [{north-r1 1 false}]", res)
	}
	if got := msgCount(t, s); got != 1 {
		t.Fatalf("stream messages = %d, want 1", got)
	}
	m, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := tally.ResultsSubject("north", "n1", "pres"); m.Subject != want {
		t.Errorf("subject = %q, want %q", m.Subject, want)
	}
	if got := m.Header.Get(jetstream.MsgIDHeader); got != "north-r1" {
		t.Errorf("Nats-Msg-Id = %q, want north-r1", got)
	}
	rep, err := tally.DecodeReport(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := rep.Encode()
	if string(m.Data) != string(want) {
		t.Errorf("stored bytes are not canonical:\n got %s\nwant %s", m.Data, want)
	}
	if rep.Region != "north" {
		t.Errorf("region = %q, want north (filled in)", rep.Region)
	}
}

func TestSubmitBatch(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"Array", "[" + reportN1 + "," + reportN2 + "," + reportG1 + "]"},
		{"Object", `{"reports":[` + reportN1 + "," + reportN2 + "," + reportG1 + "]}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := MustOpenNode(t, nil)
			s := MustStream(t, n)
			res := post(t, n, "/api/v1/reports", tt.body).results(t)
			wantIDs := []tally.EventID{"north-r1", "north-r2", "north-r3"}
			if len(res) != len(wantIDs) {
				t.Fatalf("results = %+v, want %d", res, len(wantIDs))
			}
			for i, r := range res {
				if r.ID != wantIDs[i] || r.Seq != uint64(i+1) || r.Duplicate {
					t.Errorf("results[%d] = %+v, want {%s %d false}", i, r, wantIDs[i], i+1)
				}
			}
			if got := msgCount(t, s); got != 3 {
				t.Errorf("stream messages = %d, want 3", got)
			}
		})
	}
}

func TestSubmitLargeBatch(t *testing.T) {
	n := MustOpenNode(t, nil)
	s := MustStream(t, n)
	const count = 1000
	var b strings.Builder
	b.WriteString("[")
	for i := range count {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"precinct":"n%d","contest":"pres","votes":{"biden":%d,"trump":%d}}`, i%2+1, i, count-i)
	}
	b.WriteString("]")
	start := time.Now()
	res := post(t, n, "/api/v1/reports", b.String()).results(t)
	t.Logf("batch of %d stored in %s", count, time.Since(start))
	if len(res) != count {
		t.Fatalf("got %d results, want %d", len(res), count)
	}
	for i, r := range res {
		if r.Seq != uint64(i+1) || r.Duplicate || !strings.HasPrefix(string(r.ID), "north-") {
			t.Fatalf("results[%d] = %+v, want seq %d", i, r, i+1)
		}
	}
	if got := msgCount(t, s); got != count {
		t.Errorf("stream messages = %d, want %d", got, count)
	}
	waitFor(t, "totals to catch up", func() bool { return n.AppliedSeq() == count })
	got, _ := n.Totals("pres")
	// The last report of n1 is i=998, of n2 i=999.
	if got.TotalVotes != 2*count || got.Precincts.Reporting != 2 {
		t.Errorf("totals = %d votes, %d reporting; want %d, 2", got.TotalVotes, got.Precincts.Reporting, 2*count)
	}
}

func TestSubmitRetry(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"WithID", reportN1},
		// No id and no time: the id is derived before reported_at is set,
		// so the retry gets the same id.
		{"WithoutIDOrTime", `{"precinct":"n1","contest":"pres","votes":{"biden":10,"trump":5}}`},
		{"Batch", "[" + reportN1 + "," + reportN2 + "]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := MustOpenNode(t, nil)
			s := MustStream(t, n)
			first := post(t, n, "/api/v1/reports", tt.body).results(t)
			before := msgCount(t, s)
			again := post(t, n, "/api/v1/reports", tt.body).results(t)
			if len(again) != len(first) {
				t.Fatalf("retry results = %+v, want %d", again, len(first))
			}
			for i := range first {
				if again[i].ID != first[i].ID || again[i].Seq != first[i].Seq || !again[i].Duplicate {
					t.Errorf("retry results[%d] = %+v, want {%s %d true}", i, again[i], first[i].ID, first[i].Seq)
				}
			}
			if got := msgCount(t, s); got != before {
				t.Errorf("stream messages = %d after retry, want %d", got, before)
			}
		})
	}
}

func correction(id string, supersedes string, seq uint64, biden int) string {
	return fmt.Sprintf(`{"id":%q,"precinct":"n1","contest":"pres","votes":{"biden":%d,"trump":5},"complete":true,`+
		`"correction":{"supersedes":%q,"supersedes_seq":%d,"reason":"transposed digits"}}`, id, biden, supersedes, seq)
}

func TestCorrection(t *testing.T) {
	for _, path := range []string{"/api/v1/corrections", "/api/v1/reports"} {
		t.Run(strings.TrimPrefix(path, "/api/v1/"), func(t *testing.T) {
			n := MustOpenNode(t, nil)
			s := MustStream(t, n)
			post(t, n, "/api/v1/reports", reportN1).results(t) // seq 1
			post(t, n, "/api/v1/reports", reportN2).results(t) // seq 2, another subject
			res := post(t, n, path, correction("north-c1", "north-r1", 1, 12)).results(t)
			if len(res) != 1 || res[0].ID != "north-c1" || res[0].Seq != 3 || res[0].Duplicate {
				t.Fatalf("correction results = %+v, want [{north-c1 3 false}]", res)
			}

			t.Run("Stale", func(t *testing.T) {
				r := post(t, n, path, correction("north-c2", "north-r1", 1, 13))
				if r.Status != http.StatusConflict {
					t.Fatalf("status = %d, want 409; body %s", r.Status, r.Body)
				}
				code, msg := r.errorBody(t)
				if code != tally.ECONFLICT || !strings.Contains(msg, "1") || !strings.Contains(msg, "seq 3") {
					t.Errorf("error = %s %q, want conflict naming seq 1 and seq 3", code, msg)
				}
				if got := msgCount(t, s); got != 3 {
					t.Errorf("stream messages = %d, want 3", got)
				}
			})
			t.Run("WrongSupersededID", func(t *testing.T) {
				r := post(t, n, path, correction("north-c3", "north-zz", 3, 13))
				if r.Status != http.StatusConflict {
					t.Fatalf("status = %d, want 409; body %s", r.Status, r.Body)
				}
				if got := msgCount(t, s); got != 3 {
					t.Errorf("stream messages = %d, want 3", got)
				}
			})
			t.Run("Retry", func(t *testing.T) {
				res := post(t, n, path, correction("north-c1", "north-r1", 1, 12)).results(t)
				if len(res) != 1 || res[0].Seq != 3 || !res[0].Duplicate {
					t.Fatalf("retry results = %+v, want [{north-c1 3 true}]", res)
				}
				if got := msgCount(t, s); got != 3 {
					t.Errorf("stream messages = %d, want 3", got)
				}
			})
			t.Run("RetryAfterLaterCorrection", func(t *testing.T) {
				post(t, n, path, correction("north-c4", "north-c1", 3, 14)).results(t) // seq 4
				res := post(t, n, path, correction("north-c1", "north-r1", 1, 12)).results(t)
				if len(res) != 1 || res[0].Seq != 3 || !res[0].Duplicate {
					t.Fatalf("retry results = %+v, want [{north-c1 3 true}]", res)
				}
				if got := msgCount(t, s); got != 4 {
					t.Errorf("stream messages = %d, want 4", got)
				}
			})
		})
	}
}

func TestCorrectionsEndpointRefusesReports(t *testing.T) {
	n := MustOpenNode(t, nil)
	s := MustStream(t, n)
	post(t, n, "/api/v1/reports", reportN1).results(t)
	r := post(t, n, "/api/v1/corrections", "["+correction("north-c1", "north-r1", 1, 12)+","+reportN2+"]")
	if r.Status != http.StatusBadRequest {
		t.Fatalf("status = %d, want 400; body %s", r.Status, r.Body)
	}
	if _, msg := r.errorBody(t); !strings.HasPrefix(msg, "reports[1]: correction") {
		t.Errorf("message = %q, want it to name reports[1]", msg)
	}
	if got := msgCount(t, s); got != 1 {
		t.Errorf("stream messages = %d, want 1", got)
	}
}

func TestSubmitBadInput(t *testing.T) {
	n := MustOpenNode(t, func(c *regional.Config) {
		c.HTTP.MaxBody = 4 << 10
		c.HTTP.MaxBatch = 3
	})
	s := MustStream(t, n)
	post(t, n, "/api/v1/reports", reportN1).results(t)

	rep := func(fields string) string {
		return `{"precinct":"n1","contest":"pres","votes":{"biden":1,"trump":2}` + fields + `}`
	}
	tests := []struct {
		name        string
		path        string
		contentType string
		body        string
		status      int
		code        string
		msg         string // a part of the message
	}{
		{"MalformedJSON", "", "", `{"precinct":"n1",`, 400, "invalid", "malformed JSON"},
		{"NotJSON", "", "", `hello`, 400, "invalid", "want a JSON object or array"},
		{"UnknownField", "", "", rep(`,"colour":"red"`), 400, "invalid", `unknown field "colour"`},
		{"UnknownPrecinct", "", "", `{"precinct":"n9","contest":"pres","votes":{"biden":1}}`, 400, "invalid", `precinct: unknown precinct "n9"`},
		{"UnknownContest", "", "", `{"precinct":"n1","contest":"senate","votes":{"biden":1}}`, 400, "invalid", `contest: unknown contest "senate"`},
		{"ContestNotOnBallot", "", "", `{"precinct":"n2","contest":"gov","votes":{"alice":1}}`, 400, "invalid", `not on the ballot of precinct "n2"`},
		{"UnknownCandidate", "", "", `{"precinct":"n1","contest":"pres","votes":{"nader":1}}`, 400, "invalid", `votes.nader: unknown candidate`},
		{"NegativeCount", "", "", `{"precinct":"n1","contest":"pres","votes":{"biden":-1}}`, 400, "invalid", `votes.biden: must be a non-negative integer`},
		{"FractionalCount", "", "", `{"precinct":"n1","contest":"pres","votes":{"biden":1.5}}`, 400, "invalid", `votes.biden: must be a non-negative integer, got 1.5`},
		{"CountAsString", "", "", `{"precinct":"n1","contest":"pres","votes":{"biden":"7"}}`, 400, "invalid", `votes.biden: must be a non-negative integer, got "7"`},
		{"PrecinctOfAnotherRegion", "", "", `{"precinct":"s1","contest":"pres","votes":{"biden":1}}`, 400, "invalid", `belongs to region "south"`},
		{"ReportOfAnotherRegion", "", "", `{"region":"south","precinct":"s1","contest":"pres","votes":{"biden":1}}`, 400, "invalid", `region: this is the node of region "north"`},
		{"UnknownRegion", "", "", `{"region":"east","precinct":"n1","contest":"pres","votes":{"biden":1}}`, 400, "invalid", `region:`},
		{"VotesExceedBallots", "", "", rep(`,"ballots_cast":2`), 400, "invalid", `more than ballots_cast 2`},
		{"BallotsExceedRegistered", "", "", rep(`,"ballots_cast":2000`), 400, "invalid", `ballots_cast: 2000 is more than the 1000 registered`},
		{"BadID", "", "", `{"id":"south-1","precinct":"n1","contest":"pres","votes":{"biden":1}}`, 400, "invalid", `id: "south-1" must start with the region`},
		{"OversizedBody", "", "", `[` + strings.Repeat(rep("")+",", 200) + rep("") + `]`, 413, "too_large", "body:"},
		{"OneBadInBatch", "", "", `[` + rep("") + `,` + rep(`,"complete":true`) + `,{"precinct":"n1","contest":"pres","votes":{"biden":-4}}]`, 400, "invalid", `reports[2]: votes.biden: must be a non-negative integer`},
		{"BadInObjectBatch", "", "", `{"reports":[` + rep("") + `,{"precinct":"n1","contest":"gov","votes":{"biden":1}}]}`, 400, "invalid", `reports[1]: votes.biden: unknown candidate`},
		{"EmptyBatch", "", "", `[]`, 400, "invalid", "batch: no reports"},
		{"EmptyBody", "", "", ``, 400, "invalid", "body: empty"},
		{"BatchOverMax", "", "", `[` + rep("") + `,` + rep("") + `,` + rep("") + `,` + rep("") + `]`, 413, "too_large", "at most 3 allowed"},
		{"WrongContentType", "", "text/plain", rep(""), 415, "unsupported_media_type", "content-type"},
		{"CorrectionWithoutReason", "/api/v1/corrections", "", `{"precinct":"n1","contest":"pres","votes":{"biden":1},"correction":{"supersedes":"north-r1","supersedes_seq":1}}`, 400, "invalid", "correction.reason: required"},
		{"CorrectionOfNothing", "/api/v1/corrections", "", `{"precinct":"n2","contest":"pres","votes":{"biden":1},"correction":{"supersedes":"north-r1","supersedes_seq":1,"reason":"x"}}`, 409, "conflict", `has no report for contest "pres"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = "/api/v1/reports"
			}
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			r := do(t, http.MethodPost, "http://"+n.HTTPAddr()+path, ct, []byte(tt.body))
			if r.Status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.status, r.Body)
			}
			code, msg := r.errorBody(t)
			if code != tt.code || !strings.Contains(msg, tt.msg) {
				t.Errorf("error = %s %q, want %s containing %q", code, msg, tt.code, tt.msg)
			}
			if got := msgCount(t, s); got != 1 {
				t.Errorf("stream messages = %d, want 1 (nothing stored)", got)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	n := MustOpenNode(t, nil)
	tests := []struct {
		name   string
		method string
		path   string
		status int
		code   string
	}{
		{"UnknownRoute", http.MethodGet, "/api/v1/nope", 404, "not_found"},
		{"WrongMethod", http.MethodGet, "/api/v1/reports", 405, "method_not_allowed"},
		{"UnknownContest", http.MethodGet, "/api/v1/totals/senate", 404, "not_found"},
		{"ContestNotInRegion", http.MethodGet, "/api/v1/totals/nowhere", 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, "http://"+n.HTTPAddr()+tt.path, "", nil)
			if r.Status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", r.Status, tt.status, r.Body)
			}
			if code, _ := r.errorBody(t); code != tt.code {
				t.Errorf("code = %q, want %q", code, tt.code)
			}
		})
	}
	t.Run("Healthz", func(t *testing.T) {
		r := get(t, n, "/healthz")
		if r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"status":"ok"}` {
			t.Errorf("healthz = %d %s", r.Status, r.Body)
		}
	})
	t.Run("MissingContentType", func(t *testing.T) {
		r := do(t, http.MethodPost, "http://"+n.HTTPAddr()+"/api/v1/reports", "", []byte(reportN1))
		if r.Status != 200 {
			t.Errorf("status = %d, want 200; body %s", r.Status, r.Body)
		}
	})
}
