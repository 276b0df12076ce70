package tally

import (
	"slices"
	"sync"
	"time"
)

// cellGroup holds a Totals' cells of one contest in one region: a slot for
// each of the region's precincts with the contest on its ballot, in
// election order, made when the group's first report is applied. A national
// night has millions of cells; held so, a cell costs no map entry, no key
// and no allocation of its own, its votes are a part of one array, and its
// slot holds no pointer, so that the garbage collector need not scan the
// slots (see slotCell).
type cellGroup struct {
	region RegionID
	k      int        // candidates
	prec   []int32    // the slots' precincts, as indexes in Election.Precincts (the election's index's)
	cells  []slotCell // by slot; a slot holds a cell once slotCell.has
	votes  []int64    // slot i's votes are votes[i*k : (i+1)*k]
	// over holds, by slot, what a slot has no room for (slotCell.over).
	over map[int32]cellOver
}

// slotCell is a cell as its group holds it: no pointer, so that the slots
// of millions of cells are memory the collector does not scan. Its votes
// are in the group's array. Its event id is in id: the 12 bytes of the form
// every intake gives (the region, "-" and 24 hexadecimal digits, see
// AssignID), or the id itself when it is short. Anything else (a longer
// id, votes for candidates not in the contest, vote types) is in the
// group's over.
type slotCell struct {
	seq         uint64
	ballotsCast int64
	// The reporting time: Unix seconds and nanoseconds, and its zone's
	// offset from UTC in seconds (all its JSON form carries).
	sec         int64
	nsec        int32
	off         int32
	reports     int32
	corrections int32
	id          [maxInlineID]byte
	idForm      uint8 // idNone, idHex, idInline or idOver
	idLen       uint8 // with idInline
	has         bool  // the precinct has reported: the slot holds a cell
	complete    bool
	over        bool // the group's over holds more of it
}

// maxInlineID is the longest event id a slot holds as it is: what fills a
// slot's 64 bytes.
const maxInlineID = 19

// How a cell's event id is held.
const (
	idNone   = iota // no id
	idHex           // region + "-" + hex(id[:12])
	idInline        // id[:idLen]
	idOver          // cell.overID
)

// cellOver is what a slot has no room for.
type cellOver struct {
	id        EventID
	other     map[CandidateID]int64
	voteTypes map[VoteType]map[CandidateID]int64
}

// load returns slot i's cell. Its votes are the group's own: setting them
// changes the group. Other changes take put.
func (g *cellGroup) load(i int) cell {
	cl := cell{slotCell: g.cells[i], region: g.region, votes: g.votes[i*g.k : (i+1)*g.k : (i+1)*g.k]}
	if cl.over {
		o := g.over[int32(i)]
		cl.overID, cl.other, cl.voteTypes = o.id, o.other, o.voteTypes
	}
	return cl
}

// put stores cl, loaded from slot i and changed, back into it.
func (g *cellGroup) put(i int, cl *cell) {
	cl.over = cl.idForm == idOver || cl.other != nil || cl.voteTypes != nil
	g.cells[i] = cl.slotCell
	if !cl.over {
		if g.over != nil {
			delete(g.over, int32(i))
		}
		return
	}
	if g.over == nil {
		g.over = map[int32]cellOver{}
	}
	g.over[int32(i)] = cellOver{id: cl.overID, other: cl.other, voteTypes: cl.voteTypes}
}

// cellRef is where a cell that Totals.cellFor returned goes back: slot i
// of group g, or the loose cell of key k.
type cellRef struct {
	g *cellGroup
	i int
	k cellKey
}

// putCell stores cl, returned by cellFor with ref and changed, back.
func (t *Totals) putCell(ref cellRef, cl *cell) {
	if ref.g != nil {
		ref.g.put(ref.i, cl)
		return
	}
	*t.loose[ref.k] = *cl
}

// eventID returns the cell's event id.
func (cl *cell) eventID() EventID {
	switch cl.idForm {
	case idHex, idInline:
		return EventID(cl.appendID(make([]byte, 0, cl.idLength())))
	case idOver:
		return cl.overID
	}
	return ""
}

// idLength returns the length of the cell's event id.
func (cl *cell) idLength() int {
	switch cl.idForm {
	case idHex:
		return len(cl.region) + 1 + 2*hexIDLen
	case idInline:
		return int(cl.idLen)
	case idOver:
		return len(cl.overID)
	}
	return 0
}

// appendID appends the cell's event id to b.
func (cl *cell) appendID(b []byte) []byte {
	switch cl.idForm {
	case idHex:
		b = append(b, cl.region...)
		b = append(b, '-')
		for _, c := range cl.id[:hexIDLen] {
			b = append(b, hexDigits[c>>4], hexDigits[c&15])
		}
	case idInline:
		b = append(b, cl.id[:cl.idLen]...)
	case idOver:
		b = append(b, cl.overID...)
	}
	return b
}

const hexDigits = "0123456789abcdef"

// hexIDLen is the bytes of the hexadecimal part of an id AssignID gives.
const hexIDLen = 12

// setID sets the cell's event id.
func setID[S ~string | ~[]byte](cl *cell, id S) {
	cl.overID, cl.idLen = "", 0
	switch {
	case len(id) == 0:
		cl.idForm = idNone
	case hexID(cl, id):
		cl.idForm = idHex
	case len(id) <= maxInlineID:
		cl.idForm, cl.idLen = idInline, uint8(copy(cl.id[:], id))
	default:
		cl.idForm, cl.overID = idOver, EventID(id)
	}
}

// hexID reports whether id is the cell's region, "-" and 24 lowercase
// hexadecimal digits, and if so puts their bytes into cl.id.
func hexID[S ~string | ~[]byte](cl *cell, id S) bool {
	n := len(cl.region)
	if len(id) != n+1+2*hexIDLen || string(id[:n]) != string(cl.region) || id[n] != '-' {
		return false
	}
	var h [hexIDLen]byte
	for i := range h {
		hi, lo := hexVal(id[n+1+2*i]), hexVal(id[n+2+2*i])
		if hi < 0 || lo < 0 {
			return false
		}
		h[i] = byte(hi<<4 | lo)
	}
	copy(cl.id[:], h[:])
	return true
}

// hexVal returns the value of lowercase hexadecimal digit c, or -1.
func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// reportedAt returns the cell's reporting time.
func (cl *cell) reportedAt() time.Time {
	return time.Unix(cl.sec, int64(cl.nsec)).In(fixedZone(int(cl.off)))
}

// setReportedAt sets the cell's reporting time to at, keeping its instant
// and its zone's offset.
func (cl *cell) setReportedAt(at time.Time) {
	_, off := at.Zone()
	cl.sec, cl.nsec, cl.off = at.Unix(), int32(at.Nanosecond()), int32(off)
}

// zones holds the zones of reporting times by their offset, so that equal
// times read back from cells are equal with ==.
var zones sync.Map // int -> *time.Location

// fixedZone returns the zone of offset off seconds east of UTC: UTC for 0,
// else one with no name (as time.Parse makes for an offset it does not
// know).
func fixedZone(off int) *time.Location {
	if off == 0 {
		return time.UTC
	}
	if l, ok := zones.Load(off); ok {
		return l.(*time.Location)
	}
	l := time.FixedZone("", off)
	if off%60 != 0 {
		return l // not a real zone's: not kept
	}
	l2, _ := zones.LoadOrStore(off, l)
	return l2.(*time.Location)
}

// slot returns the group and slot of the precinct at index pi of
// t.e.Precincts in contest c, making the group when create is set. It
// returns a nil group when c is not on that precinct's ballot, or when the
// group is not made yet and create is not set.
func (t *Totals) slot(pi int, c ContestID, create bool) (*cellGroup, int) {
	idx := t.e.index()
	if pi < 0 || pi >= len(idx.regionNum) {
		return nil, 0
	}
	ri := idx.regionNum[pi]
	gs := t.groups[c]
	if gs == nil {
		b := idx.ballots[c]
		if b == nil || !create {
			return nil, 0
		}
		gs = make([]*cellGroup, len(b))
		t.groups[c] = gs
	}
	g := gs[ri]
	if g == nil {
		prec := idx.ballots[c][ri]
		i, ok := slices.BinarySearch(prec, int32(pi))
		if !ok || !create {
			return nil, 0
		}
		k := len(t.candIndex(c).ids)
		g = &cellGroup{region: t.e.Regions[ri].ID, k: k, prec: prec, cells: make([]slotCell, len(prec)), votes: make([]int64, len(prec)*k)}
		gs[ri] = g
		return g, i
	}
	i, ok := slices.BinarySearch(g.prec, int32(pi))
	if !ok {
		return nil, 0
	}
	return g, i
}

// cellAt returns the cell of the precinct at index pi of t.e.Precincts in
// contest c, and false when it has not reported.
func (t *Totals) cellAt(pi int, c ContestID) (cell, bool) {
	if g, i := t.slot(pi, c, false); g != nil && g.cells[i].has {
		return g.load(i), true
	}
	return cell{}, false
}

// cell returns the cell of precinct p in contest c, and false when it has
// not reported.
func (t *Totals) cell(p PrecinctID, c ContestID) (cell, bool) {
	if cl, ok := t.cellAt(t.e.PrecinctIndex(p), c); ok {
		return cl, true
	}
	if cl := t.loose[cellKey{p, c}]; cl != nil {
		return *cl, true
	}
	return cell{}, false
}

// cellFor returns the cell of precinct p in contest c, whether the precinct
// had reported in it, and where the cell goes back once changed (putCell);
// a cell it had not is made, counted as held, for the report about to be
// applied.
func (t *Totals) cellFor(p PrecinctID, c ContestID) (ref cellRef, cl cell, had bool) {
	if g, i := t.slot(t.e.PrecinctIndex(p), c, true); g != nil {
		ref, cl = cellRef{g: g, i: i}, g.load(i)
		if cl.has {
			return ref, cl, true
		}
		cl.has = true
	} else {
		ref.k = cellKey{p, c}
		if lc := t.loose[ref.k]; lc != nil {
			return ref, *lc, true
		}
		// Not a precinct and contest of the election: never so for a
		// valid report, but Apply keeps it as it would any other.
		if t.loose == nil {
			t.loose = map[cellKey]*cell{}
		}
		cl = cell{slotCell: slotCell{has: true}}
		t.loose[ref.k] = &cell{}
	}
	t.ncells++
	return ref, cl, false
}

// LastContestSeqs returns, for each region and contest, the largest
// stream sequence among the cells of the region's precincts in the
// contest: the latest report applied there that the totals still hold.
func (t *Totals) LastContestSeqs() map[RegionID]map[ContestID]uint64 {
	m := map[RegionID]map[ContestID]uint64{}
	t.eachCell(func(id PrecinctID, c ContestID, cl *cell) {
		p := t.e.Precinct(id)
		if p == nil {
			return
		}
		rm := m[p.Region]
		if rm == nil {
			rm = map[ContestID]uint64{}
			m[p.Region] = rm
		}
		rm[c] = max(rm[c], cl.seq)
	})
	return m
}

// eachCell calls fn with every cell t holds, in no particular order.
func (t *Totals) eachCell(fn func(p PrecinctID, c ContestID, cl *cell)) {
	for c, gs := range t.groups {
		for _, g := range gs {
			if g == nil {
				continue
			}
			for i := range g.cells {
				if g.cells[i].has {
					cl := g.load(i)
					fn(t.e.Precincts[g.prec[i]].ID, c, &cl)
				}
			}
		}
	}
	for k, cl := range t.loose {
		fn(k.p, k.c, cl)
	}
}
