package gateway_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/gateway"
)

type errorJSON struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func TestElection(t *testing.T) {
	v := MustEnv(t, nil)
	res := get(t, v.base+"/api/v1/election")
	if res.status != http.StatusOK {
		t.Fatalf("status = %d, want 200: %s", res.status, res.body)
	}
	var got struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Date    string `json:"date"`
		Test    bool   `json:"test"`
		Regions []struct {
			ID        tally.RegionID `json:"id"`
			Name      string         `json:"name"`
			State     string         `json:"state"`
			Counties  []string       `json:"counties"`
			Precincts int            `json:"precincts"`
		} `json:"regions"`
		Contests []struct {
			ID         tally.ContestID   `json:"id"`
			Office     string            `json:"office"`
			Seats      int               `json:"seats"`
			Candidates []tally.Candidate `json:"candidates"`
			Precincts  int               `json:"precincts"`
		} `json:"contests"`
		Offices []struct {
			Office   string            `json:"office"`
			National tally.ContestID   `json:"national_contest"`
			Contests []tally.ContestID `json:"contests"`
		} `json:"offices"`
		Precincts int `json:"precincts"`
	}
	mustJSON(t, res.body, &got)
	if got.ID != "test-2024" || got.Name != "Test General" || got.Date != "2024-11-05" || !got.Test {
		t.Errorf("election header = %+v", got)
	}
	if len(got.Regions) != 3 || got.Regions[0].Name != "New Mexico 1" || got.Regions[0].Counties[0] != "Bernalillo" || got.Regions[0].Precincts != 1 {
		t.Errorf("regions = %+v", got.Regions)
	}
	if len(got.Contests) != 3 || got.Contests[0].ID != "pres-nm" || got.Contests[0].Precincts != 2 ||
		got.Contests[0].Seats != 1 || len(got.Contests[0].Candidates) != 2 {
		t.Errorf("contests = %+v", got.Contests)
	}
	if len(got.Offices) != 2 || got.Offices[0].National != "all-president" || len(got.Offices[0].Contests) != 2 {
		t.Errorf("offices = %+v", got.Offices)
	}
	if got.Precincts != 3 {
		t.Errorf("precincts = %d, want 3", got.Precincts)
	}
	if res.header.Get("ETag") == "" || res.header.Get("Cache-Control") != publicCache {
		t.Errorf("headers = %v", res.header)
	}
}

func TestContests(t *testing.T) {
	v := MustEnv(t, nil)
	res := get(t, v.base+"/api/v1/contests")
	if res.status != http.StatusOK {
		t.Fatalf("status = %d, want 200: %s", res.status, res.body)
	}
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	var got []tally.ContestResult
	mustJSON(t, res.body, &got)
	var ids []string
	for _, c := range got {
		ids = append(ids, string(c.ID))
	}
	want := "pres-nm gov-nm pres-az all-president all-governor"
	if strings.Join(ids, " ") != want {
		t.Errorf("contest order = %v, want %s", ids, want)
	}
	// The corrected count is the one that counts.
	if got[0].Candidates[0].ID != "alice" || got[0].Candidates[0].Votes != 112 || got[0].Precincts.Reporting != 1 || got[0].Corrections != 1 {
		t.Errorf("pres-nm = %+v", got[0])
	}
	if got[3].Scope != "national" || got[3].TotalVotes != 112+80+50+70 {
		t.Errorf("all-president = %+v", got[3])
	}
}

func TestContest(t *testing.T) {
	v := MustEnv(t, nil)
	tests := []struct {
		name   string
		path   string
		status int
		id     tally.ContestID
		code   string
	}{
		{"State", "/api/v1/contests/gov-nm", 200, "gov-nm", ""},
		{"National", "/api/v1/contests/all-president", 200, "all-president", ""},
		{"Unknown", "/api/v1/contests/nope", 404, "", tally.ENOTFOUND},
		{"UnknownPrecinct", "/api/v1/precincts/nope", 404, "", tally.ENOTFOUND},
		{"UnknownRoute", "/api/v1/nope", 404, "", tally.ENOTFOUND},
		{"UnknownAsset", "/nope.js", 404, "", tally.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := get(t, v.base+tt.path)
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", res.status, tt.status, res.body)
			}
			if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q", ct)
			}
			if tt.code != "" {
				var e errorJSON
				mustJSON(t, res.body, &e)
				if e.Error.Code != tt.code || e.Error.Message == "" {
					t.Errorf("error = %+v, want code %q", e, tt.code)
				}
				return
			}
			var got tally.ContestResult
			mustJSON(t, res.body, &got)
			if got.ID != tt.id {
				t.Errorf("id = %q, want %q", got.ID, tt.id)
			}
		})
	}
}

func TestMethodNotAllowed(t *testing.T) {
	v := MustEnv(t, nil)
	res, err := http.Post(v.base+"/api/v1/contests", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var e errorJSON
	if err := jsonDecode(res, &e); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusMethodNotAllowed || e.Error.Code != "method_not_allowed" {
		t.Errorf("POST = %d %+v, want 405 method_not_allowed", res.StatusCode, e)
	}
}

func TestRegions(t *testing.T) {
	v := MustEnv(t, nil)
	res := get(t, v.base+"/api/v1/regions")
	if res.status != http.StatusOK {
		t.Fatalf("status = %d: %s", res.status, res.body)
	}
	var got []tally.RegionStatus
	mustJSON(t, res.body, &got)
	if len(got) != 3 || got[1].ID != "r2" || got[1].Status != tally.StatusLive {
		t.Errorf("regions = %+v", got)
	}
}

func TestHealth(t *testing.T) {
	v := MustEnv(t, nil)
	for _, p := range []string{"/healthz", "/readyz"} {
		if res := get(t, v.base+p); res.status != http.StatusOK {
			t.Errorf("%s = %d, want 200", p, res.status)
		}
	}
}

func TestETag(t *testing.T) {
	v := MustEnv(t, nil)
	url := v.base + "/api/v1/contests/gov-nm"
	first := get(t, url)
	etag := first.header.Get("ETag")
	if first.status != 200 || !strings.HasPrefix(etag, `"`) || first.header.Get("Cache-Control") != publicCache {
		t.Fatalf("first GET = %d etag %q cache %q", first.status, etag, first.header.Get("Cache-Control"))
	}
	if res := get(t, url, "If-None-Match", etag); res.status != http.StatusNotModified || len(res.body) != 0 {
		t.Errorf("conditional GET = %d %q, want 304", res.status, res.body)
	}
	list := get(t, v.base+"/api/v1/contests")

	// A new count changes the contest, its ETag and the list's.
	rep := report(v.e, "b1", "p2", "gov-nm", map[tally.CandidateID]int64{"carol": 10, "dan": 5})
	v.t.Apply(1, rep)
	MustPut(t, v.kv, tally.ContestKey("gov-nm"), v.t.ContestResult("gov-nm", nil))
	var res response
	eventually(t, "new ETag", func() bool {
		res = get(t, url, "If-None-Match", etag)
		return res.status == http.StatusOK
	})
	if res.header.Get("ETag") == etag {
		t.Errorf("ETag unchanged after an update")
	}
	var got tally.ContestResult
	mustJSON(t, res.body, &got)
	if got.Precincts.Reporting != 2 {
		t.Errorf("reporting = %d, want 2", got.Precincts.Reporting)
	}
	if res := get(t, v.base+"/api/v1/contests", "If-None-Match", list.header.Get("ETag")); res.status != http.StatusOK {
		t.Errorf("list conditional GET after update = %d, want 200", res.status)
	}
	if res := get(t, url, "If-None-Match", `"x", W/`+res.header.Get("ETag")); res.status != http.StatusNotModified {
		t.Errorf("GET with a list of ETags = %d, want 304", res.status)
	}
}

// publicCache is the Cache-Control of the cached JSON: a CDN may keep it a
// second, and serve it a little longer while it revalidates with the ETag.
const publicCache = "public, max-age=1, stale-while-revalidate=5"

// TestCacheControl checks each kind of response's caching policy: cached
// JSON (and its 304) public for a second with an ETag; the query pages,
// the audit trail and the stream never stored as fresh; errors, health and
// admin answers never stored.
func TestCacheControl(t *testing.T) {
	v := MustEnv(t, nil)
	contest := get(t, v.base+"/api/v1/contests/pres-nm")
	tests := []struct {
		name    string
		path    string
		headers []string
		status  int
		cache   string
		etag    bool
	}{
		{"Election", "/api/v1/election", nil, 200, publicCache, true},
		{"Contests", "/api/v1/contests", nil, 200, publicCache, true},
		{"Contest", "/api/v1/contests/pres-nm", nil, 200, publicCache, true},
		{"NotModified", "/api/v1/contests/pres-nm", []string{"If-None-Match", contest.header.Get("ETag")}, 304, publicCache, true},
		{"Regions", "/api/v1/regions", nil, 200, publicCache, true},
		{"Feed", "/api/v1/feed", nil, 200, publicCache, true},
		{"AllPrecincts", "/api/v1/contests/pres-nm/precincts", nil, 200, publicCache, true},
		{"PrecinctPage", "/api/v1/contests/pres-nm/precincts?limit=1", nil, 200, "no-cache", false},
		{"UnknownContest", "/api/v1/contests/nope", nil, 404, "no-store", false},
		{"Healthz", "/healthz", nil, 200, "no-store", false},
		{"Readyz", "/readyz", nil, 200, "no-store", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := get(t, v.base+tt.path, tt.headers...)
			if res.status != tt.status {
				t.Fatalf("status = %d, want %d", res.status, tt.status)
			}
			if got := res.header.Get("Cache-Control"); got != tt.cache {
				t.Errorf("Cache-Control = %q, want %q", got, tt.cache)
			}
			if got := res.header.Get("ETag") != ""; got != tt.etag {
				t.Errorf("ETag %q, want one: %v", res.header.Get("ETag"), tt.etag)
			}
			if strings.HasPrefix(tt.path, "/api/") && res.header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("Access-Control-Allow-Origin = %q, want *", res.header.Get("Access-Control-Allow-Origin"))
			}
			if res.header.Get("X-Request-Id") == "" {
				t.Errorf("no X-Request-Id")
			}
			if ct := res.header.Get("Content-Type"); tt.status == 200 && !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q", ct)
			}
		})
	}
	if _, h, _ := postAdmin(t, v.base, "", `{}`); h.Get("Cache-Control") != "no-store" {
		got := h.Get("Cache-Control")
		t.Errorf("admin Cache-Control = %q, want no-store", got)
	}
}

func TestStreamSnapshotAndLive(t *testing.T) {
	v := MustEnv(t, nil)
	s := MustStream(t, v.base, "")
	// Over HTTP/1.1 the stream is not chunked: it ends with the connection.
	if te, cl := s.res.TransferEncoding, s.res.ContentLength; len(te) > 0 || cl != -1 || !s.res.Close {
		t.Errorf("stream Transfer-Encoding %v, Content-Length %d, close %v; want none, -1 (until the connection closes), true", te, cl, s.res.Close)
	}
	// Snapshot: every key once, in revision order.
	seen := map[string]bool{}
	var lastID uint64
	for len(seen) < 6 {
		ev := s.next(t)
		id, err := strconv.ParseUint(ev.id, 10, 64)
		if err != nil || id <= lastID {
			t.Fatalf("event id %q after %d", ev.id, lastID)
		}
		lastID = id
		switch ev.name {
		case "contest":
			var c tally.ContestResult
			mustJSON(t, []byte(ev.data), &c)
			seen["contest."+string(c.ID)] = true
		case "regions":
			var rs []tally.RegionStatus
			mustJSON(t, []byte(ev.data), &rs)
			if len(rs) != 3 {
				t.Errorf("regions = %+v", rs)
			}
			seen["regions"] = true
		default:
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	// A put arrives as an event whose id is its revision.
	status := v.status
	status[1].Status, status[1].Since = tally.StatusOffline, time.Date(2024, 11, 5, 21, 4, 0, 0, time.UTC)
	rev := MustPut(t, v.kv, tally.KeyRegions, status)
	ev := s.next(t)
	if ev.id != strconv.FormatUint(rev, 10) || ev.name != "regions" || !strings.Contains(ev.data, `"offline"`) {
		t.Errorf("live event = %+v, want regions at %d", ev, rev)
	}
}

func TestStreamResume(t *testing.T) {
	v := MustEnv(t, nil)
	before := MustPut(t, v.kv, tally.ContestKey("gov-nm"), v.t.ContestResult("gov-nm", nil))
	r1 := MustPut(t, v.kv, tally.ContestKey("pres-az"), v.t.ContestResult("pres-az", nil))
	r2 := MustPut(t, v.kv, tally.KeyRegions, v.status)
	// Wait until the gateway has seen the last put.
	MustStream(t, v.base, "").nextWithID(t, strconv.FormatUint(r2, 10))

	for _, how := range []string{"header", "query"} {
		t.Run(how, func(t *testing.T) {
			var s *sseStream
			if how == "header" {
				s = MustStream(t, v.base, "", "Last-Event-ID", strconv.FormatUint(before, 10))
			} else {
				s = MustStream(t, v.base, "?last_event_id="+strconv.FormatUint(before, 10))
			}
			if ev := s.next(t); ev.id != strconv.FormatUint(r1, 10) || ev.name != "contest" {
				t.Errorf("first resumed event = %+v, want contest at %d", ev, r1)
			}
			if ev := s.next(t); ev.id != strconv.FormatUint(r2, 10) || ev.name != "regions" {
				t.Errorf("second resumed event = %+v, want regions at %d", ev, r2)
			}
			r3 := MustPut(t, v.kv, tally.ContestKey("pres-nm"), v.t.ContestResult("pres-nm", nil))
			s.nextWithID(t, strconv.FormatUint(r3, 10))
		})
	}
}

func TestStreamResumeBeyondBuffer(t *testing.T) {
	v := MustEnv(t, func(c *gateway.Config) { c.SSEBuffer = 2 })
	var last uint64
	for range 5 {
		last = MustPut(t, v.kv, tally.ContestKey("gov-nm"), v.t.ContestResult("gov-nm", nil))
	}
	MustStream(t, v.base, "").nextWithID(t, strconv.FormatUint(last, 10))
	// Revision 1 fell out of a two-event buffer: a full snapshot comes instead.
	s := MustStream(t, v.base, "?last_event_id=1")
	seen := map[string]bool{}
	for len(seen) < 6 {
		ev := s.next(t)
		seen[ev.name+ev.id] = true
	}
	if !seen["contest"+strconv.FormatUint(last, 10)] {
		t.Errorf("snapshot %v lacks the latest gov-nm at %d", seen, last)
	}
}

func TestStreamSlowViewer(t *testing.T) {
	v := MustEnv(t, func(c *gateway.Config) { c.ClientBuffer = 4 })
	// A viewer that never reads.
	req, err := http.NewRequest(http.MethodGet, v.base+"/api/v1/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	slow, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Body.Close() })
	fast := MustStream(t, v.base, "")

	// Large values fill the slow viewer's socket and queue quickly.
	big := v.t.ContestResult("gov-nm", nil)
	big.Name = strings.Repeat("x", 256<<10)
	var last uint64
	for range 40 {
		last = MustPut(t, v.kv, tally.ContestKey("gov-nm"), big)
	}
	final := MustPut(t, v.kv, tally.ContestKey("pres-nm"), v.t.ContestResult("pres-nm", nil))
	if last >= final {
		t.Fatal("revisions out of order")
	}
	fast.nextWithID(t, strconv.FormatUint(final, 10))
	// And the gateway still answers.
	if res := get(t, v.base+"/readyz"); res.status != http.StatusOK {
		t.Errorf("readyz = %d", res.status)
	}
}

func TestPrecinctAuditTrail(t *testing.T) {
	v := MustEnv(t, nil)
	res := get(t, v.base+"/api/v1/precincts/p1")
	if res.status != http.StatusOK {
		t.Fatalf("status = %d: %s", res.status, res.body)
	}
	type stored struct {
		Seq    uint64        `json:"seq"`
		Report *tally.Report `json:"report"`
	}
	var got struct {
		Precinct tally.Precinct `json:"precinct"`
		Contests []struct {
			Contest tally.ContestID `json:"contest"`
			Name    string          `json:"name"`
			Reports []stored        `json:"reports"`
			Current *stored         `json:"current"`
		} `json:"contests"`
	}
	mustJSON(t, res.body, &got)
	if got.Precinct.ID != "p1" || got.Precinct.Region != "r1" || len(got.Contests) != 2 {
		t.Fatalf("precinct = %+v", got)
	}
	pres := got.Contests[0]
	if pres.Contest != "pres-nm" || len(pres.Reports) != 2 {
		t.Fatalf("pres-nm trail = %+v", pres)
	}
	if pres.Reports[0].Seq != 1 || pres.Reports[0].Report.IsCorrection() || pres.Reports[0].Report.Votes["alice"] != 120 {
		t.Errorf("first = %+v", pres.Reports[0])
	}
	if pres.Reports[1].Seq != 3 || !pres.Reports[1].Report.IsCorrection() || pres.Reports[1].Report.Correction.SupersedesSeq != 1 {
		t.Errorf("second = %+v", pres.Reports[1])
	}
	if pres.Current == nil || pres.Current.Seq != 3 || pres.Current.Report.Votes["alice"] != 112 {
		t.Errorf("current = %+v", pres.Current)
	}
	gov := got.Contests[1]
	if gov.Contest != "gov-nm" || len(gov.Reports) != 1 || gov.Reports[0].Seq != 2 || gov.Current.Seq != 2 {
		t.Errorf("gov-nm trail = %+v", gov)
	}

	// A precinct of a region whose mirror holds nothing for it yet.
	if _, err := v.js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: tally.MirrorStream("r2"), Subjects: []string{tally.ResultsSubjects("r2")},
	}); err != nil {
		t.Fatal(err)
	}
	res = get(t, v.base+"/api/v1/precincts/p2")
	if res.status != http.StatusOK || !bytes.Contains(res.body, []byte(`"reports":[],"current":null`)) {
		t.Errorf("empty trail = %d %s", res.status, res.body)
	}
	// A region without a mirror: the trail is unavailable, not empty.
	res = get(t, v.base+"/api/v1/precincts/p3")
	var e errorJSON
	mustJSON(t, res.body, &e)
	if res.status != http.StatusServiceUnavailable || e.Error.Code != tally.EUNAVAILABLE {
		t.Errorf("no mirror = %d %s", res.status, res.body)
	}
}

func TestReadyBeforeBucket(t *testing.T) {
	nc := runJetStream(t)
	e := MustElection(t)
	g := MustOpenGateway(t, nc, e, nil)
	base := "http://" + g.Addr()
	for _, p := range []string{"/readyz", "/api/v1/contests", "/api/v1/contests/gov-nm", "/api/v1/regions"} {
		res := get(t, base+p)
		var got errorJSON
		mustJSON(t, res.body, &got)
		if res.status != http.StatusServiceUnavailable || got.Error.Code != tally.EUNAVAILABLE {
			t.Errorf("%s before the bucket = %d %s, want 503 unavailable", p, res.status, res.body)
		}
	}
	if res := get(t, base+"/healthz"); res.status != http.StatusOK {
		t.Errorf("healthz = %d", res.status)
	}
	if res := get(t, base+"/api/v1/election"); res.status != http.StatusOK {
		t.Errorf("election = %d", res.status)
	}
	s := MustStream(t, base, "") // connected before anything exists

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv := MustBucket(t, js)
	MustReady(t, base)
	if res := get(t, base+"/api/v1/contests"); res.status != http.StatusOK || string(res.body) != "[]" {
		t.Errorf("contests of an empty bucket = %d %s", res.status, res.body)
	}
	rev := MustPut(t, kv, tally.ContestKey("gov-nm"), tally.NewTotals(e).ContestResult("gov-nm", nil))
	if ev := s.next(t); ev.id != strconv.FormatUint(rev, 10) || ev.name != "contest" {
		t.Errorf("first event = %+v", ev)
	}
}

func TestDashboard(t *testing.T) {
	v := MustEnv(t, nil)
	res := get(t, v.base+"/")
	if res.status != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), "text/html") ||
		!bytes.Contains(res.body, []byte(`src="app.js"`)) || !bytes.Contains(res.body, []byte(`id="banner"`)) {
		t.Errorf("GET / = %d %q", res.status, res.header.Get("Content-Type"))
	}
	tests := []struct{ path, ctype string }{
		{"/app.js", "text/javascript"},
		{"/style.css", "text/css"},
		{"/index.html", "text/html"},
	}
	for _, tt := range tests {
		res := get(t, v.base+tt.path)
		if res.status != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), tt.ctype) {
			t.Errorf("GET %s = %d %q, want %s", tt.path, res.status, res.header.Get("Content-Type"), tt.ctype)
		}
		if res := get(t, v.base+tt.path, "If-None-Match", res.header.Get("ETag")); res.status != http.StatusNotModified {
			t.Errorf("conditional GET %s = %d, want 304", tt.path, res.status)
		}
	}
}

func TestRequestID(t *testing.T) {
	v := MustEnv(t, nil)
	if res := get(t, v.base+"/healthz", "X-Request-Id", "abc-123"); res.header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("request id = %q, want the caller's", res.header.Get("X-Request-Id"))
	}
	if res := get(t, v.base+"/healthz"); len(res.header.Get("X-Request-Id")) != 24 {
		t.Errorf("request id = %q, want a generated one", res.header.Get("X-Request-Id"))
	}
}

func TestCloseEndsStreams(t *testing.T) {
	v := MustEnv(t, nil)
	s := MustStream(t, v.base, "")
	s.next(t)
	done := make(chan error, 1)
	go func() { done <- v.g.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close() = %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Close did not return")
	}
	for range s.events {
		// drain until the stream ends
	}
	if err := v.g.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
}

// BenchmarkContestGet serves a cached contest through the echo handler,
// with every middleware; the rate limit is off (as in tally bench), or it
// would answer 429 once the burst is spent.
func BenchmarkContestGet(b *testing.B) {
	v := MustEnv(b, func(c *gateway.Config) { c.RateLimit = -1 })
	h := v.g.Handler()
	req := httptest.NewRequest(http.MethodGet, "/api/v1/contests/pres-nm", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status = %d", w.Code)
		}
	}
}
