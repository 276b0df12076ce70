package tally

import "time"

// KeyFeed is the national bucket key of the feed of what changed: the
// latest FeedSize items, oldest first ([]FeedItem). The reconciler adds to
// it as it applies reports.
const KeyFeed = "feed"

// FeedSize is how many items the feed keeps.
const FeedSize = 50

// Feed item kinds.
const (
	FeedBatch      = "batch"      // the reports of one region in one contest since the last publish
	FeedCorrection = "correction" // one correction
)

// FeedItem is one entry of the feed: a batch of reports from one region in
// one contest, or one correction. Votes are the change per candidate the
// item made to the totals.
type FeedItem struct {
	ID            string                `json:"id"` // unique, in the order items were made
	Kind          string                `json:"kind"`
	Contest       ContestID             `json:"contest"`
	ContestName   string                `json:"contest_name"`
	Region        RegionID              `json:"region"`
	RegionName    string                `json:"region_name"`
	At            time.Time             `json:"at,omitzero"` // latest reported_at among the reports
	Precincts     int                   `json:"precincts"`   // precincts with a new report
	NewPrecincts  int                   `json:"new_precincts"`
	Votes         map[CandidateID]int64 `json:"votes"`
	TotalVotes    int64                 `json:"total_votes"`
	Precinct      PrecinctID            `json:"precinct,omitempty"` // a correction's precinct
	PrecinctName  string                `json:"precinct_name,omitempty"`
	Seq           uint64                `json:"seq,omitempty"`
	Supersedes    EventID               `json:"supersedes,omitempty"`
	SupersedesSeq uint64                `json:"supersedes_seq,omitempty"`
	Reason        string                `json:"reason,omitempty"`
}
