package main

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/tallyvote/tally"
)

// bundled holds the real results shipped with Tally (see data/README.md).
//
//go:embed data/*.csv
var bundled embed.FS

// bundledResults are the results files `tally demo` replays by default.
var bundledResults = []string{"data/nh_president_precinct.csv", "data/nm_president_precinct.csv"}

// loadedElection is an election definition and, when it was built from
// results files, the final counts of the replayed year.
type loadedElection struct {
	Election *tally.Election
	Counts   tally.Counts // nil for a definition file
	Rows     []tally.ResultRow
}

// loadElection loads the election named by src.
func loadElection(src ElectionSource) (*loadedElection, error) {
	if src.File != "" {
		e, err := loadElectionFile(src.File)
		if err != nil {
			return nil, err
		}
		return &loadedElection{Election: e}, nil
	}
	rows, err := readResultsFiles(src.Results)
	if err != nil {
		return nil, err
	}
	e, counts, err := tally.BuildElection(rows, tally.BuildOptions{Year: src.Year, Regions: src.Regions})
	if err != nil {
		return nil, err
	}
	return &loadedElection{Election: e, Counts: counts, Rows: rows}, nil
}

// loadElectionFile reads an election definition in JSON or YAML.
func loadElectionFile(path string) (*tally.Election, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
		if b, err = yaml.YAMLToJSON(b); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
	}
	e, err := tally.LoadElection(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %s", path, tally.ErrorMessage(err))
	}
	return e, nil
}

// readResultsFiles reads comma-separated results files, or the bundled data.
func readResultsFiles(list string) ([]tally.ResultRow, error) {
	var rows []tally.ResultRow
	read := func(name string, r io.Reader) error {
		rs, err := tally.ReadResults(r)
		if err != nil {
			return fmt.Errorf("%s: %s", name, tally.ErrorMessage(err))
		}
		rows = append(rows, rs...)
		return nil
	}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if name == "bundled" {
			for _, b := range bundledResults {
				f, err := bundled.Open(b)
				if err != nil {
					return nil, err
				}
				err = read(b, f)
				f.Close()
				if err != nil {
					return nil, err
				}
			}
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		err = read(name, f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("results: no files named")
	}
	return rows, nil
}
