// Command tally runs the roles of the Tally results federation: region nodes,
// the hub (reconciler and gateway), replays of real results, and a demo with
// everything in one process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

const usage = `tally: election-night results, federated over NATS JetStream

Usage:
  tally demo     [flags]   regions, hub, dashboard and a replay of real results, in one process
  tally region   [flags]   a region node: embedded JetStream, intake API, regional totals
  tally hub      [flags]   the hub: mirrors of every region, national totals, dashboard and API
  tally gateway  [flags]   a gateway replica: the dashboard and API from a hub's national state, no reconciler
  tally replay   [flags]   replay a results file through the regions' intake
  tally election [flags]   print the election definition built from a results file
  tally eval     [flags]   replay results against their baseline in many orders and score the projector
  tally keys     [flags]   make an office's key pair (or one per county) and print the public key
  tally submit   [flags]   sign reports with an office key and send them to a region's intake
  tally export   [flags]   write every stored event of the hub's mirrors (or a region's stream) as an event log
  tally verify   [flags]   recompute totals, hash chains, checkpoints and signatures from the raw events and compare
  tally report   [flags]   the canvass report (HTML, CSV, JSON) or NIST CDF results, recomputed from the raw events
  tally bench    [flags]   whole-system benchmark on a synthetic election, each figure against a baseline

Run 'tally <command> -h' for a command's flags.
`

// command is one subcommand: it parses its flags, opens what it runs, and
// closes it. Run returns once everything is started; the process then waits
// for a signal (or, for one-shot commands, Run does the whole work).
type command interface {
	ParseFlags(args []string, getenv func(string) string) error
	Run(ctx context.Context) error
	Close() error
}

// oneShot is implemented by commands that finish on their own.
type oneShot interface{ Done() <-chan struct{} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var cmd command
	switch os.Args[1] {
	case "demo":
		cmd = NewDemo(os.Stdout, os.Stderr)
	case "region":
		cmd = NewRegionMain(os.Stderr)
	case "hub":
		cmd = NewHubMain(os.Stderr)
	case "gateway":
		cmd = NewGatewayMain(os.Stderr)
	case "replay":
		cmd = NewReplayMain(os.Stdout, os.Stderr)
	case "election":
		cmd = NewElectionMain(os.Stdout)
	case "eval":
		cmd = NewEvalMain(os.Stdout, os.Stderr)
	case "keys":
		cmd = NewKeysMain(os.Stdout)
	case "submit":
		cmd = NewSubmitMain(os.Stdout, os.Stderr)
	case "export":
		cmd = NewExportMain(os.Stdout, os.Stderr)
	case "verify":
		cmd = NewVerifyMain(os.Stdout)
	case "report":
		cmd = NewReportMain(os.Stdout)
	case "bench":
		cmd = NewBenchMain(os.Stdout, os.Stderr)
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "tally: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err := cmd.ParseFlags(os.Args[2:], os.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fail(err)
	}
	if err := cmd.Run(ctx); err != nil {
		_ = cmd.Close() // the run error is the one to report
		fail(err)
	}
	if o, ok := cmd.(oneShot); ok {
		select {
		case <-ctx.Done():
		case <-o.Done():
		}
	} else {
		<-ctx.Done()
	}
	// From here a second signal kills the process at once; otherwise the
	// shutdown (draining connections and consumers, a last checkpoint or
	// snapshot) has shutdownTimeout.
	stop()
	closed := make(chan error, 1)
	go func() { closed <- cmd.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			fail(err)
		}
	case <-time.After(shutdownTimeout):
		fail(fmt.Errorf("shutdown not done after %s; exiting", shutdownTimeout))
	}
}

// shutdownTimeout bounds a command's shutdown after SIGTERM or Ctrl-C.
const shutdownTimeout = 30 * time.Second

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tally:", err)
	os.Exit(1)
}

// newLogger builds the process's logger: JSON, or console lines when
// format is "console", or "auto" and w is a terminal.
func newLogger(w io.Writer, cfg LogConfig, service string) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	out := w
	console := cfg.Format == "console"
	if cfg.Format == "auto" {
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				console = true
			}
		}
	}
	if console {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Str("service", service).Logger()
}

// flagSet returns a FlagSet that reports errors to its caller, not os.Exit.
func flagSet(name string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tally "+name, flag.ContinueOnError)
	fs.SetOutput(w)
	return fs
}

// setFlags calls apply for every flag the user set on the command line, so
// that flags override the config file and environment but defaults do not.
func setFlags(fs *flag.FlagSet, apply map[string]func()) {
	fs.Visit(func(f *flag.Flag) {
		if a, ok := apply[f.Name]; ok {
			a()
		}
	})
}
