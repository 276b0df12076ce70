package regional_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally/regional"
)

func runJetStream(tb testing.TB) *nats.Conn {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		tb.Fatal("nats not ready")
	}
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close) // runs before the server shuts down (LIFO)
	return nc
}

// TestServerDedupeVersusExpectedSubjectSeq pins the nats-server behaviour
// the correction pre-check is built around: on a single-replica stream the
// expected-last-subject-sequence check runs before the duplicate window, so
// a retried correction is refused with 10071 instead of being answered as a
// duplicate. (On replicated streams, 2.15's clustered path checks the
// duplicate window first.)
func TestServerDedupeVersusExpectedSubjectSeq(t *testing.T) {
	nc := runJetStream(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage, Duplicates: time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("report"), jetstream.WithMsgID("r1")); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, "t.a", []byte("correction"), jetstream.WithMsgID("c1"), jetstream.WithExpectLastSequencePerSubject(1))
	if err != nil || ack.Sequence != 2 {
		t.Fatalf("correction = %+v, %v; want seq 2", ack, err)
	}
	// The same correction again, same id and same expectation.
	ack, err = js.Publish(ctx, "t.a", []byte("correction"), jetstream.WithMsgID("c1"), jetstream.WithExpectLastSequencePerSubject(1))
	var jerr jetstream.JetStreamError
	if !errors.As(err, &jerr) || jerr.APIError().ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		t.Fatalf("retried correction = %+v, %v; want error 10071 (if this now answers duplicate, the server changed: the pre-check is still correct but no longer needed for retries)", ack, err)
	}
	// Without the expectation, the duplicate window answers.
	ack, err = js.Publish(ctx, "t.a", []byte("correction"), jetstream.WithMsgID("c1"))
	if err != nil || !ack.Duplicate || ack.Sequence != 2 {
		t.Fatalf("retry without expectation = %+v, %v; want duplicate of seq 2", ack, err)
	}
}

// TestConcurrentCorrections races corrections of the same report: exactly
// one is stored, every other gets 409, whether the pre-check or the server's
// expected-subject-sequence check catches it.
func TestConcurrentCorrections(t *testing.T) {
	n := MustOpenNode(t, nil)
	s := MustStream(t, n)
	post(t, n, "/api/v1/reports", reportN1).results(t)
	const racers = 8
	statuses := make([]int, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := correction("north-c"+string(rune('a'+i)), "north-r1", 1, 20+i)
			res, err := http.Post("http://"+n.HTTPAddr()+"/api/v1/corrections", "application/json", strings.NewReader(body))
			if err != nil {
				t.Error(err) // not Fatal: this is not the test goroutine
				return
			}
			_ = res.Body.Close() // the status is all this test needs
			statuses[i] = res.StatusCode
		}()
	}
	wg.Wait()
	ok := 0
	for i, st := range statuses {
		switch st {
		case http.StatusOK:
			ok++
		case http.StatusConflict:
		default:
			t.Errorf("racer %d: status %d, want 200 or 409", i, st)
		}
	}
	if ok != 1 {
		t.Errorf("%d corrections accepted, want 1 (statuses %v)", ok, statuses)
	}
	if got := msgCount(t, s); got != 2 {
		t.Errorf("stream messages = %d, want 2", got)
	}
	waitFor(t, "totals at seq 2", func() bool { return n.AppliedSeq() == 2 })
	res, _ := n.Totals("pres")
	if res.Corrections != 1 || !strings.HasPrefix(string(res.Regions[0].ID), "north") {
		t.Errorf("totals = %+v, want 1 correction", res)
	}
}

// TestExternalNATS runs a node against an external server whose JetStream
// domain is the region id: nothing is embedded.
func TestExternalNATS(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		JetStreamDomain: "north", StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	n := MustOpenNode(t, func(c *regional.Config) { c.NATS = regional.NATSConfig{URL: ns.ClientURL()} })
	if n.Server() != nil || n.ClientURL() != ns.ClientURL() {
		t.Errorf("Server() = %v, ClientURL() = %q; want nil, %q", n.Server(), n.ClientURL(), ns.ClientURL())
	}
	res := post(t, n, "/api/v1/reports", reportN1).results(t)
	if res[0].Seq != 1 {
		t.Errorf("seq = %d, want 1", res[0].Seq)
	}
	if got := msgCount(t, MustStream(t, n)); got != 1 {
		t.Errorf("stream messages = %d, want 1", got)
	}
}
