package main

import (
	"errors"
	"io"
	"net"
	"sync"
)

// linkProxy forwards TCP connections from a loopback port to a target
// address, and can cut them: the demo routes each region's leaf link to the
// hub through one, so that a region can be taken offline and brought back
// while everything runs, as a real network outage would (the region keeps
// taking reports; the hub sees the link drop).
type linkProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	up    bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// newLinkProxy listens on a free loopback port and forwards to target.
func newLinkProxy(target string) (*linkProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &linkProxy{ln: ln, target: target, up: true, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *linkProxy) Addr() string { return p.ln.Addr().String() }

// Up reports whether the link is up.
func (p *linkProxy) Up() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up
}

// SetUp brings the link up, or cuts it: every open connection is closed and
// new ones are closed as soon as they are accepted, until it is up again.
func (p *linkProxy) SetUp(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *linkProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		up := p.up
		p.mu.Unlock()
		if !up {
			c.Close()
			continue
		}
		t, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if !p.up { // cut while dialing
			p.mu.Unlock()
			c.Close()
			t.Close()
			continue
		}
		p.conns[c], p.conns[t] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, t)
		go p.pipe(t, c)
	}
}

// pipe copies src to dst until either fails, then closes both.
func (p *linkProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
	dst.Close()
	src.Close()
}

// Close stops listening, closes every connection and waits for the copies.
func (p *linkProxy) Close() error {
	err := p.ln.Close()
	p.SetUp(false)
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
