package gateway

import (
	"context"
	"encoding/json"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

const maxPrecinctLimit = 1000 // rows per page of GET /api/v1/contests/{id}/precincts

// details is the watcher's state of the results below the contest, by
// county and by precinct, and of the feed of changes.
type details struct {
	counties map[tally.ContestID]*resource
	tables   map[tally.ContestID]*precinctTable
	feed     []tally.FeedItem // as the bucket holds it: oldest first
	feedRes  *resource
}

func (d *details) reset() {
	clear(d.counties)
	clear(d.tables)
	d.feed, d.feedRes = nil, nil
}

func (d *details) init() {
	if d.counties == nil {
		d.counties = map[tally.ContestID]*resource{}
		d.tables = map[tally.ContestID]*precinctTable{}
	}
}

// applyDetail applies a counties or precincts key. A precinct shard is not
// kept: it makes the contest's precinct table new, and the table reads the
// contest's shards from the bucket when a request needs them.
func (st *watchState) applyDetail(entry jetstream.KeyValueEntry, g *Gateway) (ev event, ok bool) {
	st.details.init()
	key, rev := entry.Key(), entry.Revision()
	removed := entry.Operation() == jetstream.KeyValueDelete || entry.Operation() == jetstream.KeyValuePurge
	d := &st.details
	if strings.HasPrefix(key, tally.KeyCountiesPrefix) {
		id := tally.ContestID(strings.TrimPrefix(key, tally.KeyCountiesPrefix))
		st.revs[key], st.dirty = rev, true
		if removed {
			delete(d.counties, id)
			return event{}, false
		}
		// The reconciler writes what newResource would make of it: its
		// bytes are served as they are, once they parse and name the
		// key's contest. A national night's county results are large, and
		// decoding and encoding them again took a tenth of the hub's CPU.
		var head struct {
			Contest  tally.ContestID `json:"contest"`
			Counties json.RawMessage `json:"counties"`
		}
		if err := json.Unmarshal(entry.Value(), &head); err == nil && head.Contest == id && len(head.Counties) > 0 && head.Counties[0] == '[' {
			d.counties[id] = resourceOf(entry.Value())
			return event{}, false
		}
		var cr tally.CountyResults
		if err := json.Unmarshal(entry.Value(), &cr); err != nil {
			g.log.Warn().Err(err).Str("key", key).Uint64("seq", rev).Msg("bad value skipped")
			return event{}, false
		}
		cr.Contest = id
		if cr.Counties == nil {
			cr.Counties = []tally.CountyResult{}
		}
		r, err := newResource(cr)
		if err != nil {
			return event{}, false
		}
		d.counties[id] = r
		return event{}, false
	}
	cid, _, ok := tally.ParsePrecinctsKey(key)
	if !ok {
		return event{}, false
	}
	st.revs[key], st.dirty = rev, true
	d.tables[cid] = &precinctTable{contest: cid, e: st.e, kv: st.kv}
	return event{}, false
}

// applyFeed applies the feed key. Once the initial values are loaded, the
// items it did not hold before are announced as a feed event (not part of
// the snapshot a new viewer gets, but resumable with Last-Event-ID).
func (st *watchState) applyFeed(entry jetstream.KeyValueEntry, g *Gateway) (ev event, ok bool) {
	st.details.init()
	key, rev := entry.Key(), entry.Revision()
	d := &st.details
	st.revs[key], st.dirty = rev, true
	var items []tally.FeedItem
	if op := entry.Operation(); op != jetstream.KeyValueDelete && op != jetstream.KeyValuePurge {
		if err := json.Unmarshal(entry.Value(), &items); err != nil {
			g.log.Warn().Err(err).Str("key", key).Uint64("seq", rev).Msg("bad value skipped")
			return event{}, false
		}
	}
	had := make(map[string]bool, len(d.feed))
	for _, it := range d.feed {
		had[it.ID] = true
	}
	var added []tally.FeedItem
	for _, it := range items {
		if !had[it.ID] {
			added = append(added, it)
		}
	}
	d.feed, d.feedRes = items, nil
	if !st.loaded || len(added) == 0 {
		return event{}, false
	}
	b, err := json.Marshal(added)
	if err != nil {
		return event{}, false
	}
	return event{rev: rev, key: key, transient: true, frame: sseFrame(rev, "feed", b)}, true
}

// snapshot adds the details to a view being built.
func (d *details) snapshot(e *tally.Election, v *view) {
	d.init()
	v.counties = maps.Clone(d.counties)
	for _, c := range e.Contests {
		if d.tables[c.ID] == nil { // no precinct results yet: every precinct out
			d.tables[c.ID] = &precinctTable{contest: c.ID, e: e}
		}
	}
	v.precincts = maps.Clone(d.tables)
	if d.feedRes == nil {
		items := d.feed
		if items == nil {
			items = []tally.FeedItem{}
		}
		r, err := newResource(items)
		if err != nil {
			r = resourceOf([]byte("[]"))
		}
		d.feedRes = r
	}
	v.feed = d.feedRes
}

// precinctRow is one precinct of GET /api/v1/contests/{id}/precincts.
type precinctRow struct {
	ID          tally.PrecinctID            `json:"id"`
	Name        string                      `json:"name"`
	County      string                      `json:"county"`
	Region      tally.RegionID              `json:"region"`
	Reporting   bool                        `json:"reporting"`
	Complete    bool                        `json:"complete"`
	Votes       map[tally.CandidateID]int64 `json:"votes"`
	TotalVotes  int64                       `json:"total_votes"`
	Reports     int                         `json:"reports"`
	Corrections int                         `json:"corrections"`
	ReportedAt  time.Time                   `json:"reported_at,omitzero"`
	Seq         uint64                      `json:"seq,omitempty"`
	Correction  *tally.Correction           `json:"correction,omitempty"`

	search string // lower-case name, county and id
}

// precinctTable is every precinct of a contest, in election order, with its
// latest result. The watcher makes a new one for every change of a
// contest's precinct results; its rows are read from the bucket (the
// contest's shards, as they are then) only when a request needs them, so
// that a gateway holds only the precinct results viewers ask for.
type precinctTable struct {
	contest tally.ContestID
	e       *tally.Election
	kv      jetstream.KeyValue // nil: the contest has no precinct results

	mu      sync.Mutex
	built   bool
	rowList []precinctRow
	once    sync.Once
	all     *resource
}

// rows returns the table's rows, building them on first use.
func (t *precinctTable) rows(ctx context.Context) ([]precinctRow, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.built {
		return t.rowList, nil
	}
	latest := map[tally.PrecinctID]*tally.PrecinctResult{}
	if t.kv != nil {
		if err := readShards(ctx, t.kv, t.contest, latest); err != nil {
			return nil, tally.Errorf(tally.EUNAVAILABLE, "precinct results of %q: %v", t.contest, err)
		}
	}
	t.rowList, t.built = precinctRows(t.e, t.contest, latest), true
	return t.rowList, nil
}

// readShards reads every shard of contest cid's precinct results from the
// bucket into latest.
func readShards(ctx context.Context, kv jetstream.KeyValue, cid tally.ContestID, latest map[tally.PrecinctID]*tally.PrecinctResult) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w, err := kv.Watch(ctx, tally.KeyPrecinctsPrefix+string(cid)+".>", jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		var entry jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errWatchEnded
			}
			entry = e
		}
		if entry == nil {
			return nil // every current value read
		}
		c, s, ok := tally.ParsePrecinctsKey(entry.Key())
		if !ok || c != cid {
			continue
		}
		var pr tally.PrecinctResults
		if err := json.Unmarshal(entry.Value(), &pr); err != nil || pr.Contest != cid || pr.Region != s.Region {
			continue // not the reconciler's: left out, as if not reported
		}
		for i := range pr.Precincts {
			latest[pr.Precincts[i].ID] = &pr.Precincts[i]
		}
	}
}

func precinctRows(e *tally.Election, cid tally.ContestID, latest map[tally.PrecinctID]*tally.PrecinctResult) []precinctRow {
	ids := e.ContestPrecincts(cid)
	rows := make([]precinctRow, 0, len(ids))
	for _, pid := range ids {
		p := e.Precinct(pid)
		row := precinctRow{ID: pid, Name: p.Name, County: p.County, Region: p.Region, Votes: map[tally.CandidateID]int64{},
			search: strings.ToLower(p.Name + "\x00" + p.County + "\x00" + string(pid))}
		if r := latest[pid]; r != nil {
			row.Reporting, row.Complete, row.Votes = true, r.Complete, r.Votes
			for _, n := range r.Votes {
				row.TotalVotes += n
			}
			row.Reports, row.Corrections, row.ReportedAt, row.Seq, row.Correction = r.Reports, r.Corrections, r.ReportedAt, r.Seq, r.Correction
		}
		rows = append(rows, row)
	}
	return rows
}

// precinctPage is the shape of GET /api/v1/contests/{id}/precincts.
type precinctPage struct {
	Contest   tally.ContestID `json:"contest"`
	Total     int             `json:"total"`   // precincts in the contest
	Matched   int             `json:"matched"` // precincts matching the filters
	Offset    int             `json:"offset"`
	Precincts []precinctRow   `json:"precincts"`
}

func (g *Gateway) getContestCounties(c echo.Context) error {
	v, err := g.currentView()
	if err != nil {
		return err
	}
	id := tally.ContestID(c.Param("id"))
	if r := v.counties[id]; r != nil {
		return serve(c, r)
	}
	return g.detailNotFound(id, "results by county")
}

// getContestPrecincts serves a contest's precincts. Without parameters it
// is every precinct (cached, with an ETag); q (a case-insensitive substring
// of the name, county or id), county, region, corrected=true, offset and
// limit (at most 1000) select a page.
func (g *Gateway) getContestPrecincts(c echo.Context) error {
	v, err := g.currentView()
	if err != nil {
		return err
	}
	id := tally.ContestID(c.Param("id"))
	t := v.precincts[id]
	if t == nil {
		return g.detailNotFound(id, "precinct results")
	}
	qp := c.QueryParams()
	rows, err := t.rows(c.Request().Context())
	if err != nil {
		return err
	}
	if len(qp) == 0 {
		t.once.Do(func() {
			r, err := newResource(precinctPage{Contest: t.contest, Total: len(rows), Matched: len(rows), Precincts: rows})
			if err != nil {
				r = resourceOf([]byte(`{"contest":"` + string(t.contest) + `","precincts":[]}`))
			}
			t.all = r
		})
		return serve(c, t.all)
	}
	intParam := func(name string, def int) (int, error) {
		s := qp.Get(name)
		if s == "" {
			return def, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, tally.Errorf(tally.EINVALID, "%s: want a non-negative integer", name)
		}
		return n, nil
	}
	offset, err := intParam("offset", 0)
	if err != nil {
		return err
	}
	limit, err := intParam("limit", maxPrecinctLimit)
	if err != nil {
		return err
	}
	limit = min(limit, maxPrecinctLimit)
	q := strings.ToLower(strings.TrimSpace(qp.Get("q")))
	county, region := qp.Get("county"), tally.RegionID(qp.Get("region"))
	corrected := qp.Get("corrected") == "true"
	page := precinctPage{Contest: id, Total: len(rows), Offset: offset, Precincts: []precinctRow{}}
	for i := range rows {
		r := &rows[i]
		if (q != "" && !strings.Contains(r.search, q)) || (county != "" && r.County != county) ||
			(region != "" && r.Region != region) || (corrected && r.Corrections == 0) {
			continue
		}
		if page.Matched >= offset && len(page.Precincts) < limit {
			page.Precincts = append(page.Precincts, *r)
		}
		page.Matched++
	}
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.JSON(200, page)
}

func (g *Gateway) getFeed(c echo.Context) error {
	v, err := g.currentView()
	if err != nil {
		return err
	}
	return serve(c, v.feed)
}

func (g *Gateway) detailNotFound(id tally.ContestID, what string) error {
	if g.cfg.Election.Contest(id) != nil {
		return tally.Errorf(tally.ENOTFOUND, "contest %q has no %s yet", id, what)
	}
	if strings.HasPrefix(string(id), "all-") {
		return tally.Errorf(tally.ENOTFOUND, "national view %q has no %s", id, what)
	}
	return tally.Errorf(tally.ENOTFOUND, "unknown contest %q", id)
}
