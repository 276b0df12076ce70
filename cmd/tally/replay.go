package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tallyvote/tally"
)

// Replayer publishes a results file through the regions' intake, in a
// reporting order drawn from Seed: each precinct sends, for every contest on
// its ballot, maybe a partial count first, then its final count; some final
// counts are wrong and followed by a correction to the true count. When it
// is done, the latest report of every precinct and contest is the file's
// count, so national totals must equal the file's sums.
type Replayer struct {
	Election *tally.Election
	Counts   tally.Counts
	// Intake maps each region to the base URL of its intake (http://host:port).
	Intake map[tally.RegionID]string
	Config ReplayConfig
	// Progress receives a progress line about once a second; nil for none.
	Progress io.Writer
	// Client posts the reports; nil means a client with a 30 s timeout.
	Client *http.Client
	// Signers, when set, sign each report as its precinct's office, at the
	// time it is sent. A precinct without a signer is an error.
	Signers map[tally.PrecinctID]signer
	// Accepted, when set, is called with every report the intake
	// acknowledged and its sequence in the region's stream, from the
	// region's goroutine.
	Accepted func(rep *tally.Report, seq uint64)

	sent, corrected, duplicates atomic.Int64
}

// ReplayStats sums up a replay.
type ReplayStats struct {
	Reports     int64         // reports accepted, corrections included
	Corrections int64         // corrections among them
	Duplicates  int64         // retried reports the intake recognised
	Elapsed     time.Duration // wall time
}

// replayStep is one report to send at offset At of the night.
type replayStep struct {
	at     time.Duration
	region tally.RegionID
	rep    *tally.Report
	fixes  *replayStep // for a correction: the report it corrects
	seq    uint64
	done   bool
}

// plan builds the night's reports, sorted by time.
func (r *Replayer) plan() []*replayStep {
	rng := rand.New(rand.NewPCG(uint64(r.Config.Seed), 0x7a11))
	night := time.Duration(r.Config.Night)
	ps := r.Election.Precincts
	order := rng.Perm(len(ps))
	var steps []*replayStep
	for pos, pi := range order {
		p := &ps[pi]
		final := time.Duration((float64(pos) + rng.Float64()) / float64(len(ps)) * float64(night))
		partial := rng.Float64() < r.Config.Partial
		frac := 0.2 + 0.6*rng.Float64()
		at := time.Duration(float64(final) * (0.3 + 0.6*rng.Float64()))
		wrong := rng.Float64() < r.Config.Corrections
		fixAt := final + time.Duration(float64(night-final)*rng.Float64())
		for _, cid := range p.Contests {
			counts := r.Counts[p.ID][cid]
			if counts == nil {
				continue
			}
			id := func(kind string) tally.EventID {
				return tally.EventID(fmt.Sprintf("%s-replay%d-%s-%s-%s", p.Region, r.Config.Seed, p.ID, cid, kind))
			}
			mk := func(kind string, votes map[tally.CandidateID]int64, complete bool) *tally.Report {
				return &tally.Report{ID: id(kind), Region: p.Region, Precinct: p.ID, Contest: cid, Votes: votes, Complete: complete}
			}
			if partial {
				votes := make(map[tally.CandidateID]int64, len(counts))
				for c, n := range counts {
					votes[c] = int64(float64(n) * frac)
				}
				steps = append(steps, &replayStep{at: at, region: p.Region, rep: mk("p", votes, false)})
			}
			if !wrong {
				steps = append(steps, &replayStep{at: final, region: p.Region, rep: mk("f", counts, true)})
				continue
			}
			// A transcription error on the leading candidate, then its correction.
			bad := make(map[tally.CandidateID]int64, len(counts))
			var lead tally.CandidateID
			for c, n := range counts {
				bad[c] = n
				if lead == "" || n > counts[lead] || n == counts[lead] && c < lead {
					lead = c
				}
			}
			bad[lead] += 1 + counts[lead]/10
			wrongFinal := &replayStep{at: final, region: p.Region, rep: mk("f", bad, true)}
			fix := mk("c", counts, true)
			fix.Correction = &tally.Correction{Reason: "transcription error in the final count"}
			steps = append(steps, wrongFinal, &replayStep{at: fixAt, region: p.Region, rep: fix, fixes: wrongFinal})
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].at < steps[j].at })
	return steps
}

// Run replays the night and returns when every report has been accepted, on
// the first error, or when ctx ends.
func (r *Replayer) Run(ctx context.Context) (ReplayStats, error) {
	speed, err := parseSpeed(r.Config.Speed)
	if err != nil {
		return ReplayStats{}, fmt.Errorf("speed: %v", err)
	}
	if r.Client == nil {
		r.Client = &http.Client{Timeout: 30 * time.Second}
	}
	steps := r.plan()
	byRegion := map[tally.RegionID][]int{}
	for i, s := range steps {
		byRegion[s.region] = append(byRegion[s.region], i)
	}
	for reg := range byRegion {
		if r.Intake[reg] == "" {
			return ReplayStats{}, fmt.Errorf("intake: no URL for region %q", reg)
		}
	}
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex // guards steps' seq and done across region workers
	var wg sync.WaitGroup
	errc := make(chan error, len(byRegion))
	for reg, idx := range byRegion {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.runRegion(ctx, reg, steps, idx, speed, start, &mu); err != nil {
				errc <- fmt.Errorf("region %s: %w", reg, err)
				cancel()
			}
		}()
	}
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		r.progress(ctx, len(steps), start)
	}()
	wg.Wait()
	cancel()
	<-progressDone
	stats := ReplayStats{Reports: r.sent.Load(), Corrections: r.corrected.Load(), Duplicates: r.duplicates.Load(), Elapsed: time.Since(start)}
	select {
	case err := <-errc:
		return stats, err
	default:
	}
	if stats.Reports < int64(len(steps)) {
		return stats, fmt.Errorf("%w: %d of %d", errReplayIncomplete, stats.Reports, len(steps))
	}
	return stats, nil
}

// runRegion sends one region's steps in order, in batches of what is due.
// A correction waits for the sequence of the report it corrects.
func (r *Replayer) runRegion(ctx context.Context, reg tally.RegionID, steps []*replayStep, idx []int, speed float64, start time.Time, mu *sync.Mutex) error {
	url := r.Intake[reg] + "/api/v1/reports"
	rng := rand.New(rand.NewPCG(uint64(r.Config.Seed), uint64(len(reg))<<32|uint64(idx[0])))
	for next := 0; next < len(idx); {
		if speed > 0 {
			due := start.Add(time.Duration(float64(steps[idx[next]].at) / speed))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(d):
				}
			}
		}
		now := time.Now()
		var batch []*replayStep
		mu.Lock()
		for next < len(idx) && len(batch) < r.Config.Batch {
			s := steps[idx[next]]
			if speed > 0 && start.Add(time.Duration(float64(s.at)/speed)).After(now) {
				break
			}
			if target := s.fixes; target != nil {
				if !target.done {
					break // its target is in this batch: send it in the next one
				}
				s.rep.Correction.Supersedes = target.rep.ID
				s.rep.Correction.SupersedesSeq = target.seq
			}
			batch = append(batch, s)
			next++
		}
		mu.Unlock()
		if len(batch) == 0 {
			return fmt.Errorf("correction %s: the report it corrects was never accepted", steps[idx[next]].rep.ID)
		}
		res, err := r.post(ctx, url, batch)
		if err == nil && rng.Float64() < r.Config.Retries {
			// An office that missed the answer sends the batch again: the
			// intake must recognise every report, with its sequence.
			var again []intakeResult
			if again, err = r.post(ctx, url, batch); err == nil {
				err = checkRetry(batch, res, again)
			}
			if err == nil {
				r.duplicates.Add(int64(len(batch)))
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if r.Accepted != nil {
			for i, s := range batch {
				r.Accepted(s.rep, res[i].Seq)
			}
		}
		mu.Lock()
		for i, s := range batch {
			s.seq, s.done = res[i].Seq, true
			if res[i].Duplicate {
				r.duplicates.Add(1)
			}
			if s.rep.Correction != nil {
				r.corrected.Add(1)
			}
		}
		mu.Unlock()
		r.sent.Add(int64(len(batch)))
	}
	return nil
}

// checkRetry checks the answer to a batch sent again: every report a
// duplicate, at its first sequence.
func checkRetry(batch []*replayStep, first, again []intakeResult) error {
	for i, s := range batch {
		if !again[i].Duplicate || again[i].Seq != first[i].Seq {
			return fmt.Errorf("retried report %s: answered duplicate %v at seq %d, want a duplicate of seq %d",
				s.rep.ID, again[i].Duplicate, again[i].Seq, first[i].Seq)
		}
	}
	return nil
}

type intakeResult struct {
	ID        tally.EventID `json:"id"`
	Seq       uint64        `json:"seq"`
	Duplicate bool          `json:"duplicate"`
}

// post sends a batch, retrying on network errors and 5xx: every report has
// its id, so a retry is recognised as a duplicate and answered with the
// original sequence.
func (r *Replayer) post(ctx context.Context, url string, batch []*replayStep) ([]intakeResult, error) {
	reps := make([]*tally.Report, len(batch))
	now := time.Now()
	for i, s := range batch {
		reps[i] = s.rep
		if r.Signers != nil {
			sg, ok := r.Signers[s.rep.Precinct]
			if !ok {
				return nil, fmt.Errorf("keys: no office key for precinct %q", s.rep.Precinct)
			}
			if err := sg.sign(s.rep, now); err != nil {
				return nil, fmt.Errorf("sign %s: %w", s.rep.ID, err)
			}
		}
	}
	body, err := json.Marshal(reps)
	if err != nil {
		return nil, err
	}
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		res, retry, err := r.postOnce(ctx, url, body)
		if err == nil {
			if len(res) != len(batch) {
				return nil, fmt.Errorf("intake answered %d results for %d reports", len(res), len(batch))
			}
			return res, nil
		}
		if !retry || attempt == 8 || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

func (r *Replayer) postOnce(ctx context.Context, url string, body []byte) (res []intakeResult, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.Client.Do(req)
	if err != nil {
		return nil, true, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, true, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal(b, &e) // a body that is not our JSON error still gets reported by status
		msg := e.Error.Message
		if msg == "" {
			msg = string(b)
		}
		return nil, resp.StatusCode >= 500, fmt.Errorf("intake: %s: %s", resp.Status, msg)
	}
	var ok struct {
		Results []intakeResult `json:"results"`
	}
	if err := json.Unmarshal(b, &ok); err != nil {
		return nil, false, fmt.Errorf("intake: decode answer: %v", err)
	}
	return ok.Results, false, nil
}

// progress prints a progress line about once a second until ctx ends.
func (r *Replayer) progress(ctx context.Context, total int, start time.Time) {
	if r.Progress == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	line := func() {
		n := r.sent.Load()
		el := time.Since(start)
		fmt.Fprintf(r.Progress, "replay: %d/%d reports (%.1f%%), %d corrections, %.0f reports/s, %s elapsed\n",
			n, total, 100*float64(n)/float64(max(total, 1)), r.corrected.Load(), float64(n)/el.Seconds(), el.Truncate(time.Second))
	}
	for {
		select {
		case <-ctx.Done():
			line()
			return
		case <-t.C:
			line()
		}
	}
}

// errReplayIncomplete reports that a replay stopped before every report was sent.
var errReplayIncomplete = errors.New("replay stopped before every report was accepted")
