package tally

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"slices"
)

// TotalsCopy is a copy of a Totals' state, taken as cheaply as it can be:
// each contest's cells and votes are copied as the Totals holds them (see
// cellGroup), and made into CellStates only when written. A snapshot of a
// national night (millions of cells) is taken under the lock that guards
// the Totals; WriteJSON then streams it without building it whole.
type TotalsCopy struct {
	state  TotalsState // without Cells
	e      *Election
	groups map[ContestID][]cellGroup // copies of the Totals' groups
	n      int                       // cells in groups
	ci     map[ContestID]*candIndex  // shared with the Totals: never changed once made
	corr   map[cellKey]*Correction   // copies
}

// Copy returns a copy of t's state that later changes to t do not affect.
// The copied cells share their vote types and their votes of candidates
// outside the contest with t: Apply replaces those maps and never changes
// them.
func (t *Totals) Copy() *TotalsCopy {
	c := &TotalsCopy{state: *t.sums(), e: t.e, groups: make(map[ContestID][]cellGroup, len(t.groups)),
		ci: map[ContestID]*candIndex{}, corr: make(map[cellKey]*Correction, len(t.corrections))}
	for con, gs := range t.groups {
		cgs := make([]cellGroup, len(gs))
		for ri, g := range gs {
			if g != nil {
				cgs[ri] = cellGroup{prec: g.prec, cells: slices.Clone(g.cells), votes: slices.Clone(g.votes)}
			}
		}
		c.groups[con] = cgs
		c.ci[con] = t.candIndex(con)
	}
	for k, corr := range t.corrections {
		cp := *corr
		c.corr[k] = &cp
	}
	c.n = t.ncells - len(t.loose)
	return c
}

// Cells returns how many cells the copy holds.
func (c *TotalsCopy) Cells() int { return c.n }

// WriteJSON writes the copy as the JSON of its TotalsState (what
// json.Marshal writes of Totals.State at the same moment), one cell at a
// time.
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
	idx := c.e.index()
	first := true
	for pi := range c.e.Precincts {
		p := &c.e.Precincts[pi]
		for _, con := range p.Contests {
			gs := c.groups[con]
			if gs == nil {
				continue
			}
			g := &gs[idx.regionNum[pi]]
			slot, ok := slices.BinarySearch(g.prec, int32(pi))
			if !ok || g.cells == nil || !g.cells[slot].has {
				continue
			}
			ci := c.ci[con]
			cl := g.cells[slot]
			k := len(ci.ids)
			cl.votes = g.votes[slot*k : (slot+1)*k] // the copy's, not the Totals'
			key := cellKey{p.ID, con}
			cb, err := json.Marshal(CellState{Precinct: p.ID, Contest: con, Cell: *cl.public(ci), Correction: c.corr[key]})
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
