package tally

import (
	"encoding/csv"
	"errors"
	"io"
	"strconv"
	"strings"
)

// reportColumns are the columns of a reports CSV, in this order.
var reportColumns = []string{"precinct", "contest", "candidate", "votes", "complete"}

// MaxCSVReports is the most reports ReadReportsCSV returns.
const MaxCSVReports = 100000

// ReadReportsCSV reads reports from CSV with the header
// precinct,contest,candidate,votes,complete: one line per candidate, the
// consecutive lines of one precinct and contest making one report of region
// reg. complete is true or false and must be the same on every line of a
// report. Ids, times, offices and signatures are left for the caller.
// Errors have code EINVALID and name the line.
func ReadReportsCSV(r io.Reader, reg RegionID) ([]*Report, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(reportColumns)
	header, err := cr.Read()
	if err != nil {
		return nil, Errorf(EINVALID, "reports csv: header: %s", csvErr(err))
	}
	for i, col := range reportColumns {
		if strings.TrimSpace(strings.ToLower(header[i])) != col {
			return nil, Errorf(EINVALID, "reports csv: header: column %d is %q, want %s", i+1, header[i], strings.Join(reportColumns, ","))
		}
	}
	var out []*Report
	var cur *Report
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, Errorf(EINVALID, "reports csv: line %d: %s", line, csvErr(err))
		}
		p, c, cand := PrecinctID(strings.TrimSpace(rec[0])), ContestID(strings.TrimSpace(rec[1])), CandidateID(strings.TrimSpace(rec[2]))
		if p == "" || c == "" || cand == "" {
			return nil, Errorf(EINVALID, "reports csv: line %d: precinct, contest and candidate are required", line)
		}
		votes, err := strconv.ParseInt(strings.TrimSpace(rec[3]), 10, 64)
		if err != nil || votes < 0 {
			return nil, Errorf(EINVALID, "reports csv: line %d: votes: must be a non-negative integer, got %q", line, rec[3])
		}
		complete, err := strconv.ParseBool(strings.TrimSpace(rec[4]))
		if err != nil {
			return nil, Errorf(EINVALID, "reports csv: line %d: complete: want true or false, got %q", line, rec[4])
		}
		if cur == nil || cur.Precinct != p || cur.Contest != c {
			if len(out) == MaxCSVReports {
				return nil, Errorf(EINVALID, "reports csv: line %d: more than %d reports", line, MaxCSVReports)
			}
			cur = &Report{Region: reg, Precinct: p, Contest: c, Votes: map[CandidateID]int64{}, Complete: complete}
			out = append(out, cur)
		} else if cur.Complete != complete {
			return nil, Errorf(EINVALID, "reports csv: line %d: complete: %v, but earlier lines of precinct %q, contest %q say %v", line, complete, p, c, cur.Complete)
		}
		if _, dup := cur.Votes[cand]; dup {
			return nil, Errorf(EINVALID, "reports csv: line %d: candidate %q listed twice for precinct %q, contest %q", line, cand, p, c)
		}
		cur.Votes[cand] = votes
	}
	if len(out) == 0 {
		return nil, Errorf(EINVALID, "reports csv: no reports")
	}
	return out, nil
}

func csvErr(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	if err == io.EOF {
		return "empty file"
	}
	return err.Error()
}
