package main

// The PostgreSQL baseline of `tally bench --postgres`: the design the seed
// warns about, measured. Every precinct report is one transaction on a
// central table of totals: lock and read the precinct's rows, UPSERT them,
// add the difference to the national roll-up, COMMIT.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tallyvote/tally"
)

// pgResult is the outcome of runPostgresBench. Elapsed counts from the first
// transaction to the last commit; starting the server, loading the schema
// and the final check are outside it.
type pgResult struct {
	Events       int
	Elapsed      time.Duration
	EventsPerSec float64
	Server       string // the server's version and durability settings, as it reported them
}

// errNoPostgres is returned by findPostgres when no PostgreSQL server
// binaries are installed (apt-get install -y postgresql installs them).
var errNoPostgres = errors.New("no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; install them with apt-get install -y postgresql")

// pgBinDirs is where Debian's packages put each major version's server
// binaries.
const pgBinDirs = "/usr/lib/postgresql/*/bin"

// findPostgres returns the directory of the newest installed PostgreSQL
// server binaries: Debian's /usr/lib/postgresql/<version>/bin, else the
// directory of an initdb on the PATH. It returns errNoPostgres when there
// are none.
func findPostgres() (string, error) {
	complete := func(dir string) bool {
		for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	dirs, _ := filepath.Glob(pgBinDirs) // the pattern is valid
	// The newest major version first: "9.6" < "15" numerically.
	major := func(dir string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int {
		switch ma, mb := major(a), major(b); {
		case ma > mb:
			return -1
		case ma < mb:
			return 1
		}
		return 0
	})
	for _, d := range dirs {
		if complete(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && complete(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", errNoPostgres
}

// pgServer is a throwaway PostgreSQL server in a temporary directory.
type pgServer struct {
	bin  string     // server binaries
	dir  string     // temporary directory: data/, the log and the socket
	as   *user.User // run the binaries as this user; nil: as ourselves
	port int
}

func (s *pgServer) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *pgServer) logFile() string { return filepath.Join(s.dir, "postgres.log") }

// command runs a server binary, as s.as when set: postgres refuses to run as
// root.
func (s *pgServer) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	argv := append([]string{filepath.Join(s.bin, name)}, args...)
	if s.as != nil {
		if p, err := exec.LookPath("runuser"); err == nil {
			argv = append([]string{p, "-u", s.as.Username, "--"}, argv...)
		} else {
			argv = append([]string{"setpriv", "--reuid=" + s.as.Uid, "--regid=" + s.as.Gid, "--init-groups", "--"}, argv...)
		}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = s.dir // the server's user may not be able to enter ours
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func (s *pgServer) run(ctx context.Context, name string, args ...string) error {
	out, err := s.command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// startPostgres creates a cluster in a new temporary directory and starts it
// on a free loopback port. The caller stops it with stop.
func startPostgres(ctx context.Context, bin string) (*pgServer, error) {
	dir, err := os.MkdirTemp("", "tally-pg-")
	if err != nil {
		return nil, err
	}
	s := &pgServer{bin: bin, dir: dir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("postgres refuses to run as root, and there is no postgres user to run it as (apt-get install postgresql creates one): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.as = u
	}
	// --no-sync only skips initdb's own flush of the new cluster; the
	// server below commits with fsync as usual.
	if err := s.run(ctx, "initdb", "-D", s.dataDir(), "-U", "tally", "--auth=trust",
		"-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// Production defaults, stated rather than assumed: every commit is
	// flushed to disk before it is acknowledged, as with nats.sync: always.
	var lastErr error
	for range 3 { // a free port can be taken before the server binds it
		if s.port, err = pgFreePort(); err != nil {
			break
		}
		conf := fmt.Sprintf("\n# tally bench\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"+
			"max_connections = 200\nfsync = on\nsynchronous_commit = on\nfull_page_writes = on\n", s.port, s.dir)
		if err := os.WriteFile(filepath.Join(s.dataDir(), "postgresql.auto.conf"), []byte(conf), 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if s.as != nil {
			uid, _ := strconv.Atoi(s.as.Uid)
			gid, _ := strconv.Atoi(s.as.Gid)
			if err := os.Chown(filepath.Join(s.dataDir(), "postgresql.auto.conf"), uid, gid); err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
		}
		lastErr = s.run(ctx, "pg_ctl", "start", "-D", s.dataDir(), "-l", s.logFile(), "-w", "-t", "60")
		if lastErr == nil {
			return s, nil
		}
		s.stopMode("immediate") // in case it half started
		lastErr = fmt.Errorf("%w; server log: %s", lastErr, s.logTail())
	}
	if err == nil {
		err = lastErr
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("start postgres: %w", err)
}

// stop stops the server and removes its directory.
func (s *pgServer) stop() error {
	err := s.stopMode("fast")
	if err != nil {
		if err2 := s.stopMode("immediate"); err2 == nil {
			err = nil
		}
	}
	if rerr := os.RemoveAll(s.dir); err == nil {
		err = rerr
	}
	return err
}

func (s *pgServer) stopMode(mode string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return s.run(ctx, "pg_ctl", "stop", "-D", s.dataDir(), "-m", mode, "-w", "-t", "50")
}

// logTail returns the end of the server log, for an error message.
func (s *pgServer) logTail() string {
	b, _ := os.ReadFile(s.logFile())
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func (s *pgServer) connString() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=tally dbname=postgres sslmode=disable", s.port)
}

func pgFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pgSchema is the central design: each precinct's latest report per contest,
// and the national totals kept in step with it.
const pgSchema = `
CREATE TABLE totals (
	contest   text   NOT NULL,
	precinct  text   NOT NULL,
	candidate text   NOT NULL,
	votes     bigint NOT NULL,
	report_id text   NOT NULL,
	PRIMARY KEY (contest, precinct, candidate)
);
CREATE TABLE national (
	contest   text   NOT NULL,
	candidate text   NOT NULL,
	votes     bigint NOT NULL,
	PRIMARY KEY (contest, candidate)
);`

// runPostgresBench starts a PostgreSQL server from the installed packages,
// applies reports to it as the seed's central design would, one transaction
// each, with concurrency clients, and checks the national totals it ends with
// against the last report of every precinct and contest. Reports of the same
// precinct are applied in the order given; a correction must supersede the
// report the table holds. progress gets a line about once a second (nil: no
// progress). The server and its directory are removed before it returns.
func runPostgresBench(ctx context.Context, progress io.Writer, e *tally.Election, reports []*tally.Report, concurrency int) (res pgResult, err error) {
	if progress == nil {
		progress = io.Discard
	}
	concurrency = max(concurrency, 1)
	bin, err := findPostgres()
	if err != nil {
		return res, err
	}
	srv, err := startPostgres(ctx, bin)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := srv.stop(); serr != nil && err == nil {
			err = fmt.Errorf("stop postgres: %w", serr)
		}
	}()

	conns := make([]*pgx.Conn, concurrency)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.Background()) // the server goes away next; nothing to lose
			}
		}
	}()
	for i := range conns {
		if conns[i], err = pgx.Connect(ctx, srv.connString()); err != nil {
			return res, fmt.Errorf("connect to postgres: %w", err)
		}
	}
	if res.Server, err = pgDescribe(ctx, conns[0]); err != nil {
		return res, err
	}
	fmt.Fprintf(progress, "postgres: %s on 127.0.0.1:%d, %d clients\n", res.Server, srv.port, concurrency)
	if err := pgLoadSchema(ctx, conns[0], e); err != nil {
		return res, err
	}

	// Shard by precinct, so that one client applies a precinct's reports
	// in order and no two clients contend for its rows.
	shards := make([][]*tally.Report, concurrency)
	for _, r := range reports {
		h := fnv.New32a()
		h.Write([]byte(r.Precinct))
		i := int(h.Sum32() % uint32(concurrency))
		shards[i] = append(shards[i], r)
	}

	var done atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, concurrency)
	start := time.Now()
	for i := range concurrency {
		wg.Go(func() {
			for _, r := range shards[i] {
				if err := pgApply(ctx, conns[i], r); err != nil {
					errs[i] = fmt.Errorf("report %s: %w", r.ID, err)
					cancel()
					return
				}
				done.Add(1)
			}
		})
	}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				n := done.Load()
				fmt.Fprintf(progress, "postgres: %d/%d reports, %.0f reports/s\n", n, len(reports), float64(n)/time.Since(start).Seconds())
			}
		}
	})
	wg.Wait()
	res.Elapsed = time.Since(start)
	close(stopProgress)
	pwg.Wait()
	// The first failure, not the cancellations it caused in the others.
	var first error
	for _, e := range errs {
		if e != nil && (first == nil || errors.Is(first, context.Canceled) && !errors.Is(e, context.Canceled)) {
			first = e
		}
	}
	if first != nil {
		return res, first
	}
	res.Events = len(reports)
	if res.Elapsed > 0 {
		res.EventsPerSec = float64(res.Events) / res.Elapsed.Seconds()
	}
	fmt.Fprintf(progress, "postgres: %d reports in %v, %.0f reports/s\n", res.Events, res.Elapsed.Round(time.Millisecond), res.EventsPerSec)
	if err := pgVerify(ctx, conns[0], reports); err != nil {
		return res, err
	}
	return res, nil
}

// pgDescribe reports the server's version and the settings that make its
// commits durable.
func pgDescribe(ctx context.Context, c *pgx.Conn) (string, error) {
	var version, fsync, syncCommit, walSync string
	err := c.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'),
		current_setting('synchronous_commit'), current_setting('wal_sync_method')`).Scan(&version, &fsync, &syncCommit, &walSync)
	if err != nil {
		return "", fmt.Errorf("postgres settings: %w", err)
	}
	return fmt.Sprintf("PostgreSQL %s, fsync %s, synchronous_commit %s, wal_sync_method %s", version, fsync, syncCommit, walSync), nil
}

// pgLoadSchema creates the tables and a zero national row for every
// candidate of every contest, so that each report only updates rows.
func pgLoadSchema(ctx context.Context, c *pgx.Conn, e *tally.Election) error {
	if _, err := c.Exec(ctx, pgSchema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	var rows [][]any
	for _, ct := range e.Contests {
		for _, cand := range ct.Candidates {
			rows = append(rows, []any{string(ct.ID), string(cand.ID), int64(0)})
		}
	}
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"national"}, []string{"contest", "candidate", "votes"}, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("load national rows: %w", err)
	}
	return nil
}

// pgApply applies one report in one transaction: lock and read the
// precinct's rows for the contest, replace them, add the difference to the
// national totals, commit.
func pgApply(ctx context.Context, c *pgx.Conn, r *tally.Report) (err error) {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tx.Rollback(context.Background()) // the error at hand says more
		}
	}()
	rows, err := tx.Query(ctx, `SELECT candidate, votes, report_id FROM totals
		WHERE contest = $1 AND precinct = $2 FOR UPDATE`, string(r.Contest), string(r.Precinct))
	if err != nil {
		return err
	}
	old := map[tally.CandidateID]int64{}
	var held string
	for rows.Next() {
		var cand string
		var votes int64
		if err := rows.Scan(&cand, &votes, &held); err != nil {
			rows.Close()
			return err
		}
		old[tally.CandidateID(cand)] = votes
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if r.Correction != nil && string(r.Correction.Supersedes) != held {
		return fmt.Errorf("stale correction: supersedes %s, the latest report is %q", r.Correction.Supersedes, held)
	}

	// Every candidate of the old and the new report, sorted: the national
	// rows are locked in this order, so that two clients never deadlock.
	var cands []string
	var votes, deltas []int64
	for id := range r.Votes {
		cands = append(cands, string(id))
	}
	for id := range old {
		if _, ok := r.Votes[id]; !ok {
			cands = append(cands, string(id))
		}
	}
	slices.Sort(cands)
	for _, id := range cands {
		v := r.Votes[tally.CandidateID(id)]
		votes = append(votes, v)
		deltas = append(deltas, v-old[tally.CandidateID(id)])
	}

	b := &pgx.Batch{}
	b.Queue(`INSERT INTO totals (contest, precinct, candidate, votes, report_id)
		SELECT $1, $2, u.candidate, u.votes, $5 FROM unnest($3::text[], $4::bigint[]) AS u(candidate, votes)
		ON CONFLICT (contest, precinct, candidate) DO UPDATE SET votes = excluded.votes, report_id = excluded.report_id`,
		string(r.Contest), string(r.Precinct), cands, votes, string(r.ID))
	var updated []string
	for i, id := range cands {
		if deltas[i] == 0 {
			continue
		}
		b.Queue(`UPDATE national SET votes = votes + $3 WHERE contest = $1 AND candidate = $2`, string(r.Contest), id, deltas[i])
		updated = append(updated, id)
	}
	br := tx.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return fmt.Errorf("upsert totals: %w", err)
	}
	for _, id := range updated {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return fmt.Errorf("update national: %w", err)
		}
		if tag.RowsAffected() != 1 {
			br.Close()
			return fmt.Errorf("update national: no candidate %s in contest %s", id, r.Contest)
		}
	}
	if err := br.Close(); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// pgVerify checks that the national table holds the sum of the last report
// of every precinct and contest, and names the first difference.
func pgVerify(ctx context.Context, c *pgx.Conn, reports []*tally.Report) error {
	type key struct {
		p tally.PrecinctID
		c tally.ContestID
	}
	last := map[key]*tally.Report{}
	for _, r := range reports {
		last[key{r.Precinct, r.Contest}] = r
	}
	want := map[[2]string]int64{}
	for _, r := range last {
		for cand, v := range r.Votes {
			want[[2]string{string(r.Contest), string(cand)}] += v
		}
	}
	rows, err := c.Query(ctx, `SELECT contest, candidate, votes FROM national`)
	if err != nil {
		return fmt.Errorf("read national: %w", err)
	}
	got := map[[2]string]int64{}
	for rows.Next() {
		var ct, cand string
		var v int64
		if err := rows.Scan(&ct, &cand, &v); err != nil {
			rows.Close()
			return fmt.Errorf("read national: %w", err)
		}
		got[[2]string{ct, cand}] = v
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read national: %w", err)
	}
	var keys [][2]string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b [2]string) int {
		if n := strings.Compare(a[0], b[0]); n != 0 {
			return n
		}
		return strings.Compare(a[1], b[1])
	})
	for _, k := range keys {
		if got[k] != want[k] {
			return fmt.Errorf("postgres national totals differ: contest %s candidate %s has %d votes, the last reports sum to %d", k[0], k[1], got[k], want[k])
		}
	}
	return nil
}
