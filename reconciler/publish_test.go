package reconciler

import (
	"fmt"
	"slices"
	"testing"

	"github.com/tallyvote/tally"
)

// After a backlog every shard has changed: the publishes take them at most
// precinctsPerPublish at a time, in key order, each once, going round, and
// the final publish takes all that are left.
func TestTakeShardsInTurn(t *testing.T) {
	p := &publisher{shards: map[shardRef]bool{}}
	const n = 2*precinctsPerPublish + precinctsPerPublish/2
	for i := range n {
		p.shards[shardRef{tally.ContestID(fmt.Sprintf("c%d", i%3)), tally.Shard{Region: "r1", N: i}}] = true
	}
	seen := map[shardRef]int{}
	take := func(all bool, want int) []shardRef {
		t.Helper()
		refs := p.takeShards(all)
		if len(refs) != want {
			t.Fatalf("took %d shards, want %d", len(refs), want)
		}
		if !slices.IsSortedFunc(refs, compareShards) {
			t.Fatalf("shards not in key order: %v", refs[:min(5, len(refs))])
		}
		for _, ref := range refs {
			seen[ref]++
		}
		return refs
	}
	first := take(false, precinctsPerPublish)
	// A shard written in the first publish changes again: it waits its turn.
	p.shards[first[0]] = true
	take(false, precinctsPerPublish)
	take(false, n-2*precinctsPerPublish+1) // the rest, first[0] again among them
	if len(seen) != n {
		t.Errorf("%d distinct shards taken, want %d", len(seen), n)
	}
	if seen[first[0]] != 2 {
		t.Errorf("shard changed again taken %d times, want 2", seen[first[0]])
	}
	for ref, k := range seen {
		if k > 1 && ref != first[0] {
			t.Errorf("shard %v taken %d times", ref, k)
		}
	}
	if len(p.shards) != 0 {
		t.Errorf("%d shards left, want none", len(p.shards))
	}
	for i := range n { // everything changes again; the final publish takes it all
		p.shards[shardRef{tally.ContestID(fmt.Sprintf("c%d", i%3)), tally.Shard{Region: "r1", N: i}}] = true
	}
	take(true, n)
	if len(p.shards) != 0 {
		t.Errorf("%d shards left after the final publish", len(p.shards))
	}
}
