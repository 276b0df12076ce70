package tally

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
)

// TotalsCopy is a copy of a Totals' state, taken as cheaply as it can be
// kept: each group of cells (see cellGroup) is encoded into bytes, a few
// dozen per cell instead of the 64 of its slot and 8 per candidate's
// votes, and made into CellStates only when written. A snapshot of a national night
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
				cl := g.load(i)
				buf = gc.appendCell(buf, &cl)
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
	b = binary.AppendUvarint(b, uint64(cl.idLength()))
	b = cl.appendID(b)
	for _, n := range cl.votes {
		b = binary.AppendVarint(b, n)
	}
	b = binary.AppendVarint(b, cl.ballotsCast)
	b = binary.AppendVarint(b, cl.sec)
	b = binary.AppendUvarint(b, uint64(cl.nsec))
	b = binary.AppendVarint(b, int64(cl.off))
	b = binary.AppendUvarint(b, uint64(cl.reports))
	return binary.AppendUvarint(b, uint64(cl.corrections))
}

// nextCell decodes the next slot into cl, whose votes must have room for
// gc.k, and reports whether it holds a cell. gc.data is the copy's own
// encoding, so it is well formed.
func (gc *groupCopy) nextCell(cl *cell) bool {
	r := slotReader{b: gc.data, pos: gc.pos}
	has := r.slot(cl, gc.extras, &gc.x)
	gc.pos = r.pos
	return has
}

// slotReader decodes slots (appendCell) from b at pos; bad turns true at
// the first malformed byte, after which it decodes zeros.
type slotReader struct {
	b   []byte
	pos int
	bad bool
}

func (r *slotReader) byte() byte {
	if r.bad || r.pos >= len(r.b) {
		r.bad = true
		return 0
	}
	c := r.b[r.pos]
	r.pos++
	return c
}

func (r *slotReader) uv() uint64 {
	if r.bad {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.pos:])
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.pos += n
	return v
}

func (r *slotReader) sv() int64 {
	if r.bad {
		return 0
	}
	v, n := binary.Varint(r.b[r.pos:])
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.pos += n
	return v
}

// slot decodes the next slot into cl, whose votes must have the group's
// length, taking its maps from extras[*x] when it has any, and reports
// whether it holds a cell.
func (r *slotReader) slot(cl *cell, extras []cellExtra, x *int) bool {
	flags := r.byte()
	if flags&slotHas == 0 || r.bad {
		return false
	}
	cl.has, cl.complete = true, flags&slotComplete != 0
	cl.other, cl.voteTypes = nil, nil
	if flags&slotExtra != 0 {
		if *x >= len(extras) {
			r.bad = true
			return false
		}
		cl.other, cl.voteTypes = extras[*x].other, extras[*x].voteTypes
		*x++
	}
	cl.seq = r.uv()
	idLen := r.uv()
	if r.bad || idLen > uint64(len(r.b)-r.pos) {
		r.bad = true
		return false
	}
	setID(cl, r.b[r.pos:r.pos+int(idLen)])
	r.pos += int(idLen)
	for i := range cl.votes {
		cl.votes[i] = r.sv()
	}
	cl.ballotsCast = r.sv()
	sec, nsec, off := r.sv(), r.uv(), r.sv()
	if nsec >= 1e9 || off <= -24*3600 || off >= 24*3600 {
		r.bad = true
	}
	if !r.bad {
		cl.sec, cl.nsec, cl.off = sec, int32(nsec), int32(off)
	}
	reports, corrections := r.uv(), r.uv()
	if reports > math.MaxInt32 || corrections > math.MaxInt32 {
		r.bad = true
	}
	cl.reports, cl.corrections = int32(reports), int32(corrections)
	return !r.bad
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
	if err := WriteJSONWith(bw, &head, "cells", "[]", func() error { return c.writeCells(bw) }); err != nil {
		return err
	}
	return bw.Flush()
}

// writeCells writes the copy's cells as a JSON array, for WriteJSON.
func (c *TotalsCopy) writeCells(bw *bufio.Writer) error {
	bw.WriteByte('[')
	// In election order, as State: precincts, then each one's contests.
	// A group's slots come in that order too, so each group's data is
	// read from start to end.
	idx := c.e.index()
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
			if !gc.nextCell(&cl) {
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
	return bw.WriteByte(']')
}
