package regional_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/regional"
)

// runHub starts a plain hub server: JetStream domain "hub" and a leaf-node
// listener on a random port. It returns the server and its leaf URL.
func runHub(tb testing.TB) (*server.Server, string) {
	tb.Helper()
	ns, err := server.NewServer(&server.Options{
		ServerName: "hub", Host: "127.0.0.1", Port: -1,
		JetStream: true, JetStreamDomain: tally.HubDomain, StoreDir: tb.TempDir(),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: -1},
		NoLog:    true, NoSigs: true,
	})
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("hub not ready")
	}
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	v, err := ns.Varz(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return ns, fmt.Sprintf("nats-leaf://127.0.0.1:%d", v.LeafNode.Port)
}

// TestLeafMirror proves the leaf and domain configuration: the hub mirrors
// the region's RESULTS stream across the leaf link from the region's
// domain, with the region's sequence numbers, and catches up after the link
// was cut.
func TestLeafMirror(t *testing.T) {
	hub, leafURL := runHub(t)
	n := MustOpenNode(t, func(c *regional.Config) { c.NATS.HubURL = leafURL })
	waitFor(t, "leaf link", func() bool { return n.Server().NumLeafNodes() == 1 && hub.NumLeafNodes() == 1 })

	// Reports stored before the mirror exists are mirrored too.
	first := post(t, n, "/api/v1/reports", reportN2).results(t)

	nc, err := nats.Connect(hub.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mirror, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:    tally.MirrorStream("north"),
		Storage: jetstream.FileStorage,
		Mirror:  &jetstream.StreamSource{Name: tally.ResultsStream, Domain: "north"},
	})
	if err != nil {
		t.Fatal(err)
	}
	res := post(t, n, "/api/v1/reports", reportN1).results(t)
	if res[0].Seq != 2 {
		t.Fatalf("seq = %d, want 2", res[0].Seq)
	}
	mirrored := func(seq uint64) func() bool {
		return func() bool {
			info, err := mirror.Info(ctx)
			return err == nil && info.State.LastSeq >= seq
		}
	}
	waitFor(t, "mirror to reach seq 2", mirrored(2))
	for _, want := range []struct {
		seq uint64
		id  tally.EventID
	}{{first[0].Seq, first[0].ID}, {res[0].Seq, res[0].ID}} {
		m, err := mirror.GetMsg(ctx, want.seq)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := tally.DecodeReport(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if rep.ID != want.id || m.Subject != tally.ResultsSubject("north", rep.Precinct, rep.Contest) {
			t.Errorf("mirror seq %d = %s on %s, want %s", want.seq, rep.ID, m.Subject, want.id)
		}
	}

	t.Run("Outage", func(t *testing.T) {
		// Cut the link from the region's side (it comes back within about a
		// second); the region keeps taking reports and the mirror catches up.
		lz, err := n.Server().Leafz(nil)
		if err != nil || len(lz.Leafs) != 1 {
			t.Fatalf("leafz = %+v, %v", lz, err)
		}
		if err := n.Server().DisconnectClientByID(lz.Leafs[0].ID); err != nil {
			t.Fatal(err)
		}
		res := post(t, n, "/api/v1/reports", reportG1).results(t)
		if res[0].Seq != 3 {
			t.Fatalf("seq during outage = %d, want 3", res[0].Seq)
		}
		waitFor(t, "leaf to reconnect and mirror to reach seq 3", mirrored(3))
		m, err := mirror.GetMsg(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(jetstream.MsgIDHeader) != string(res[0].ID) {
			t.Errorf("mirror seq 3 id = %q, want %q", m.Header.Get(jetstream.MsgIDHeader), res[0].ID)
		}
	})

	// The hub's own JetStream API is not the region's: the region stream is
	// not visible in the hub domain.
	if _, err := js.Stream(ctx, tally.ResultsStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("hub domain Stream(RESULTS) = %v, want not found", err)
	}
}
