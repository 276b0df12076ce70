package projector_test

import (
	"io"
	"strings"
	"testing"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/projector"
)

const baselineCSV = `state,year,county,precinct_id,precinct_name,office,candidate,party,votes
XX,2016,Alpha,1,One,President,CLINTON,DEM,60
XX,2016,Alpha,1,One,President,TRUMP,REP,40
XX,2016,Alpha,2,Two,President,CLINTON,DEM,30
XX,2016,Alpha,2,Two,President,TRUMP,REP,70
XX,2016,Alpha,OLD,Old,President,CLINTON,DEM,50
XX,2016,Alpha,OLD,Old,President,TRUMP,REP,50
XX,2016,Alpha,OLD,Old,President,STEIN,GRN,20
XX,2016,Beta,9,Nine,President,CLINTON,DEM,10
XX,2016,Beta,9,Nine,President,TRUMP,REP,90
XX,2020,Alpha,1,One,President,BIDEN,DEM,70
XX,2020,Alpha,1,One,President,TRUMP,REP,45
XX,2020,Alpha,2A,Two A,President,BIDEN,DEM,20
XX,2020,Alpha,2A,Two A,President,TRUMP,REP,50
XX,2020,Alpha,NEW,New,President,BIDEN,DEM,40
XX,2020,Alpha,NEW,New,President,TRUMP,REP,40
XX,2020,Beta,9,Nine,President,BIDEN,DEM,15
XX,2020,Beta,9,Nine,President,TRUMP,REP,85
`

// county,precinct_id_2020,precinct_id_2016,method: 2A continues 2, NEW has
// no predecessor, 1 and 9 have no row (same id).
const crosswalkCSV = `county,precinct_id_2020,precinct_id_2016,method
Alpha,2A,2,alpha
Alpha,NEW,,
`

func TestLoadBaseline(t *testing.T) {
	rows, err := tally.ReadResults(strings.NewReader(baselineCSV))
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := tally.BuildElection(rows, tally.BuildOptions{Regions: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := projector.LoadBaseline(e, rows, 2016, map[string]io.Reader{"xx_crosswalk_2016_2020.csv": strings.NewReader(crosswalkCSV)})
	if err != nil {
		t.Fatal(err)
	}
	cb := b.Contests["xx-president"]
	if cb == nil {
		t.Fatal("no baseline for xx-president")
	}
	if cb.Matched["biden"] != "clinton" || cb.Matched["trump"] != "trump" {
		t.Errorf("Matched = %v, want biden->clinton (party), trump->trump (id)", cb.Matched)
	}
	tests := []struct {
		precinct    tally.PrecinctID
		biden, trmp int64
		total       int64
		history     bool
	}{
		{"xx-alpha-1", 60, 40, 100, true},    // same id, no crosswalk row
		{"xx-alpha-2a", 30, 70, 100, true},   // via the crosswalk
		{"xx-alpha-new", 50, 50, 120, false}, // no predecessor: the county's orphan (OLD)
		{"xx-beta-9", 10, 90, 100, true},
	}
	for _, tt := range tests {
		pb, ok := cb.Precincts[tt.precinct]
		if !ok {
			t.Errorf("%s: no baseline", tt.precinct)
			continue
		}
		if pb.Votes["biden"] != tt.biden || pb.Votes["trump"] != tt.trmp || pb.Total != tt.total || pb.History != tt.history {
			t.Errorf("%s: %+v, want biden %d trump %d total %d history %v", tt.precinct, pb, tt.biden, tt.trmp, tt.total, tt.history)
		}
	}
}

func TestLoadBaselineErrors(t *testing.T) {
	rows, _ := tally.ReadResults(strings.NewReader(baselineCSV))
	e, _, _ := tally.BuildElection(rows, tally.BuildOptions{Regions: 1})
	tests := []struct{ name, csv, want string }{
		{"MissingColumn", "county,precinct_id_2020\nAlpha,1\n", `crosswalk xx.csv: line 1: missing column "precinct_id_2016"`},
		{"ShortRow", "county,precinct_id_2020,precinct_id_2016\nAlpha,1,1\nAlpha\n", "crosswalk xx.csv: line 3"},
		{"EmptyTarget", "county,precinct_id_2020,precinct_id_2016\nAlpha,,1\n", "crosswalk xx.csv: line 2: county and target precinct id required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := projector.LoadBaseline(e, rows, 2016, map[string]io.Reader{"xx.csv": strings.NewReader(tt.csv)})
			if err == nil || !strings.Contains(err.Error(), tt.want) || tally.ErrorCode(err) != tally.EINVALID {
				t.Errorf("err = %v, want %q (invalid)", err, tt.want)
			}
		})
	}
}
