package gateway_test

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/tallyvote/tally"
)

// A contest's precincts come from its shards in the bucket, as they are
// when a request asks, and follow each change of a shard.
func TestContestPrecinctsFromShards(t *testing.T) {
	v := MustEnv(t, nil)
	putShards := func() {
		for _, s := range v.e.ContestShards("pres-nm") {
			MustPut(t, v.kv, tally.PrecinctsKey("pres-nm", s), v.t.PrecinctResults("pres-nm", s))
		}
	}
	type page struct {
		Total     int `json:"total"`
		Precincts []struct {
			ID          tally.PrecinctID            `json:"id"`
			Reporting   bool                        `json:"reporting"`
			Votes       map[tally.CandidateID]int64 `json:"votes"`
			Corrections int                         `json:"corrections"`
			Correction  *tally.Correction           `json:"correction"`
		} `json:"precincts"`
	}
	read := func(url string) page {
		res := get(t, url)
		if res.status != 200 {
			t.Fatalf("GET %s: %d %s", url, res.status, res.body)
		}
		var p page
		mustJSON(t, res.body, &p)
		return p
	}
	putShards()
	eventually(t, "p1's corrected result", func() bool {
		p := read(v.base + "/api/v1/contests/pres-nm/precincts")
		return p.Total == 2 && p.Precincts[0].ID == "p1" && p.Precincts[0].Votes["alice"] == 112 &&
			p.Precincts[0].Correction != nil && p.Precincts[0].Correction.Reason == "transposed digits" && !p.Precincts[1].Reporting
	})
	// p2 reports: its shard changes, and so do both pages.
	p2 := report(v.e, "b1", "p2", "pres-nm", map[tally.CandidateID]int64{"alice": 7, "bob": 9})
	v.t.Apply(1, p2)
	putShards()
	eventually(t, "p2 reporting", func() bool {
		p := read(v.base + "/api/v1/contests/pres-nm/precincts")
		q := read(v.base + "/api/v1/contests/pres-nm/precincts?region=r2")
		return len(p.Precincts) == 2 && p.Precincts[1].Reporting && p.Precincts[1].Votes["bob"] == 9 &&
			len(q.Precincts) == 1 && q.Precincts[0].ID == "p2" && q.Precincts[0].Votes["alice"] == 7
	})
}

// The feed is what the reconciler writes: GET /api/v1/feed serves it, and
// each new item is announced once on the stream.
func TestFeedFromBucket(t *testing.T) {
	v := MustEnv(t, nil)
	item := func(id string, total int64) tally.FeedItem {
		return tally.FeedItem{ID: id, Kind: tally.FeedBatch, Contest: "pres-nm", ContestName: "President (NM)", Region: "r1",
			RegionName: "New Mexico 1", Precincts: 1, Votes: map[tally.CandidateID]int64{"alice": total}, TotalVotes: total}
	}
	MustPut(t, v.kv, tally.KeyFeed, []tally.FeedItem{item("1-0", 5)})
	eventually(t, "the feed served", func() bool {
		res := get(t, v.base+"/api/v1/feed")
		var items []tally.FeedItem
		return res.status == 200 && json.Unmarshal(res.body, &items) == nil && len(items) == 1 && items[0].ID == "1-0"
	})
	s := MustStream(t, v.base, "")
	rev := MustPut(t, v.kv, tally.KeyFeed, []tally.FeedItem{item("1-0", 5), item("2-0", 7), item("2-1", 3)})
	for {
		ev := s.next(t)
		if ev.name != "feed" {
			continue
		}
		var items []tally.FeedItem
		if err := json.Unmarshal([]byte(ev.data), &items); err != nil {
			t.Fatal(err)
		}
		if len(items) != 2 || items[0].ID != "2-0" || items[1].ID != "2-1" || ev.id != strconv.FormatUint(rev, 10) {
			t.Fatalf("feed event %s = %s, want the two new items at revision %d", ev.id, ev.data, rev)
		}
		break
	}
}

// A contest's results by county are served as the reconciler wrote them;
// a value that does not name its contest is decoded, and served with the
// key's contest and an empty list of counties rather than none.
func TestCountiesFromBucket(t *testing.T) {
	v := MustEnv(t, nil)
	cr := v.t.CountyResults("pres-nm")
	want, err := json.Marshal(cr)
	if err != nil {
		t.Fatal(err)
	}
	MustPut(t, v.kv, tally.CountiesKey("pres-nm"), cr)
	url := v.base + "/api/v1/contests/pres-nm/counties"
	eventually(t, "the county results as written", func() bool {
		res := get(t, url)
		return res.status == 200 && string(res.body) == string(want)
	})
	MustPut(t, v.kv, tally.CountiesKey("pres-nm"), map[string]any{"counties": nil})
	eventually(t, "the county results with the key's contest", func() bool {
		res := get(t, url)
		return res.status == 200 && string(res.body) == `{"contest":"pres-nm","counties":[]}`
	})
}
