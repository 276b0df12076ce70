package tally_test

import (
	"strings"
	"testing"

	"github.com/tallyvote/tally"
)

func TestBuildElection(t *testing.T) {
	e, counts := MustBuildSmall(t)
	if e.ID != "2020-general" || e.Date != "2020-11-03" {
		t.Errorf("id, date = %q, %q, want 2020-general, 2020-11-03", e.ID, e.Date)
	}
	if got, want := len(e.Contests), 2; got != want {
		t.Fatalf("contests = %d, want %d", got, want)
	}
	xa := e.Contest("xa-president")
	if xa == nil || xa.State != "XA" || xa.Baseline == nil || xa.Baseline.Year != 2016 {
		t.Fatalf("contest xa-president = %+v, want state XA with a 2016 baseline", xa)
	}
	if got := len(xa.Candidates); got != 3 {
		t.Errorf("xa-president candidates = %d, want 3 (smith, jones, write-ins)", got)
	}
	// A precinct is unique only within its county, and ids are subject-safe.
	for _, id := range []tally.PrecinctID{"xa-north-1", "xa-south-1", "xa-east-a-1", "xb-hill-7", "xb-dale-8"} {
		if e.Precinct(id) == nil {
			t.Errorf("precinct %q missing", id)
		}
	}
	if got, want := len(e.Regions), 4; got != want {
		t.Errorf("regions = %d, want %d (2 per state)", got, want)
	}
	// Each county is in exactly one region of its state.
	for _, p := range e.Precincts {
		r := e.Region(p.Region)
		if r == nil || r.State != p.State {
			t.Errorf("precinct %s in region %q of another state", p.ID, p.Region)
		}
	}
	// Counts keep the file's sums, with 0 for candidates a precinct has no row for.
	var smith, jones int64
	for _, byContest := range counts {
		for _, byCand := range byContest {
			smith += byCand["smith"]
			jones += byCand["jones"]
		}
	}
	if smith != 215 || jones != 266 {
		t.Errorf("sums smith=%d jones=%d, want 215, 266", smith, jones)
	}
	if n, ok := counts["xb-dale-8"]["xb-president"]["smith"]; !ok || n != 0 {
		t.Errorf("missing row should count 0, got %d, %v", n, ok)
	}
}

func TestBuildElectionErrors(t *testing.T) {
	rows, err := tally.ReadResults(strings.NewReader("state,year,county,precinct_id,precinct_name,office,candidate,party,votes\nXA,2020,North,1,One,President,SMITH,DEM,1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tally.BuildElection(rows, tally.BuildOptions{Regions: 3}); err == nil || !strings.Contains(err.Error(), "regions") {
		t.Errorf("3 regions of 1 county: err = %v, want an error naming regions", err)
	}
	if _, _, err := tally.BuildElection(rows, tally.BuildOptions{Year: 2016}); err == nil || !strings.Contains(err.Error(), "2016") {
		t.Errorf("missing year: err = %v, want an error naming 2016", err)
	}
}

func TestReadResultsErrors(t *testing.T) {
	const header = "state,year,county,precinct_id,precinct_name,office,candidate,party,votes\n"
	tests := []struct {
		name, in, want string
	}{
		{"MissingColumn", "state,year,county\nXA,2020,North\n", `missing column "precinct_id"`},
		{"NegativeVotes", header + "XA,2020,North,1,One,President,SMITH,DEM,-4\n", "line 2: votes"},
		{"FractionalVotes", header + "XA,2020,North,1,One,President,SMITH,DEM,1.5\n", "line 2: votes"},
		{"BadYear", header + "XA,twenty,North,1,One,President,SMITH,DEM,1\n", "line 2: year"},
		{"NoCounty", header + "XA,2020,,1,One,President,SMITH,DEM,1\n", "line 2: county"},
		{"Empty", header, "no rows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tally.ReadResults(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) || tally.ErrorCode(err) != tally.EINVALID {
				t.Errorf("err = %v, want invalid containing %q", err, tt.want)
			}
		})
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"Ward 1": "ward-1", "A.1": "a-1", "  Doña Ana ": "do-a-ana", "*>": "x", "DE LA FUENTE": "de-la-fuente",
	} {
		if got := tally.Slug(in); got != want {
			t.Errorf("Slug(%q) = %q, want %q", in, got, want)
		}
		if err := tally.ValidToken(tally.Slug(in)); err != nil {
			t.Errorf("Slug(%q) not a valid token: %v", in, err)
		}
	}
}
