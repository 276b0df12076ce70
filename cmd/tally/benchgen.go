package main

// The synthetic election of `tally bench`: its definition, and the reports
// of every precinct and contest, generated on the fly (a full-size US
// election is some 10 million reports, too many to hold in memory at once).

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/tallyvote/tally"
)

// benchCandidates are the candidates of every synthetic contest. They share
// ids across contests, so the national view of an office sums them.
var benchCandidates = []tally.CandidateID{"a", "b", "c"}

// benchNight is when the synthetic night starts; report k of a cell is made
// k hours later.
var benchNight = time.Date(2024, 11, 5, 20, 0, 0, 0, time.UTC)

// benchElection is a synthetic election: regions r1..rN, each with its share
// of the precincts (in one block) and its own statewide contests <region>-c0
// .. -c<C-1>, every one on the ballot of every precinct of the region.
// Contest j of every region has office "office-j" ("president" for j = 0),
// so each office has a national view summing the regions' contests.
type benchElection struct {
	e        *tally.Election
	regions  []tally.RegionID
	first    []int // index of each region's first precinct in e.Precincts
	count    []int // precincts per region
	contests int
	reports  int     // reports per precinct and contest
	correct  float64 // share of cells whose final report is corrected
}

// newBenchElection builds the election for the given size.
func newBenchElection(precincts, contests, regions, reports int, corrections float64) (*benchElection, error) {
	if regions < 1 || precincts < regions || contests < 1 || reports < 1 {
		return nil, fmt.Errorf("bench: want at least one region, contest and report, and a precinct per region")
	}
	b := &benchElection{contests: contests, reports: reports, correct: corrections}
	e := &tally.Election{ID: "bench", Name: "Synthetic election (tally bench)", Date: "2024-11-05", Test: true}
	for r := range regions {
		id := tally.RegionID("r" + strconv.Itoa(r+1))
		b.regions = append(b.regions, id)
		e.Regions = append(e.Regions, tally.Region{ID: id, Name: "Region " + strconv.Itoa(r+1), State: string(id)})
		for j := range contests {
			office := "office-" + strconv.Itoa(j)
			if j == 0 {
				office = "president"
			}
			c := tally.Contest{ID: benchContest(id, j), Name: fmt.Sprintf("Region %d contest %d", r+1, j), Office: office, State: string(id)}
			for _, cand := range benchCandidates {
				c.Candidates = append(c.Candidates, tally.Candidate{ID: cand, Name: "Candidate " + string(cand)})
			}
			e.Contests = append(e.Contests, c)
		}
	}
	for r, id := range b.regions {
		lo, hi := r*precincts/regions, (r+1)*precincts/regions
		b.first = append(b.first, lo)
		b.count = append(b.count, hi-lo)
		ballot := make([]tally.ContestID, contests)
		for j := range ballot {
			ballot[j] = benchContest(id, j)
		}
		for i := lo; i < hi; i++ {
			e.Precincts = append(e.Precincts, tally.Precinct{
				ID: benchPrecinct(i), Name: "Precinct " + strconv.Itoa(i), County: fmt.Sprintf("%s-county-%d", id, (i-lo)/100),
				State: string(id), Region: id, Contests: ballot,
			})
		}
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b.e = e
	return b, nil
}

func benchContest(r tally.RegionID, j int) tally.ContestID {
	return tally.ContestID(string(r) + "-c" + strconv.Itoa(j))
}

func benchPrecinct(i int) tally.PrecinctID { return tally.PrecinctID("p" + strconv.Itoa(i)) }

// cellOf returns the cell of a report or correction this file made, from
// its region, precinct and contest ids (see newBenchElection, benchPrecinct
// and benchContest).
func cellOf(r *tally.Report) cell {
	ri, _ := strconv.Atoi(strings.TrimPrefix(string(r.Region), "r"))
	p, _ := strconv.Atoi(strings.TrimPrefix(string(r.Precinct), "p"))
	j, _ := strconv.Atoi(strings.TrimPrefix(string(r.Contest), string(r.Region)+"-c"))
	return cell{r: ri - 1, p: p, j: j}
}

// cell is one precinct and contest: p is the precinct's index in the
// election, j the contest's index on the region's ballot.
type cell struct {
	r, p, j int
}

// hash is a deterministic hash of a cell and a salt.
func (c cell) hash(salt int) uint32 {
	h := fnv.New32a()
	var buf [32]byte
	b := strconv.AppendInt(buf[:0], int64(c.p), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(c.j), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(salt), 10)
	h.Write(b)
	return h.Sum32()
}

// corrected reports whether the cell's final report is corrected.
func (b *benchElection) corrected(c cell) bool {
	return float64(c.hash(-1)%100000) < b.correct*100000
}

// finalVotes returns candidate m's votes in the cell's final report, and in
// its correction.
func (b *benchElection) finalVotes(c cell, m int) (final, correction int64) {
	f := int64(50 + c.hash(m)%450)
	if m == 0 {
		return f, f + 7
	}
	return f, f
}

// votesAt returns candidate m's cumulative votes in report k of the cell
// (k >= reports-1 is the final count or, past it, a later growing count).
func (b *benchElection) votesAt(c cell, m, k int) int64 {
	f, _ := b.finalVotes(c, m)
	return f * int64(k+1) / int64(b.reports)
}

// report returns report k of cell c (0-based; k >= reports-1 is complete).
func (b *benchElection) report(c cell, k int) *tally.Report {
	reg := b.regions[c.r]
	votes := make(map[tally.CandidateID]int64, len(benchCandidates))
	for m, cand := range benchCandidates {
		votes[cand] = b.votesAt(c, m, k)
	}
	return &tally.Report{
		ID:     tally.EventID(string(reg) + "-" + strconv.Itoa(c.p) + "-" + strconv.Itoa(c.j) + "-" + strconv.Itoa(k)),
		Region: reg, Precinct: benchPrecinct(c.p), Contest: benchContest(reg, c.j), Votes: votes,
		Complete: k >= b.reports-1, ReportedAt: benchNight.Add(time.Duration(k) * time.Hour),
	}
}

// correction returns the correction of cell c's final report, stored at seq.
func (b *benchElection) correction(c cell, seq uint64) *tally.Report {
	fin := b.report(c, b.reports-1)
	r := *fin
	r.ID = fin.ID + "-x"
	r.Votes = make(map[tally.CandidateID]int64, len(benchCandidates))
	for m, cand := range benchCandidates {
		_, r.Votes[cand] = b.finalVotes(c, m)
	}
	r.ReportedAt = fin.ReportedAt.Add(time.Hour)
	r.Correction = &tally.Correction{Supersedes: fin.ID, SupersedesSeq: seq, Reason: "bench correction"}
	return &r
}

// regionCells returns region r's cells whose precinct's index within the
// region is client (mod clients), in precinct then contest order.
func (b *benchElection) regionCells(r, client, clients int) []cell {
	var cs []cell
	for i := client; i < b.count[r]; i += clients {
		for j := range b.contests {
			cs = append(cs, cell{r: r, p: b.first[r] + i, j: j})
		}
	}
	return cs
}

// expected returns the final national votes of every state contest, per
// candidate, when every report and correction of the ingest is applied.
func (b *benchElection) expected() map[tally.ContestID][]int64 {
	out := map[tally.ContestID][]int64{}
	for r, reg := range b.regions {
		for i := range b.count[r] {
			for j := range b.contests {
				c := cell{r: r, p: b.first[r] + i, j: j}
				id := benchContest(reg, j)
				if out[id] == nil {
					out[id] = make([]int64, len(benchCandidates))
				}
				for m := range benchCandidates {
					f, fx := b.finalVotes(c, m)
					if b.corrected(c) {
						f = fx
					}
					out[id][m] += f
				}
			}
		}
	}
	return out
}

// appendReport appends r's canonical encoding (Report.Encode) to dst, for
// the reports this file makes: no vote types, ballots, office or signature.
// Writing it by hand keeps the load generator's own cost small;
// TestBenchEncoding checks that it matches Encode.
func appendReport(dst []byte, r *tally.Report) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendQuote(dst, string(r.ID))
	dst = append(dst, `,"region":`...)
	dst = strconv.AppendQuote(dst, string(r.Region))
	dst = append(dst, `,"precinct":`...)
	dst = strconv.AppendQuote(dst, string(r.Precinct))
	dst = append(dst, `,"contest":`...)
	dst = strconv.AppendQuote(dst, string(r.Contest))
	dst = append(dst, `,"votes":{`...)
	for i, cand := range benchCandidates { // sorted
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendQuote(dst, string(cand))
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, r.Votes[cand], 10)
	}
	dst = append(dst, `},"complete":`...)
	dst = strconv.AppendBool(dst, r.Complete)
	dst = append(dst, `,"reported_at":"`...)
	dst = r.ReportedAt.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	if c := r.Correction; c != nil {
		dst = append(dst, `,"correction":{"supersedes":`...)
		dst = strconv.AppendQuote(dst, string(c.Supersedes))
		dst = append(dst, `,"supersedes_seq":`...)
		dst = strconv.AppendUint(dst, c.SupersedesSeq, 10)
		dst = append(dst, `,"reason":`...)
		reason, _ := json.Marshal(c.Reason) // a string always encodes
		dst = append(dst, reason...)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}
