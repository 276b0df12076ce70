package tally_test

import (
	"os"
	"testing"

	"github.com/tallyvote/tally"
)

// MustBuildSmall builds the election of testdata/results_small.csv: states XA
// (counties North, South, East) and XB (Hill, Dale), two regions each.
func MustBuildSmall(tb testing.TB) (*tally.Election, tally.Counts) {
	tb.Helper()
	f, err := os.Open("testdata/results_small.csv")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	rows, err := tally.ReadResults(f)
	if err != nil {
		tb.Fatal(err)
	}
	e, counts, err := tally.BuildElection(rows, tally.BuildOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return e, counts
}

func i64(v int64) *int64 { return &v }
