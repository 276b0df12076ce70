package tally

import "slices"

// cellGroup holds a Totals' cells of one contest in one region: a slot for
// each of the region's precincts with the contest on its ballot, in
// election order, made when the group's first report is applied. A national
// night has millions of cells; held so, a cell costs no map entry, no key
// and no allocation of its own, and its votes are a part of one array.
type cellGroup struct {
	prec  []int32 // the slots' precincts, as indexes in Election.Precincts (the election's index's)
	cells []cell  // by slot; a slot's cell is there once cell.has
	votes []int64 // slot i's votes are votes[i*k : (i+1)*k], k candidates
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
		g = &cellGroup{prec: prec, cells: make([]cell, len(prec)), votes: make([]int64, len(prec)*k)}
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
// contest c, or nil when it has not reported.
func (t *Totals) cellAt(pi int, c ContestID) *cell {
	if g, i := t.slot(pi, c, false); g != nil && g.cells[i].has {
		return &g.cells[i]
	}
	return nil
}

// cell returns the cell of precinct p in contest c, or nil when it has not
// reported.
func (t *Totals) cell(p PrecinctID, c ContestID) *cell {
	if cl := t.cellAt(t.e.PrecinctIndex(p), c); cl != nil {
		return cl
	}
	return t.loose[cellKey{p, c}]
}

// cellFor returns the cell of precinct p in contest c, and whether the
// precinct had reported in it; a cell it had not is made, counted as held,
// for the report about to be applied.
func (t *Totals) cellFor(p PrecinctID, c ContestID) (cl *cell, had bool) {
	if g, i := t.slot(t.e.PrecinctIndex(p), c, true); g != nil {
		cl = &g.cells[i]
		if cl.has {
			return cl, true
		}
		k := len(t.candIndex(c).ids)
		cl.has = true
		cl.votes = g.votes[i*k : (i+1)*k : (i+1)*k]
	} else if cl = t.loose[cellKey{p, c}]; cl != nil {
		return cl, true
	} else {
		// Not a precinct and contest of the election: never so for a
		// valid report, but Apply keeps it as it would any other.
		if t.loose == nil {
			t.loose = map[cellKey]*cell{}
		}
		cl = &cell{has: true}
		t.loose[cellKey{p, c}] = cl
	}
	t.ncells++
	return cl, false
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
					fn(t.e.Precincts[g.prec[i]].ID, c, &g.cells[i])
				}
			}
		}
	}
	for k, cl := range t.loose {
		fn(k.p, k.c, cl)
	}
}
