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
	body []byte
	etag string
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
	return &resource{body: body, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`}
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

// serve writes r with its ETag, or 304 when the client has it already.
func serve(c echo.Context, r *resource) error {
	h := c.Response().Header()
	h.Set("ETag", r.etag)
	h.Set("Cache-Control", "no-cache")
	if etagMatch(c.Request().Header.Get("If-None-Match"), r.etag) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, r.body)
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
