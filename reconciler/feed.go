package reconciler

import (
	"strconv"
	"time"

	"github.com/tallyvote/tally"
)

// feed makes the feed of what changed (tally.KeyFeed) as reports apply: per
// publish, one batch item per contest and region with new reports, and one
// item per correction. The reconciler's lock guards it.
type feed struct {
	batches     map[feedKey]*feedBatch
	order       []feedKey // batches in the order they began
	corrections []tally.FeedItem
	items       []tally.FeedItem // published, oldest first, at most tally.FeedSize
	stamp       int64            // of the last items made, for their ids
}

type feedKey struct {
	c tally.ContestID
	r tally.RegionID
}

type feedBatch struct {
	item      tally.FeedItem
	precincts map[tally.PrecinctID]bool
}

// note records report rep, stored at seq, which replaced old (the votes of
// the precinct's previous report in the contest, had says whether it had
// one).
func (f *feed) note(e *tally.Election, seq uint64, rep *tally.Report, old map[tally.CandidateID]int64, had bool) {
	base := tally.FeedItem{Contest: rep.Contest, Region: rep.Region, Votes: map[tally.CandidateID]int64{}}
	if rep.Correction != nil {
		it := base
		it.Kind, it.At, it.Precinct, it.Seq, it.Precincts = tally.FeedCorrection, rep.ReportedAt, rep.Precinct, seq, 1
		it.Supersedes, it.SupersedesSeq, it.Reason = rep.Correction.Supersedes, rep.Correction.SupersedesSeq, rep.Correction.Reason
		it.TotalVotes = addDelta(it.Votes, old, rep.Votes)
		names(e, &it)
		if p := e.Precinct(rep.Precinct); p != nil {
			it.PrecinctName = p.Name
		}
		f.corrections = append(f.corrections, it)
		if len(f.corrections) >= 2*tally.FeedSize { // only the latest can be shown
			f.corrections = append([]tally.FeedItem(nil), f.corrections[tally.FeedSize:]...)
		}
		return
	}
	k := feedKey{rep.Contest, rep.Region}
	b := f.batches[k]
	if b == nil {
		if f.batches == nil {
			f.batches = map[feedKey]*feedBatch{}
		}
		b = &feedBatch{item: base, precincts: map[tally.PrecinctID]bool{}}
		b.item.Kind = tally.FeedBatch
		names(e, &b.item)
		f.batches[k] = b
		f.order = append(f.order, k)
	}
	if !b.precincts[rep.Precinct] {
		b.precincts[rep.Precinct] = true
		b.item.Precincts++
		if !had {
			b.item.NewPrecincts++
		}
	}
	b.item.TotalVotes += addDelta(b.item.Votes, old, rep.Votes)
	if rep.ReportedAt.After(b.item.At) {
		b.item.At = rep.ReportedAt
	}
}

func names(e *tally.Election, it *tally.FeedItem) {
	if c := e.Contest(it.Contest); c != nil {
		it.ContestName = c.Name
	}
	if r := e.Region(it.Region); r != nil {
		it.RegionName = r.Name
	}
}

// addDelta adds cur minus prev per candidate to d and returns the total.
func addDelta(d, prev, cur map[tally.CandidateID]int64) int64 {
	var total int64
	for c, n := range cur {
		d[c] += n - prev[c]
		total += n - prev[c]
	}
	for c, n := range prev {
		if _, ok := cur[c]; !ok {
			d[c] -= n
			total -= n
		}
	}
	return total
}

// take moves the batches and corrections noted since the last take into
// the published items, and reports whether there were any.
func (f *feed) take(now time.Time) bool {
	if len(f.order) == 0 && len(f.corrections) == 0 {
		return false
	}
	var made []tally.FeedItem
	for _, k := range f.order {
		made = append(made, f.batches[k].item)
	}
	made = append(made, f.corrections...)
	f.stamp = max(now.UnixMilli(), f.stamp+1)
	for i := range made {
		made[i].ID = strconv.FormatInt(f.stamp, 10) + "-" + strconv.Itoa(i)
	}
	f.items = append(f.items, made...)
	if n := len(f.items); n > tally.FeedSize {
		f.items = append([]tally.FeedItem(nil), f.items[n-tally.FeedSize:]...)
	}
	clear(f.batches)
	f.order, f.corrections = f.order[:0], nil
	return true
}
