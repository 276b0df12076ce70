package tally

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
)

// TotalsCopy is a copy of a Totals' state, taken as cheaply as it can be:
// each cell is copied as the Totals holds it, its votes into one shared
// array, and made into a CellState only when written. A snapshot of a
// national night (millions of cells) is taken under the lock that guards
// the Totals; WriteJSON then streams it without building it whole.
type TotalsCopy struct {
	state TotalsState // without Cells
	keys  []cellKey
	cells []cell
	ci    map[ContestID]*candIndex // shared with the Totals: never changed once made
	corr  map[cellKey]*Correction  // copies
}

// Copy returns a copy of t's state that later changes to t do not affect.
func (t *Totals) Copy() *TotalsCopy {
	c := &TotalsCopy{state: *t.sums(), ci: map[ContestID]*candIndex{}, corr: map[cellKey]*Correction{}}
	n := 0
	t.eachCell(func(_ PrecinctID, _ ContestID, cl *cell) { n += len(cl.votes) })
	votes := make([]int64, 0, n)
	c.keys = make([]cellKey, 0, t.ncells)
	c.cells = make([]cell, 0, t.ncells)
	for pi, p := range t.e.Precincts {
		for _, con := range p.Contests {
			k := cellKey{p.ID, con}
			cl := t.cellAt(pi, con)
			if cl == nil {
				continue
			}
			cc := *cl
			i := len(votes)
			votes = append(votes, cl.votes...)
			cc.votes = votes[i:len(votes):len(votes)]
			if cl.other != nil {
				cc.other = copyVotes(cl.other)
			}
			c.keys = append(c.keys, k)
			c.cells = append(c.cells, cc)
			if c.ci[con] == nil {
				c.ci[con] = t.candIndex(con)
			}
			if corr := t.corrections[k]; corr != nil {
				cp := *corr
				c.corr[k] = &cp
			}
		}
	}
	return c
}

// Cells returns how many cells the copy holds.
func (c *TotalsCopy) Cells() int { return len(c.cells) }

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
	for j := range c.cells {
		if j > 0 {
			bw.WriteByte(',')
		}
		k, cl := c.keys[j], &c.cells[j]
		cb, err := json.Marshal(CellState{Precinct: k.p, Contest: k.c, Cell: *cl.public(c.ci[k.c]), Correction: c.corr[k]})
		if err != nil {
			return err
		}
		bw.Write(cb)
	}
	bw.Write(b[i+len(mark)-1:])
	return bw.Flush()
}
