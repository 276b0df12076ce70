package gateway

import (
	"bytes"
	"fmt"
	"testing"
)

func frameEvent(rev uint64, size int) event {
	f := fmt.Appendf(nil, "id: %d\ndata: ", rev)
	f = append(f, bytes.Repeat([]byte{'x'}, max(0, size-len(f)-2))...)
	return event{rev: rev, key: fmt.Sprint("k", rev), frame: append(f, "\n\n"...)}
}

// TestGather: the events waiting behind the first go out with it, in order,
// up to maxCoalesce events or maxCoalesceBytes, and the first event's
// frame, which the ring and the snapshot share, is not written into.
func TestGather(t *testing.T) {
	t.Run("waiting", func(t *testing.T) {
		in := make(chan event, 8)
		first := frameEvent(1, 40)
		first.frame = append(make([]byte, 0, 1024), first.frame...) // room to append into
		want := bytes.Clone(first.frame)
		for rev := uint64(2); rev <= 4; rev++ {
			ev := frameEvent(rev, 30)
			in <- ev
			want = append(want, ev.frame...)
		}
		var added []uint64
		got := gather(first, in, func(ev event) { added = append(added, ev.rev) })
		if !bytes.Equal(got, want) {
			t.Errorf("frame = %q, want %q", got, want)
		}
		if fmt.Sprint(added) != "[1 2 3 4]" {
			t.Errorf("added %v, want [1 2 3 4]", added)
		}
		if !bytes.Equal(first.frame, frameEvent(1, 40).frame) || !bytes.Equal(first.frame[:cap(first.frame)][len(first.frame):][:10], make([]byte, 10)) {
			t.Errorf("the first event's frame was written into: %q", first.frame[:len(first.frame)+10])
		}
		if len(in) != 0 {
			t.Errorf("%d events left waiting", len(in))
		}
	})
	t.Run("alone", func(t *testing.T) {
		first := frameEvent(1, 40)
		n := 0
		got := gather(first, make(chan event), func(event) { n++ })
		if &got[0] != &first.frame[0] || len(got) != len(first.frame) || n != 1 {
			t.Errorf("alone: got %q (copied: %v), %d added; want the event's own frame, 1 added", got, &got[0] != &first.frame[0], n)
		}
	})
	t.Run("count", func(t *testing.T) {
		in := make(chan event, maxCoalesce+10)
		for rev := range uint64(maxCoalesce + 10) {
			in <- frameEvent(rev+2, 20)
		}
		n := 0
		got := gather(frameEvent(1, 20), in, func(event) { n++ })
		if n != maxCoalesce || len(got) != 20*maxCoalesce || len(in) != 11 {
			t.Errorf("gathered %d events (%d bytes), %d left; want %d, %d bytes, 11 left", n, len(got), len(in), maxCoalesce, 20*maxCoalesce)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		in := make(chan event, 8)
		for rev := uint64(2); rev <= 6; rev++ {
			in <- frameEvent(rev, 100<<10)
		}
		n := 0
		got := gather(frameEvent(1, 100<<10), in, func(event) { n++ })
		// 100, 200, then 300 KiB: the third reaches maxCoalesceBytes (256 KiB).
		if n != 3 || len(got) != 300<<10 || len(in) != 3 {
			t.Errorf("gathered %d events (%d bytes), %d left; want 3 (%d bytes), 3 left", n, len(got), len(in), 300<<10)
		}
	})
}
