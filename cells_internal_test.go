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
