package main

// The processes of `tally bench`: the hub and the region nodes run as child
// processes of the same binary (tally hub, tally region), so that each one's
// peak memory can be read from /proc; the minimal HTTP baselines run in a
// child too (tally bench --serve-baseline), so that they, like the gateway,
// serve from a process of their own.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tallyvote/tally"
)

// child is a process started by the bench.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string // its stderr
	done chan struct{}
	err  error // the process's exit, once done is closed
}

// startChild runs exe with args, its stderr into logPath, and waits until
// ready returns true for a line of its stderr (or stdout, when onStdout),
// returning that line's values. It fails when the process exits first or
// after timeout.
func startChild(ctx context.Context, name, exe string, args []string, logPath string, onStdout bool, ready func(line []byte) bool, timeout time.Duration, env ...string) (*child, []byte, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(runtime.NumCPU())), env...)
	pr, pw := io.Pipe()
	if onStdout {
		cmd.Stdout, cmd.Stderr = pw, lf
	} else {
		cmd.Stdout, cmd.Stderr = lf, io.MultiWriter(lf, pw)
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		pw.Close()
		lf.Close()
		close(c.done)
	}()
	found := make(chan []byte, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			if !sent && ready(sc.Bytes()) {
				found <- append([]byte(nil), sc.Bytes()...)
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, pr) // keep the child's writes flowing
	}()
	select {
	case line := <-found:
		return c, line, nil
	case <-c.done:
		return nil, nil, fmt.Errorf("%s exited before it was ready (%v); its log: %s", name, c.err, logPath)
	case <-time.After(timeout):
		_ = c.stop(5 * time.Second)
		return nil, nil, fmt.Errorf("%s not ready after %s; its log: %s", name, timeout, logPath)
	case <-ctx.Done():
		_ = c.stop(5 * time.Second)
		return nil, nil, ctx.Err()
	}
}

// stop sends SIGTERM and waits up to d for the exit, then kills.
func (c *child) stop(d time.Duration) error {
	if c == nil {
		return nil
	}
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM) // it may have exited meanwhile
	select {
	case <-c.done:
		var ee *exec.ExitError
		if c.err != nil && !errors.As(c.err, &ee) {
			return c.err
		}
		if ee != nil && ee.ExitCode() > 0 {
			return fmt.Errorf("%s exited with %d; its log: %s", c.name, ee.ExitCode(), c.log)
		}
		return nil
	case <-time.After(d):
		_ = c.cmd.Process.Kill() // it did not stop in time
		<-c.done
		return fmt.Errorf("%s did not stop within %s; killed", c.name, d)
	}
}

// peakRSS returns the process's peak resident set (VmHWM), in bytes.
func (c *child) peakRSS() (int64, error) {
	return procStatusBytes(c.cmd.Process.Pid, "VmHWM:")
}

// procStatusBytes reads a "kB" field of /proc/<pid>/status.
func procStatusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(strings.TrimPrefix(line, field))
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// logLine decodes a JSON log line whose message is msg.
func logLine(line []byte, msg string) (map[string]any, bool) {
	if !bytes.Contains(line, []byte(msg)) {
		return nil, false
	}
	var v map[string]any
	if json.Unmarshal(line, &v) != nil || v["message"] != msg {
		return nil, false
	}
	return v, true
}

// hubProc is the hub's child process.
type hubProc struct {
	*child
	api  string // the gateway's base URL
	leaf string // host:port of its leaf-node listener
	// memoryLimit is the Go memory limit the hub logged (GOMEMLIMIT), 0
	// when it has none.
	memoryLimit int64
}

// regionProc is a region node's child process.
type regionProc struct {
	*child
	id     tally.RegionID
	intake string // base URL
	nats   string // client URL
	proxy  *linkProxy
}

// writeYAML writes v (JSON is YAML) to path.
func writeYAML(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// childArgs returns the arguments that run role with the config file:
// `role -config FILE`, or, when profiling, bench's wrapper around the same
// command that writes CPU and heap profiles into dir.
func childArgs(role, config, profileDir, name string) []string {
	if profileDir == "" {
		return []string{role, "-config", config}
	}
	return []string{"bench", "--profile-child", role, "--profile-out", filepath.Join(profileDir, name), "--", "-config", config}
}

// startHub starts `tally hub` on the election file in dir, with
// GOMEMLIMIT=memoryLimit when it is not empty.
func startHub(ctx context.Context, exe, dir, electionFile, leafPasswordFile, profileDir, memoryLimit string) (*hubProc, error) {
	cfg := map[string]any{
		"election": map[string]any{"file": electionFile},
		"nats": map[string]any{"host": "127.0.0.1", "port": 0, "leaf_port": 0, "store_dir": filepath.Join(dir, "hub"),
			"leaf_user": "leaf", "leaf_password_file": leafPasswordFile},
		"http": map[string]any{"addr": "127.0.0.1:0", "rate_limit": -1, "rate_burst": 1},
		"log":  map[string]any{"level": "info", "format": "json"},
	}
	path := filepath.Join(dir, "hub.yaml")
	if err := writeYAML(path, cfg); err != nil {
		return nil, err
	}
	var env []string
	if memoryLimit != "" {
		env = append(env, "GOMEMLIMIT="+memoryLimit)
	}
	var vals map[string]any
	c, _, err := startChild(ctx, "hub", exe, childArgs("hub", path, profileDir, "hub"), filepath.Join(dir, "hub.log"), false,
		func(line []byte) bool { v, ok := logLine(line, "hub opened"); vals = v; return ok }, time.Minute, env...)
	if err != nil {
		return nil, err
	}
	h := &hubProc{child: c}
	if v, ok := vals["memory_limit"].(float64); ok {
		h.memoryLimit = int64(v)
	}
	dash, _ := vals["dashboard"].(string)
	leaf, _ := vals["leaf"].(string)
	h.api = strings.TrimSuffix(dash, "/")
	if u, err := url.Parse(leaf); err == nil {
		h.leaf = u.Host
	}
	if h.api == "" || h.leaf == "" {
		_ = c.stop(5 * time.Second)
		return nil, fmt.Errorf("hub: no dashboard or leaf address in its log %s", c.log)
	}
	return h, nil
}

// startRegion starts `tally region` for region id, its leaf link to the hub
// through a cuttable proxy.
func startRegion(ctx context.Context, exe, dir, electionFile string, id tally.RegionID, hubLeaf, leafPasswordFile, natsPasswordFile, sync, profileDir string) (*regionProc, error) {
	proxy, err := newLinkProxy(hubLeaf)
	if err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"region":   string(id),
		"election": map[string]any{"file": electionFile},
		"nats": map[string]any{"host": "127.0.0.1", "port": 0, "store_dir": filepath.Join(dir, string(id)), "sync": sync,
			"hub": "nats-leaf://" + proxy.Addr(), "hub_user": "leaf", "hub_password_file": leafPasswordFile,
			"password_file": natsPasswordFile},
		"http": map[string]any{"addr": "127.0.0.1:0", "office_rate": -1, "office_burst": 1},
		"log":  map[string]any{"level": "info", "format": "json"},
	}
	path := filepath.Join(dir, string(id)+".yaml")
	if err := writeYAML(path, cfg); err != nil {
		proxy.Close()
		return nil, err
	}
	var vals map[string]any
	c, _, err := startChild(ctx, "region "+string(id), exe, childArgs("region", path, profileDir, string(id)), filepath.Join(dir, string(id)+".log"), false,
		func(line []byte) bool {
			v, ok := logLine(line, "region node opened")
			if _, has := v["intake"]; ok && has {
				vals = v
				return true
			}
			return false
		}, time.Minute)
	if err != nil {
		proxy.Close()
		return nil, err
	}
	r := &regionProc{child: c, id: id, proxy: proxy}
	r.intake, _ = vals["intake"].(string)
	r.nats, _ = vals["nats"].(string)
	if r.intake == "" || r.nats == "" {
		_ = c.stop(5 * time.Second)
		proxy.Close()
		return nil, fmt.Errorf("region %s: no intake or nats address in its log %s", id, c.log)
	}
	return r, nil
}

// baselineProc is the child serving the minimal HTTP baselines.
type baselineProc struct {
	*child
	url string
}

func startBaseline(ctx context.Context, exe, dir string) (*baselineProc, error) {
	c, line, err := startChild(ctx, "baseline server", exe, []string{"bench", "--serve-baseline"}, filepath.Join(dir, "baseline.log"), true,
		func(line []byte) bool { return bytes.HasPrefix(line, []byte("listening ")) }, 30*time.Second)
	if err != nil {
		return nil, err
	}
	return &baselineProc{child: c, url: strings.TrimSpace(strings.TrimPrefix(string(line), "listening "))}, nil
}

// baselineServer is the minimal net/http server of the baselines: a handler
// serving fixed bytes (reads), and a bare Server-Sent Events broadcast
// (fan-out and freshness): a channel per viewer, one loop writing each
// broadcast frame into every channel, and each viewer's handler writing and
// flushing what its channel brings.
type baselineServer struct {
	mu      sync.Mutex
	body    []byte
	etag    string
	clients map[chan []byte]struct{}
}

func (s *baselineServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/contest":
		s.mu.Lock()
		body, etag := s.body, s.etag
		s.mu.Unlock()
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("ETag", etag)
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	case r.Method == http.MethodPut && r.URL.Path == "/contest":
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.body, s.etag = b, r.Header.Get("X-ETag")
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && r.URL.Path == "/broadcast":
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		for ch := range s.clients {
			select {
			case ch <- b:
			default: // too slow: as the gateway, never block the broadcast
			}
		}
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == "/stream":
		ch := make(chan []byte, 256)
		s.mu.Lock()
		s.clients[ch] = struct{}{}
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.clients, ch)
			s.mu.Unlock()
		}()
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("Transfer-Encoding", "identity") // not chunked, as the gateway's stream
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		if _, err := io.WriteString(w, "retry: 2000\n\n"); err != nil || rc.Flush() != nil {
			return
		}
		for {
			select {
			case <-r.Context().Done():
				return
			case f := <-ch:
				if _, err := w.Write(f); err != nil || rc.Flush() != nil {
					return
				}
			}
		}
	default:
		http.NotFound(w, r)
	}
}

// machine describes the computer the bench runs on.
type machine struct {
	CPU      string  `json:"cpu"`
	Cores    int     `json:"cores"`
	MemoryGB float64 `json:"memory_gib"`
	Go       string  `json:"go"`
	OS       string  `json:"os"`
}

func describeMachine() machine {
	m := machine{CPU: "unknown", Cores: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				f := strings.Fields(line)
				if len(f) >= 2 {
					kb, _ := strconv.ParseFloat(f[1], 64)
					m.MemoryGB = kb / (1 << 20)
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += " (Linux " + strings.TrimSpace(string(b)) + ")"
	}
	return m
}

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit. Setting it
// with syscall.Setrlimit also makes the child processes inherit it. It
// returns the limit now in force and the one before.
func raiseFileLimit() (now, before uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	before = lim.Cur
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return before, before, err
	}
	return lim.Cur, before, nil
}

// randomToken returns a random password for the children's NATS users.
func randomToken() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// clockTicks is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// Linux).
const clockTicks = 100

// procCPU returns the CPU time (user and system) process pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14 and stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// cpuMeter takes the CPU time of a set of processes, by name, at two
// moments.
type cpuMeter struct {
	pids  map[string]int
	start map[string]time.Duration
}

func newCPUMeter(pids map[string]int) (*cpuMeter, error) {
	m := &cpuMeter{pids: pids, start: map[string]time.Duration{}}
	for name, pid := range pids {
		d, err := procCPU(pid)
		if err != nil {
			return nil, err
		}
		m.start[name] = d
	}
	return m, nil
}

// since returns each process's CPU time since the meter was made.
func (m *cpuMeter) since() (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for name, pid := range m.pids {
		d, err := procCPU(pid)
		if err != nil {
			return nil, err
		}
		out[name] = d - m.start[name]
	}
	return out, nil
}
