package reconciler

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

// cutter is a TCP proxy in front of the hub's leaf port whose connections
// the test can cut, as a network outage does.
type cutter struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	up     bool
	conns  map[net.Conn]bool
}

func mustStartCutter(tb testing.TB, target string) *cutter {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	c := &cutter{ln: ln, target: target, up: true, conns: map[net.Conn]bool{}}
	go c.accept()
	tb.Cleanup(func() { ln.Close(); c.set(false) })
	return c
}

func (c *cutter) set(up bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.up = up
	if !up {
		for conn := range c.conns {
			conn.Close()
		}
	}
}

func (c *cutter) accept() {
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", c.target)
		c.mu.Lock()
		if err != nil || !c.up {
			c.mu.Unlock()
			in.Close()
			if out != nil {
				out.Close()
			}
			continue
		}
		c.conns[in], c.conns[out] = true, true
		c.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(in, out)
		go pipe(out, in)
	}
}

// A region whose link is cut again and again while it keeps reporting
// loses nothing on the way to the hub.
func TestLinkCutsLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: cuts a link several times")
	}
	e := testElection(t)
	cfg := testConfig(t, e)
	r := MustOpenReconciler(t, cfg)
	u, err := url.Parse(leafURL(r))
	if err != nil {
		t.Fatal(err)
	}
	cut := mustStartCutter(t, u.Host)
	u.Host = cut.ln.Addr().String()
	g := &region{id: "r1", dir: t.TempDir(), tb: t, reconnect: 100 * time.Millisecond}
	g.start(u.String())
	t.Cleanup(g.stop)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			g.publish(g.report([]tally.PrecinctID{"p1", "p2"}[i%2], "pres-a", int64(i), int64(i), false))
			if i%40 == 0 {
				g.checkpoint(e, nil)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for _, d := range []time.Duration{time.Second, 300 * time.Millisecond, 2 * time.Second, 100 * time.Millisecond, time.Second} {
		time.Sleep(700 * time.Millisecond)
		cut.set(false)
		time.Sleep(d)
		cut.set(true)
	}
	time.Sleep(time.Second)
	close(stop)
	<-done
	last := g.lastSeq()
	// A plain mirror can take some 40 s to resume after a cut (see
	// mirror.go), more on a loaded machine.
	waitFor(t, 90*time.Second, "all applied", func() error {
		if got := r.Applied("r1"); got != last {
			m, _ := mirrorLastSeq(r, "r1")
			return fmt.Errorf("applied %d of %d, mirror at %d", got, last, m)
		}
		return nil
	})
	want := tally.NewTotals(e)
	g.recompute(e, want)
	if got, _ := r.stateJSON(t); !bytes.Equal(got, mustMarshal(t, want.State())) {
		t.Error("totals differ from the region's stream")
	}
	if st := statusOf(r.Statuses(), "r1"); st.Alert != nil {
		t.Errorf("alert: %+v", st.Alert)
	}
}
