package tally

import (
	"reflect"
	"testing"
	"unsafe"
)

// A slot holds no pointer (the collector does not scan the slots of a
// national night's millions of cells) and takes 64 bytes.
func TestSlotCellLayout(t *testing.T) {
	if n := unsafe.Sizeof(slotCell{}); n != 64 {
		t.Errorf("slotCell takes %d bytes, want 64 (see maxInlineID)", n)
	}
	typ := reflect.TypeFor[slotCell]()
	for i := range typ.NumField() {
		switch f := typ.Field(i); f.Type.Kind() {
		case reflect.Pointer, reflect.String, reflect.Slice, reflect.Map, reflect.Interface, reflect.Func, reflect.Chan, reflect.UnsafePointer:
			t.Errorf("slotCell.%s is a %s: a slot must hold no pointer", f.Name, f.Type)
		}
	}
}

// The slot checks the election's index keeps are those of the groups'
// slots, and a group the election does not have has the check of no
// slots: a snapshot written with a wrong one would be refused by another
// version of Tally.
func TestGroupCheck(t *testing.T) {
	e := &Election{ID: "g", Name: "g", Date: "2026-11-03",
		Regions: []Region{{ID: "r1", Name: "R1"}, {ID: "r2", Name: "R2"}},
		Contests: []Contest{
			{ID: "a", Name: "A", Office: "a", Seats: 1, Candidates: []Candidate{{ID: "x", Name: "X"}}},
			{ID: "b", Name: "B", Office: "b", Seats: 1, Candidates: []Candidate{{ID: "x", Name: "X"}}},
		},
		Precincts: []Precinct{
			{ID: "p1", Name: "P1", County: "c", Region: "r1", Contests: []ContestID{"a", "b"}},
			{ID: "p2", Name: "P2", County: "c", Region: "r2", Contests: []ContestID{"a"}},
			{ID: "p3", Name: "P3", County: "c", Region: "r1", Contests: []ContestID{"a"}},
		},
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	idx := e.index()
	n := 0
	for c, gs := range idx.ballots {
		for ri, slots := range gs {
			if got, want := e.groupCheck(c, ri), slotsCheck(e, slots); got != want {
				t.Errorf("groupCheck(%s, %d) = %x, want %x", c, ri, got, want)
			}
			n++
		}
	}
	if n < 3 {
		t.Fatalf("checked %d groups, want the election's 3 or more", n)
	}
	if got, want := e.groupCheck("b", 1), slotsCheck(e, []int32{0}); got == want {
		t.Errorf("groupCheck(b, r2) = %x, the check of contest b in r1", got)
	}
	if got, want := e.groupCheck("none", 0), slotsCheck(e, nil); got != want {
		t.Errorf("groupCheck of no group = %x, want %x", got, want)
	}
}
