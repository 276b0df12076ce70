package gateway

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tallyvote/tally"
)

// resource is a pre-encoded JSON response with its strong ETag. It is
// immutable once built and shared by every request.
type resource struct {
	body    []byte
	etag    string
	etagHdr []string // {etag}, the header value shared by every response
}

func newResource(v any) (*resource, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return resourceOf(b), nil
}

func resourceOf(body []byte) *resource {
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
	return &resource{body: body, etag: etag, etagHdr: []string{etag}}
}

// view is the cached national state, rebuilt by the watcher after every
// batch of bucket changes and swapped in atomically. It is never modified.
type view struct {
	contests map[tally.ContestID]*resource
	list     *resource // every contest: state contests in election order, then national views
	regions  *resource

	counties  map[tally.ContestID]*resource      // results by county per state contest
	precincts map[tally.ContestID]*precinctTable // every precinct of each state contest
	feed      *resource                          // the latest feed items
}

// publicCacheControl is the Cache-Control of the cached JSON (election,
// contests, regions, feed, results by county, every precinct): any cache,
// a CDN in particular, may keep a response for a second and serve it for
// a few seconds more while it revalidates with the ETag (a 304 when
// nothing changed). A second's staleness is what a reader of the JSON
// accepts; the live stream brings every change as it happens. Errors are
// no-store (handleError), so an outage is never cached.
const publicCacheControl = "public, max-age=1, stale-while-revalidate=5"

// Header values shared by every response that carries them: a header map
// holds the slice itself, so these save an allocation per header and
// request. net/http only reads them; Header.Add on a full slice copies it.
var (
	publicCacheControlHdr = []string{publicCacheControl}
	jsonContentTypeHdr    = []string{echo.MIMEApplicationJSON}
)

// serve writes r with its ETag, or 304 when the client has it already. A
// 304 carries the same ETag and Cache-Control, and no Content-Type.
func serve(c echo.Context, r *resource) error {
	w := c.Response()
	h := w.Header()
	h["Etag"] = r.etagHdr // canonical form of "ETag"
	h["Cache-Control"] = publicCacheControlHdr
	if inm := c.Request().Header["If-None-Match"]; len(inm) > 0 && etagMatch(inm[0], r.etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h["Content-Type"] = jsonContentTypeHdr
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(r.body)
	return err
}

// etagMatch reports whether an If-None-Match header matches etag (weak
// comparison, as RFC 9110 asks for If-None-Match).
func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// electionJSON is the shape of GET /api/v1/election.
type electionJSON struct {
	ID        string        `json:"id"`
	Name      string        `json:"name"`
	Date      string        `json:"date"`
	Test      bool          `json:"test"`
	Regions   []regionJSON  `json:"regions"`
	Contests  []contestJSON `json:"contests"`
	Offices   []officeJSON  `json:"offices"`
	Precincts int           `json:"precincts"`
}

type regionJSON struct {
	ID        tally.RegionID `json:"id"`
	Name      string         `json:"name"`
	State     string         `json:"state,omitempty"`
	Counties  []string       `json:"counties"`
	Precincts int            `json:"precincts"`
}

type contestJSON struct {
	ID         tally.ContestID   `json:"id"`
	Name       string            `json:"name"`
	Office     string            `json:"office"`
	State      string            `json:"state,omitempty"`
	Seats      int               `json:"seats"`
	Candidates []tally.Candidate `json:"candidates"`
	Precincts  int               `json:"precincts"`
}

type officeJSON struct {
	Office   string            `json:"office"`
	National tally.ContestID   `json:"national_contest"`
	Contests []tally.ContestID `json:"contests"`
}

func electionView(e *tally.Election) electionJSON {
	v := electionJSON{
		ID: e.ID, Name: e.Name, Date: e.Date, Test: e.Test,
		Regions:   make([]regionJSON, 0, len(e.Regions)),
		Contests:  make([]contestJSON, 0, len(e.Contests)),
		Offices:   []officeJSON{},
		Precincts: len(e.Precincts),
	}
	for _, r := range e.Regions {
		counties := r.Counties
		if counties == nil {
			counties = []string{}
		}
		v.Regions = append(v.Regions, regionJSON{ID: r.ID, Name: r.Name, State: r.State,
			Counties: counties, Precincts: len(e.RegionPrecincts(r.ID))})
	}
	for _, c := range e.Contests {
		v.Contests = append(v.Contests, contestJSON{ID: c.ID, Name: c.Name, Office: c.Office, State: c.State,
			Seats: c.Seats, Candidates: c.Candidates, Precincts: len(e.ContestPrecincts(c.ID))})
	}
	for _, o := range e.Offices() {
		v.Offices = append(v.Offices, officeJSON{Office: o, National: tally.NationalContestID(o), Contests: e.OfficeContests(o)})
	}
	return v
}
