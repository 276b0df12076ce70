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
	precincts map[int]struct{} // by index in the election: the report's own strings are not kept
}

// note records report rep, stored at seq, before it is applied to t: the
// change it makes is its votes less those of the report it replaces.
func (f *feed) note(e *tally.Election, t *tally.Totals, seq uint64, rep *tally.Report) {
	var it *tally.FeedItem
	if rep.Correction != nil {
		f.corrections = append(f.corrections, tally.FeedItem{Kind: tally.FeedCorrection, Contest: rep.Contest, Region: rep.Region,
			Votes: map[tally.CandidateID]int64{}, At: rep.ReportedAt, Precinct: rep.Precinct, Seq: seq, Precincts: 1,
			Supersedes: rep.Correction.Supersedes, SupersedesSeq: rep.Correction.SupersedesSeq, Reason: rep.Correction.Reason})
		it = &f.corrections[len(f.corrections)-1]
		names(e, it)
		if p := e.Precinct(rep.Precinct); p != nil {
			it.PrecinctName = p.Name
		}
	} else {
		k := feedKey{rep.Contest, rep.Region}
		b := f.batches[k]
		if b == nil {
			if f.batches == nil {
				f.batches = map[feedKey]*feedBatch{}
			}
			b = &feedBatch{item: tally.FeedItem{Kind: tally.FeedBatch, Contest: rep.Contest, Region: rep.Region,
				Votes: map[tally.CandidateID]int64{}}, precincts: map[int]struct{}{}}
			names(e, &b.item)
			f.batches[k] = b
			f.order = append(f.order, k)
		}
		it = &b.item
		if rep.ReportedAt.After(it.At) {
			it.At = rep.ReportedAt
		}
		if pi := e.PrecinctIndex(rep.Precinct); pi >= 0 {
			if _, ok := b.precincts[pi]; !ok {
				b.precincts[pi] = struct{}{}
				it.Precincts++
			}
		}
	}
	had := t.EachVote(rep.Precinct, rep.Contest, func(cand tally.CandidateID, n int64) {
		it.Votes[cand] -= n
		it.TotalVotes -= n
	})
	if !had && it.Kind == tally.FeedBatch {
		it.NewPrecincts++
	}
	for cand, n := range rep.Votes {
		it.Votes[cand] += n
		it.TotalVotes += n
	}
	if len(f.corrections) >= 2*tally.FeedSize { // only the latest can be shown
		f.corrections = append([]tally.FeedItem(nil), f.corrections[tally.FeedSize:]...)
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
