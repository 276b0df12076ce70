package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeEvalFiles writes a small synthetic two-year results file in the
// normalized format, and its crosswalk, and returns their paths.
func writeEvalFiles(tb testing.TB) (results, crosswalk string) {
	tb.Helper()
	dir := tb.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	var r, x strings.Builder
	r.WriteString("state,year,county,precinct_id,precinct_name,office,candidate,party,votes\n")
	x.WriteString("county,precinct_id_2020,precinct_id_2016,method\n")
	for c := range 4 {
		county := fmt.Sprintf("County %c", 'A'+c)
		for p := range 15 {
			n := 500 + rng.IntN(1500)
			share := 0.45 + 0.1*rng.Float64()
			dem := int(float64(n) * share)
			fmt.Fprintf(&r, "XX,2016,%s,%d,P%d,President,CLINTON,DEM,%d\n", county, p, p, dem)
			fmt.Fprintf(&r, "XX,2016,%s,%d,P%d,President,TRUMP,REP,%d\n", county, p, p, n-dem)
			n2 := int(float64(n) * 1.1)
			dem2 := int(float64(n2) * (share + 0.06 + 0.01*rng.NormFloat64()))
			id := fmt.Sprintf("%d", p)
			if p == 14 {
				id = "NEW" // a precinct without history
			}
			fmt.Fprintf(&r, "XX,2020,%s,%s,P%s,President,BIDEN,DEM,%d\n", county, id, id, dem2)
			fmt.Fprintf(&r, "XX,2020,%s,%s,P%s,President,TRUMP,REP,%d\n", county, id, id, n2-dem2)
			if p == 14 {
				fmt.Fprintf(&x, "%s,NEW,,\n", county)
			} else {
				fmt.Fprintf(&x, "%s,%s,%d,exact\n", county, id, p)
			}
		}
	}
	results = filepath.Join(dir, "xx_president_precinct.csv")
	crosswalk = filepath.Join(dir, "xx_crosswalk_2016_2020.csv")
	if err := os.WriteFile(results, []byte(r.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(crosswalk, []byte(x.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return results, crosswalk
}

func TestEvalJSON(t *testing.T) {
	results, crosswalk := writeEvalFiles(t)
	var out, errOut bytes.Buffer
	m := NewEvalMain(&out, &errOut)
	args := []string{"--results", results, "--crosswalk", crosswalk, "--baseline-year", "2016", "--year", "2020",
		"--orders", "10", "--seed", "3", "--json"}
	if err := m.ParseFlags(args, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v\n%s", err, errOut.String())
	}
	<-m.Done()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Orders   int `json:"orders"`
		Families map[string]struct {
			Orders               int                `json:"orders"`
			Calls                *int               `json:"calls"`
			WrongCalls           *int               `json:"wrong_calls"`
			Coverage90           *float64           `json:"coverage_90"`
			MedianReportedAtCall *float64           `json:"median_reported_at_call"`
			MarginMAE            map[string]float64 `json:"margin_mae"`
		} `json:"families"`
		Pooled   map[string]any `json:"pooled"`
		Contests map[string]any `json:"contests"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if rep.Orders != 10 || len(rep.Families) != 4 || rep.Contests["xx-president"] == nil {
		t.Fatalf("report = %s", out.String())
	}
	for _, f := range []string{"random", "county", "small-first", "large-first"} {
		fs, ok := rep.Families[f]
		if !ok || fs.Orders != 10 || fs.Calls == nil || fs.WrongCalls == nil || *fs.WrongCalls != 0 || fs.Coverage90 == nil ||
			fs.MedianReportedAtCall == nil || len(fs.MarginMAE) != 4 {
			t.Errorf("family %s: %+v", f, fs)
		}
	}
	for _, k := range []string{"orders", "calls", "wrong_calls", "coverage_90", "median_reported_at_call", "margin_mae"} {
		if _, ok := rep.Pooled[k]; !ok {
			t.Errorf("pooled: no %q", k)
		}
	}
	if !strings.Contains(errOut.String(), "eval: 40/40 nights") {
		t.Errorf("progress = %q", errOut.String())
	}
}

func TestEvalTableAndErrors(t *testing.T) {
	results, crosswalk := writeEvalFiles(t)
	var out bytes.Buffer
	m := NewEvalMain(&out, &bytes.Buffer{})
	if err := m.ParseFlags([]string{"--results", results, "--crosswalk", crosswalk, "--orders", "2"}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "pooled") || !strings.Contains(out.String(), "xx-president") {
		t.Errorf("table = %s", out.String())
	}
	for _, args := range [][]string{{"--orders", "0"}, {"--step", "2"}, {"extra"}} {
		if err := NewEvalMain(&bytes.Buffer{}, &bytes.Buffer{}).ParseFlags(args, func(string) string { return "" }); err == nil {
			t.Errorf("ParseFlags(%v): no error", args)
		}
	}
	m = NewEvalMain(&bytes.Buffer{}, &bytes.Buffer{})
	if err := m.ParseFlags([]string{"--results", results, "--crosswalk", filepath.Join(t.TempDir(), "none.csv")}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err == nil {
		t.Error("Run with a missing crosswalk: no error")
	}
}
