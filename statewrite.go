package tally

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"time"
)

// TotalsCopy is a copy of a Totals' state, taken as cheaply as it can be
// kept: each group of cells (see cellGroup) is encoded into bytes, a few
// dozen per cell instead of the hundred and more a cell takes, and made
// into CellStates only when written. A snapshot of a national night
// (millions of cells) is taken under the lock that guards the Totals;
// WriteJSON then streams it without building it whole.
type TotalsCopy struct {
	state  TotalsState // without Cells
	e      *Election
	groups map[ContestID][]groupCopy
	n      int                      // cells in groups
	ci     map[ContestID]*candIndex // shared with the Totals: never changed once made
	corr   map[cellKey]*Correction  // copies
}

// groupCopy is a cellGroup's cells, encoded slot by slot (appendCell) in
// data, with the maps of those that have any in extras.
type groupCopy struct {
	k      int // candidates
	data   []byte
	extras []cellExtra
	pos, x int // WriteJSON's place in data and extras
}

// cellExtra holds the maps of a copied cell. They are shared with the
// Totals: Apply replaces a cell's maps and never changes them.
type cellExtra struct {
	other     map[CandidateID]int64
	voteTypes map[VoteType]map[CandidateID]int64
}

// A copied slot's flags.
const (
	slotHas = 1 << iota
	slotComplete
	slotExtra
)

// Copy returns a copy of t's state that later changes to t do not affect.
func (t *Totals) Copy() *TotalsCopy {
	c := &TotalsCopy{state: *t.sums(), e: t.e, groups: make(map[ContestID][]groupCopy, len(t.groups)),
		ci: map[ContestID]*candIndex{}, corr: make(map[cellKey]*Correction, len(t.corrections))}
	var buf []byte
	for con, gs := range t.groups {
		ci := t.candIndex(con)
		cgs := make([]groupCopy, len(gs))
		for ri, g := range gs {
			if g == nil {
				continue
			}
			gc := &cgs[ri]
			gc.k = len(ci.ids)
			buf = buf[:0]
			for i := range g.cells {
				buf = gc.appendCell(buf, &g.cells[i])
			}
			gc.data = bytes.Clone(buf)
		}
		c.groups[con] = cgs
		c.ci[con] = ci
	}
	for k, corr := range t.corrections {
		cp := *corr
		c.corr[k] = &cp
	}
	c.n = t.ncells - len(t.loose)
	return c
}

// appendCell appends slot cl's encoding to b: its flags, then, when it
// holds a cell, its sequence, event id, votes (gc.k of them), ballots
// cast, reporting time (seconds, nanoseconds and the zone's offset: all
// its JSON form carries), reports and corrections.
func (gc *groupCopy) appendCell(b []byte, cl *cell) []byte {
	if !cl.has {
		return append(b, 0)
	}
	flags := byte(slotHas)
	if cl.complete {
		flags |= slotComplete
	}
	if cl.other != nil || cl.voteTypes != nil {
		flags |= slotExtra
		gc.extras = append(gc.extras, cellExtra{cl.other, cl.voteTypes})
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, cl.seq)
	b = binary.AppendUvarint(b, uint64(len(cl.id)))
	b = append(b, cl.id...)
	for _, n := range cl.votes {
		b = binary.AppendVarint(b, n)
	}
	b = binary.AppendVarint(b, cl.ballotsCast)
	_, off := cl.reportedAt.Zone()
	b = binary.AppendVarint(b, cl.reportedAt.Unix())
	b = binary.AppendUvarint(b, uint64(cl.reportedAt.Nanosecond()))
	b = binary.AppendVarint(b, int64(off))
	b = binary.AppendUvarint(b, uint64(cl.reports))
	return binary.AppendUvarint(b, uint64(cl.corrections))
}

// nextCell decodes the next slot into cl, whose votes must have room for
// gc.k, and reports whether it holds a cell.
func (gc *groupCopy) nextCell(cl *cell, zones map[int]*time.Location) bool {
	flags := gc.data[gc.pos]
	gc.pos++
	if flags&slotHas == 0 {
		return false
	}
	uv := func() uint64 {
		v, n := binary.Uvarint(gc.data[gc.pos:])
		gc.pos += n
		return v
	}
	sv := func() int64 {
		v, n := binary.Varint(gc.data[gc.pos:])
		gc.pos += n
		return v
	}
	cl.has, cl.complete = true, flags&slotComplete != 0
	cl.other, cl.voteTypes = nil, nil
	if flags&slotExtra != 0 {
		x := gc.extras[gc.x]
		gc.x++
		cl.other, cl.voteTypes = x.other, x.voteTypes
	}
	cl.seq = uv()
	idLen := int(uv())
	cl.id = EventID(gc.data[gc.pos : gc.pos+idLen])
	gc.pos += idLen
	for i := range cl.votes {
		cl.votes[i] = sv()
	}
	cl.ballotsCast = sv()
	sec, nsec, off := sv(), int64(uv()), int(sv())
	loc := time.UTC
	if off != 0 {
		if loc = zones[off]; loc == nil {
			loc = time.FixedZone("", off)
			zones[off] = loc
		}
	}
	cl.reportedAt = time.Unix(sec, nsec).In(loc)
	cl.reports, cl.corrections = int32(uv()), int32(uv())
	return true
}

// Cells returns how many cells the copy holds.
func (c *TotalsCopy) Cells() int { return c.n }

// WriteJSON writes the copy as the JSON of its TotalsState (what
// json.Marshal writes of Totals.State at the same moment), one cell at a
// time. A copy is written once.
func (c *TotalsCopy) WriteJSON(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	head := c.state
	head.Cells = []CellState{}
	b, err := json.Marshal(&head)
	if err != nil {
		return err
	}
	// b is {...,"cells":[],"contests":...}: the cells go between the
	// brackets.
	const mark = `"cells":[]`
	i := bytes.Index(b, []byte(mark))
	if i < 0 {
		return Errorf(EINTERNAL, "totals state: no cells field in %.40s", b)
	}
	bw.Write(b[:i+len(mark)-1])
	// In election order, as State: precincts, then each one's contests.
	// A group's slots come in that order too, so each group's data is
	// read from start to end.
	idx := c.e.index()
	zones := map[int]*time.Location{}
	var cl cell
	first := true
	for pi := range c.e.Precincts {
		p := &c.e.Precincts[pi]
		for _, con := range p.Contests {
			gs := c.groups[con]
			if gs == nil {
				continue
			}
			gc := &gs[idx.regionNum[pi]]
			if gc.data == nil {
				continue
			}
			ci := c.ci[con]
			if cap(cl.votes) < gc.k {
				cl.votes = make([]int64, gc.k)
			}
			cl.votes = cl.votes[:gc.k]
			if !gc.nextCell(&cl, zones) {
				continue
			}
			cb, err := json.Marshal(CellState{Precinct: p.ID, Contest: con, Cell: *cl.public(ci), Correction: c.corr[cellKey{p.ID, con}]})
			if err != nil {
				return err
			}
			if !first {
				bw.WriteByte(',')
			}
			first = false
			bw.Write(cb)
		}
	}
	bw.Write(b[i+len(mark)-1:])
	return bw.Flush()
}
