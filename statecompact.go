package tally

import (
	"bufio"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"hash/fnv"
	"io"
	"slices"
)

// The compact form of a TotalsState, for the reconciler's snapshots. A
// national night's TotalsState is about 190 bytes of JSON per cell, a
// gigabyte for the whole night, too much to write every few seconds under
// load. The compact form writes each group of cells (a contest in a region,
// see cellGroup) as the bytes a TotalsCopy already holds: a few dozen per
// cell. Those bytes follow the election's ballots slot by slot, so each
// group also names its contest, region and candidates, its slot count and
// a hash of its slots' precinct ids: a snapshot of an election whose
// ballots have changed since is refused, not misread.
//
// The form is one JSON object:
//
//	{"election":..., "events":..., "last_seq":{...},
//	 "corrections":[{"precinct":..., "contest":..., "correction":{...}}, ...],
//	 "contests":[ContestTallyState, ...],
//	 "groups":[{"contest":..., "region":..., "candidates":[...], "slots":n,
//	            "check":..., "data":"<base64>", "extras":[...]}, ...]}

// compactTotals is the head of the compact form: all of it but the groups.
type compactTotals struct {
	Election    string              `json:"election"`
	Events      uint64              `json:"events"`
	LastSeq     map[RegionID]uint64 `json:"last_seq"`
	Corrections []compactCorrection `json:"corrections"`
	Contests    []ContestTallyState `json:"contests"`
	Groups      []compactGroup      `json:"groups"`
}

// compactCorrection is the latest correction applied to a cell.
type compactCorrection struct {
	Precinct   PrecinctID  `json:"precinct"`
	Contest    ContestID   `json:"contest"`
	Correction *Correction `json:"correction"`
}

// compactGroup is one cell group: its slots encoded (appendCell) in Data,
// and the maps of the cells that have any, in slot order, in Extras.
type compactGroup struct {
	Contest    ContestID      `json:"contest"`
	Region     RegionID       `json:"region"`
	Candidates []CandidateID  `json:"candidates"`
	Slots      int            `json:"slots"`
	Check      uint64         `json:"check"`
	Data       []byte         `json:"data"`
	Extras     []compactExtra `json:"extras,omitempty"`
}

type compactExtra struct {
	Other     map[CandidateID]int64              `json:"other,omitempty"`
	VoteTypes map[VoteType]map[CandidateID]int64 `json:"vote_types,omitempty"`
}

// slotsCheck hashes the precinct ids of a group's slots (indexes in
// e.Precincts), in order.
func slotsCheck(e *Election, slots []int32) uint64 {
	h := fnv.New64a()
	for _, pi := range slots {
		h.Write([]byte(e.Precincts[pi].ID))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// groupCheck returns slotsCheck of the slots of contest c in the region
// of index ri, computed once per election.
func (e *Election) groupCheck(c ContestID, ri int) uint64 {
	idx := e.index()
	idx.checksOnce.Do(func() {
		idx.checks = make(map[ContestID][]uint64, len(idx.ballots))
		for con, gs := range idx.ballots {
			cs := make([]uint64, len(gs))
			for i, slots := range gs {
				cs[i] = slotsCheck(e, slots)
			}
			idx.checks[con] = cs
		}
	})
	if cs := idx.checks[c]; ri < len(cs) {
		return cs[ri]
	}
	return slotsCheck(e, nil) // no such group: no slots
}

// WriteCompact writes the copy in the compact form, a group at a time;
// ReadTotalsCompact reads it back. A copy is written once.
func (c *TotalsCopy) WriteCompact(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	head := compactTotals{Election: c.state.Election, Events: c.state.Events, LastSeq: c.state.LastSeq,
		Contests: c.state.Contests, Corrections: []compactCorrection{}, Groups: []compactGroup{}}
	idx := c.e.index()
	for k, corr := range c.corr {
		// Only the cells in groups are written, as WriteJSON does.
		if pi := c.e.PrecinctIndex(k.p); pi >= 0 && idx.ballots[k.c] != nil {
			if _, ok := slices.BinarySearch(idx.ballots[k.c][idx.regionNum[pi]], int32(pi)); ok {
				head.Corrections = append(head.Corrections, compactCorrection{k.p, k.c, corr})
			}
		}
	}
	slices.SortFunc(head.Corrections, func(a, b compactCorrection) int {
		return cmp.Or(cmp.Compare(a.Precinct, b.Precinct), cmp.Compare(a.Contest, b.Contest))
	})
	if err := WriteJSONWith(bw, &head, "groups", "[]", func() error { return c.writeGroups(bw) }); err != nil {
		return err
	}
	return bw.Flush()
}

// writeGroups writes the copy's cell groups as a JSON array, for
// WriteCompact.
func (c *TotalsCopy) writeGroups(bw *bufio.Writer) error {
	idx := c.e.index()
	bw.WriteByte('[')
	first := true
	for _, con := range c.e.Contests {
		gs := c.groups[con.ID]
		for ri := range gs {
			gc := &gs[ri]
			if gc.data == nil {
				continue
			}
			g := compactGroup{Contest: con.ID, Region: c.e.Regions[ri].ID, Candidates: c.ci[con.ID].ids,
				Slots: len(idx.ballots[con.ID][ri]), Check: c.e.groupCheck(con.ID, ri)}
			for _, x := range gc.extras {
				g.Extras = append(g.Extras, compactExtra{x.other, x.voteTypes})
			}
			if !first {
				bw.WriteByte(',')
			}
			first = false
			// The data goes from the copy's bytes to base64 (as
			// encoding/json writes a []byte) straight into bw: a
			// national night's groups are megabytes each.
			if err := WriteJSONWith(bw, &g, "data", "null", func() error {
				bw.WriteByte('"')
				enc := base64.NewEncoder(base64.StdEncoding, bw)
				enc.Write(gc.data)
				enc.Close()
				return bw.WriteByte('"')
			}); err != nil {
				return err
			}
		}
	}
	return bw.WriteByte(']')
}

// ReadTotalsCompact restores the totals of election e from the compact
// form (WriteCompact) read from dec, a group at a time, with the checks of
// RestoreTotals: the cells must be of e's precincts and contests, each
// once, the sums those of the cells. It also refuses groups whose slots,
// candidates or bytes do not match e's ballots. It reads one object and
// leaves dec after it; its fields are those WriteCompact writes, each
// once, with the groups after the others. Errors have code EINVALID and
// say what is wrong.
func ReadTotalsCompact(e *Election, dec *json.Decoder) (*Totals, error) {
	const what = "totals state"
	var head compactTotals
	var sawElection bool
	var rs *totalsRestorer
	corr := map[cellKey]*Correction{}
	idx := e.index()
	err := DecodeFields(dec, what, func(key string) error {
		if rs != nil {
			return Errorf(EINVALID, "%s: field %q after the groups", what, key)
		}
		var v any
		switch key {
		case "election":
			sawElection, v = true, &head.Election
		case "events":
			v = &head.Events
		case "last_seq":
			v = &head.LastSeq
		case "corrections":
			v = &head.Corrections
		case "contests":
			v = &head.Contests
		case "groups":
			if !sawElection {
				return Errorf(EINVALID, "%s: groups before the election field", what)
			}
			var err error
			if rs, err = newTotalsRestorer(e, head.Election, head.Events, head.LastSeq); err != nil {
				return err
			}
			for _, cc := range head.Corrections {
				k := cellKey{cc.Precinct, cc.Contest}
				if cc.Correction == nil || corr[k] != nil {
					return Errorf(EINVALID, "%s: correction of %s/%s: missing or listed twice", what, cc.Precinct, cc.Contest)
				}
				corr[k] = cc.Correction
			}
			return readArray(dec, what+": groups", func() error {
				var g compactGroup
				if err := decodeField(dec, what, "groups", &g); err != nil {
					return err
				}
				return readGroup(e, idx, rs, &g, corr)
			})
		default:
			return Errorf(EINVALID, "%s: unknown field %q", what, key)
		}
		return decodeField(dec, what, key, v)
	})
	if err != nil {
		return nil, err
	}
	if rs == nil {
		return nil, Errorf(EINVALID, "%s: no groups", what)
	}
	for k := range corr {
		return nil, Errorf(EINVALID, "%s: correction of %s/%s: no such cell", what, k.p, k.c)
	}
	return rs.finish(head.Contests)
}

// readGroup restores the cells of one group, each through rs, taking each
// one's correction out of corr.
func readGroup(e *Election, idx *electionIndex, rs *totalsRestorer, g *compactGroup, corr map[cellKey]*Correction) error {
	bad := func(format string, args ...any) error {
		return Errorf(EINVALID, "totals state: group %s/%s: "+format, append([]any{g.Contest, g.Region}, args...)...)
	}
	con := e.Contest(g.Contest)
	reg := e.Region(g.Region)
	if con == nil || reg == nil {
		return bad("not a contest and region of the election")
	}
	ri := slices.IndexFunc(e.Regions, func(r Region) bool { return r.ID == g.Region })
	var slots []int32
	if b := idx.ballots[g.Contest]; b != nil {
		slots = b[ri]
	}
	if g.Slots != len(slots) || g.Check != e.groupCheck(g.Contest, ri) {
		return bad("its %d slots are not the election's %d precincts with the contest on their ballot", g.Slots, len(slots))
	}
	ci := rs.t.candIndex(g.Contest)
	if !slices.Equal(g.Candidates, ci.ids) {
		return bad("candidates %v, the election's are %v", g.Candidates, ci.ids)
	}
	extras := make([]cellExtra, len(g.Extras))
	for i, x := range g.Extras {
		extras[i] = cellExtra{x.Other, x.VoteTypes}
	}
	r := slotReader{b: g.Data}
	x := 0
	cl := cell{region: g.Region, votes: make([]int64, len(ci.ids))}
	for _, pi := range slots {
		if !r.slot(&cl, extras, &x) {
			if r.bad {
				return bad("data damaged at byte %d", r.pos)
			}
			continue
		}
		p := &e.Precincts[pi]
		k := cellKey{p.ID, g.Contest}
		cs := CellState{Precinct: p.ID, Contest: g.Contest, Cell: *cl.public(ci), Correction: corr[k]}
		delete(corr, k)
		if err := rs.cell(&cs); err != nil {
			return err
		}
	}
	if r.pos != len(g.Data) || x != len(extras) {
		return bad("%d bytes and %d extras after its slots", len(g.Data)-r.pos, len(extras)-x)
	}
	return nil
}
