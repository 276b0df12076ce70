package reconciler

import (
	"fmt"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// feedItems reads the feed from the bucket.
func (g *gateway) feed() ([]tally.FeedItem, error) {
	var items []tally.FeedItem
	err := g.get(tally.KeyFeed, &items)
	return items, err
}

// checkFeed checks that the feed's items add up to the model: while it
// holds every change, each contest's votes and precincts are the sums of its
// items.
func checkFeed(items []tally.FeedItem, m *model) error {
	votes := map[tally.ContestID]map[tally.CandidateID]int64{}
	newPrecincts := map[tally.ContestID]int{}
	ids := map[string]bool{}
	for _, it := range items {
		if ids[it.ID] {
			return fmt.Errorf("feed item id %s twice", it.ID)
		}
		ids[it.ID] = true
		if votes[it.Contest] == nil {
			votes[it.Contest] = map[tally.CandidateID]int64{}
		}
		var total int64
		for c, n := range it.Votes {
			votes[it.Contest][c] += n
			total += n
		}
		if total != it.TotalVotes {
			return fmt.Errorf("feed item %s: total_votes %d, votes add to %d", it.ID, it.TotalVotes, total)
		}
		newPrecincts[it.Contest] += it.NewPrecincts
		if it.ContestName == "" || it.RegionName == "" {
			return fmt.Errorf("feed item %s without names: %+v", it.ID, it)
		}
	}
	for _, c := range m.e.Contests {
		want := map[tally.CandidateID]int64{}
		reporting := 0
		for _, p := range m.e.ContestPrecincts(c.ID) {
			if rep := m.latest[p][c.ID]; rep != nil {
				reporting++
				for cand, n := range rep.Votes {
					want[cand] += n
				}
			}
		}
		for cand, n := range want {
			if votes[c.ID][cand] != n {
				return fmt.Errorf("%s: feed votes[%s] add to %d, want %d", c.ID, cand, votes[c.ID][cand], n)
			}
		}
		if newPrecincts[c.ID] != reporting {
			return fmt.Errorf("%s: feed new precincts add to %d, want %d reporting", c.ID, newPrecincts[c.ID], reporting)
		}
	}
	return nil
}

// checkShards checks that each contest's precinct shards in the bucket hold
// exactly the model's latest report of every precinct that reported.
func checkShards(g *gateway, m *model) error {
	for _, c := range m.e.Contests {
		seen := map[tally.PrecinctID]bool{}
		for _, s := range m.e.ContestShards(c.ID) {
			var pr tally.PrecinctResults
			if err := g.get(tally.PrecinctsKey(c.ID, s), &pr); err != nil {
				return err
			}
			for _, got := range pr.Precincts {
				want := m.latest[got.ID][c.ID]
				if want == nil || got.Report != want.ID || got.Votes["dem"] != want.Votes["dem"] || got.Votes["rep"] != want.Votes["rep"] {
					return fmt.Errorf("%s shard %v: precinct %s = %+v, want report %+v", c.ID, s, got.ID, got, want)
				}
				seen[got.ID] = true
			}
		}
		for _, p := range m.e.ContestPrecincts(c.ID) {
			if m.latest[p][c.ID] != nil && !seen[p] {
				return fmt.Errorf("%s: precinct %s reported but in no shard", c.ID, p)
			}
		}
	}
	return nil
}

// The feed in the bucket accounts for every change (batches per contest and
// region, each correction on its own), the precinct shards hold every
// precinct's latest report, and a restarted hub goes on with the feed it
// had.
func TestFeedAndShards(t *testing.T) {
	e := testElection(t)
	cfg := restartableConfig(t, e)
	h := mustStartHubWith(t, cfg)
	hub1 := h.r
	last := map[tally.RegionID]uint64{}
	seqOf := map[tally.PrecinctID]uint64{}
	for i, p := range e.Precincts {
		seqOf[p.ID] = h.publish(h.regions[p.Region].report(p.ID, p.Contests[0], int64(10+i), int64(20+i), false))
		last[p.Region] = seqOf[p.ID]
	}
	h.waitApplied(t, last, 10*time.Second)
	waitFor(t, 5*time.Second, "feed and shards", func() error {
		items, err := h.gw.feed()
		if err != nil {
			return err
		}
		if err := checkFeed(items, h.m); err != nil {
			return err
		}
		return checkShards(h.gw, h.m)
	})

	// A correction is an item of its own, with the change it made.
	p := e.Precincts[0]
	c := p.Contests[0]
	corr := h.regions[p.Region].report(p.ID, c, 3, 4, true)
	corr.Correction = &tally.Correction{Supersedes: h.m.latest[p.ID][c].ID, SupersedesSeq: seqOf[p.ID], Reason: "recount"}
	last[p.Region] = h.publish(corr)
	h.waitApplied(t, last, 10*time.Second)
	var before []tally.FeedItem
	waitFor(t, 5*time.Second, "the correction in the feed", func() error {
		items, err := h.gw.feed()
		if err != nil {
			return err
		}
		it := items[len(items)-1]
		if it.Kind != tally.FeedCorrection || it.Precinct != p.ID || it.Votes["dem"] != 3-10 || it.Votes["rep"] != 4-20 ||
			it.Reason != "recount" || it.Supersedes != corr.Correction.Supersedes || it.Seq != last[p.Region] || it.PrecinctName == "" {
			return fmt.Errorf("last feed item = %+v, want the correction", it)
		}
		before = items
		if err := checkFeed(items, h.m); err != nil {
			return err
		}
		return checkShards(h.gw, h.m)
	})

	// After a restart the feed goes on: the items before, then new ones.
	if err := hub1.Close(); err != nil {
		t.Fatal(err)
	}
	hub2 := MustOpenReconciler(t, cfg)
	h.r, h.gw = hub2, MustConnectGateway(t, hub2)
	p = e.Precincts[1]
	last[p.Region] = h.publish(h.regions[p.Region].report(p.ID, p.Contests[0], 50, 60, true))
	// A plain mirror can take some 40 s to resume after the hub restarts
	// (see BENCHMARKS.md, "Catch-up after an outage").
	h.waitApplied(t, last, 90*time.Second)
	waitFor(t, 5*time.Second, "the feed after a restart", func() error {
		items, err := h.gw.feed()
		if err != nil {
			return err
		}
		if len(items) != len(before)+1 {
			return fmt.Errorf("%d items, want the %d before and one more", len(items), len(before))
		}
		for i := range before {
			if items[i].ID != before[i].ID {
				return fmt.Errorf("item %d is %s, was %s", i, items[i].ID, before[i].ID)
			}
		}
		if it := items[len(items)-1]; it.Kind != tally.FeedBatch || it.Precincts != 1 || it.NewPrecincts != 0 || it.TotalVotes != 50+60-(11+21) {
			return fmt.Errorf("new item = %+v", it)
		}
		return checkFeed(items, h.m)
	})
}
