package regional_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/regional"
)

// office is a test office: its id, seed and keys.
type office struct {
	id   string
	seed string
	pub  string
	priv ed25519.PrivateKey
}

func newOffice(tb testing.TB, id string) office {
	tb.Helper()
	seed, pub := tally.NewOfficeKey()
	priv, err := tally.ParseSeed(seed)
	if err != nil {
		tb.Fatal(err)
	}
	return office{id: id, seed: seed, pub: pub, priv: priv}
}

// sign returns r signed by o as office id (o.id unless claimed is set),
// with reported_at now.
func (o office) sign(tb testing.TB, r tally.Report, claimed string) *tally.Report {
	tb.Helper()
	if claimed == "" {
		claimed = o.id
	}
	r.Region = "north"
	r.Votes = maps.Clone(r.Votes)
	if r.ReportedAt.IsZero() {
		r.ReportedAt = time.Now().UTC().Truncate(time.Millisecond)
	}
	r.ID = ""
	r.Office = claimed
	if err := r.AssignID(); err != nil {
		tb.Fatal(err)
	}
	if err := r.Sign(claimed, o.priv); err != nil {
		tb.Fatal(err)
	}
	return &r
}

func encode(tb testing.TB, r *tally.Report) string {
	tb.Helper()
	b, err := r.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// nkeyOption authenticates a NATS connection as office o.
func (o office) nkeyOption() nats.Option {
	return nats.Nkey(o.pub, func(nonce []byte) ([]byte, error) { return ed25519.Sign(o.priv, nonce), nil })
}

// securedNode opens region north with offices a (precinct n1) and b
// (county A: n1 and n2... but here n2 only), signatures required.
func securedNode(tb testing.TB, edit func(*regional.Config)) (*regional.Node, office, office) {
	tb.Helper()
	a, b := newOffice(tb, "office-a"), newOffice(tb, "office-b")
	n := MustOpenNode(tb, func(c *regional.Config) {
		c.Offices = []tally.Office{
			{ID: a.id, PublicKey: a.pub, Precincts: []tally.PrecinctID{"n1"}},
			{ID: b.id, PublicKey: b.pub, Precincts: []tally.PrecinctID{"n2"}},
		}
		c.RequireSignatures = true
		if edit != nil {
			edit(c)
		}
	})
	return n, a, b
}

var presN1 = tally.Report{Precinct: "n1", Contest: "pres", Votes: map[tally.CandidateID]int64{"biden": 10, "trump": 5}}

func TestKeysAreNkeys(t *testing.T) {
	o := newOffice(t, "x")
	kp, err := nkeys.FromSeed([]byte(o.seed))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil || pub != o.pub {
		t.Fatalf("nkeys public key = %q, %v; want %q", pub, err, o.pub)
	}
	if _, err := tally.ParsePublicKey(pub); err != nil {
		t.Fatal(err)
	}
	_, nseed, _ := func() (nkeys.KeyPair, []byte, error) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, nil, err
		}
		s, err := kp.Seed()
		return kp, s, err
	}()
	if _, err := tally.ParseSeed(string(nseed)); err != nil {
		t.Errorf("ParseSeed(nkeys seed) = %v", err)
	}
}

// TestSignedIntakeHTTP: over HTTP, only a valid signature of an office
// allowed the precinct gets a report stored; everything else is refused
// with 401/403 and a JSON error naming the report, and stores nothing.
func TestSignedIntakeHTTP(t *testing.T) {
	n, a, b := securedNode(t, nil)
	s := MustStream(t, n)
	mallory := newOffice(t, "mallory")

	good := a.sign(t, presN1, "")
	tampered := a.sign(t, presN1, "")
	tampered.Votes["biden"] = 1000
	n2 := presN1
	n2.Precinct = "n2"
	tests := []struct {
		name   string
		body   string
		status int
		code   string
		want   string
	}{
		{"Unsigned", `{"id":"north-x","region":"north","precinct":"n1","contest":"pres","votes":{"biden":1},"complete":false,"reported_at":"2024-11-05T20:00:00Z"}`, 401, tally.EUNAUTHORIZED, "report: signature: required"},
		{"UnknownKey", encode(t, mallory.sign(t, presN1, "")), 401, tally.EUNAUTHORIZED, `office: "mallory" is not an office`},
		{"WrongKey", encode(t, mallory.sign(t, presN1, a.id)), 401, tally.EUNAUTHORIZED, "does not verify"},
		{"Tampered", encode(t, tampered), 401, tally.EUNAUTHORIZED, "does not verify"},
		{"OtherOfficesPrecinct", encode(t, a.sign(t, n2, "")), 403, tally.EFORBIDDEN, `office "office-a" may not report for precinct "n2"`},
		{"BForA", encode(t, b.sign(t, presN1, "")), 403, tally.EFORBIDDEN, "may not report"},
		{"BatchNamesIndex", "[" + encode(t, good) + "," + encode(t, a.sign(t, n2, "")) + "]", 403, tally.EFORBIDDEN, "reports[1]: precinct"},
		{"Stale", encode(t, a.sign(t, tally.Report{Precinct: "n1", Contest: "pres", Votes: presN1.Votes, ReportedAt: time.Now().Add(-2 * time.Hour)}, "")), 400, tally.EINVALID, "outside the replay window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := post(t, n, "/api/v1/reports", tt.body)
			if res.Status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", res.Status, tt.status, res.Body)
			}
			code, msg := res.errorBody(t)
			if code != tt.code || !strings.Contains(msg, tt.want) {
				t.Errorf("error = %s %q, want %s containing %q", code, msg, tt.code, tt.want)
			}
			if got := msgCount(t, s); got != 0 {
				t.Errorf("stream holds %d messages after a refused report, want 0", got)
			}
		})
	}

	// The good report is stored with its office and signature; replaying it
	// is answered with the original sequence and stores nothing.
	first := post(t, n, "/api/v1/reports", encode(t, good)).results(t)
	again := post(t, n, "/api/v1/reports", encode(t, good)).results(t)
	if first[0].Duplicate || !again[0].Duplicate || again[0].Seq != first[0].Seq {
		t.Errorf("replay: first %+v, again %+v; want the original seq, duplicate", first[0], again[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := s.GetMsg(ctx, first[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := tally.DecodeReport(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Office != a.id || stored.Signature != good.Signature {
		t.Errorf("stored office %q signature %q, want %q %q", stored.Office, stored.Signature, a.id, good.Signature)
	}
	if got := msgCount(t, s); got != 1 {
		t.Errorf("stream holds %d messages, want 1", got)
	}
}

func TestOfficeRateLimit(t *testing.T) {
	n, a, _ := securedNode(t, func(c *regional.Config) { c.OfficeRate, c.OfficeBurst = 0.001, 2 })
	var batch []string
	for i := range 3 {
		r := presN1
		r.Votes = map[tally.CandidateID]int64{"biden": int64(i)}
		batch = append(batch, encode(t, a.sign(t, r, "")))
	}
	res := post(t, n, "/api/v1/reports", "["+strings.Join(batch, ",")+"]")
	if code, _ := res.errorBody(t); res.Status != http.StatusTooManyRequests || code != tally.ERATELIMIT {
		t.Fatalf("3 reports with burst 2: status %d code %s, want 429 rate_limited", res.Status, code)
	}
	post(t, n, "/api/v1/reports", "["+strings.Join(batch[:2], ",")+"]").results(t)
	if res := post(t, n, "/api/v1/reports", batch[2]); res.Status != http.StatusTooManyRequests {
		t.Errorf("after the burst: status %d, want 429", res.Status)
	}
}

// natsReply sends body on subj as a request and decodes the answer.
func natsReply(t *testing.T, nc *nats.Conn, subj, body string) (regional.SubmitResponse, string, error) {
	t.Helper()
	m, err := nc.Request(subj, []byte(body), 3*time.Second)
	if err != nil {
		return regional.SubmitResponse{}, "", err
	}
	var v struct {
		regional.SubmitResponse
		Error *struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &v); err != nil {
		t.Fatalf("reply %q: %v", m.Data, err)
	}
	if v.Error != nil {
		return v.SubmitResponse, v.Error.Code, nil
	}
	return v.SubmitResponse, "", nil
}

// TestSignedIntakeNATS: an office publishing over NATS connects as its own
// user and may publish only to its precincts' intake subjects; anonymous
// clients cannot connect; the intake checks the signature as over HTTP.
func TestSignedIntakeNATS(t *testing.T) {
	n, a, b := securedNode(t, nil)
	s := MustStream(t, n)

	if nc, err := nats.Connect(n.ClientURL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("anonymous connection accepted")
	}
	if nc, err := nats.Connect(n.ClientURL(), newOffice(t, "mallory").nkeyOption(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connection with an unknown nkey accepted")
	}

	perm := make(chan error, 16)
	nc, err := nats.Connect(n.ClientURL(), a.nkeyOption(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { perm <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	// Office A for its own precinct: stored.
	res, code, err := natsReply(t, nc, regional.IntakeSubject("north", "n1", "pres"), encode(t, a.sign(t, presN1, "")))
	if err != nil || code != "" || len(res.Results) != 1 || res.Results[0].Seq != 1 {
		t.Fatalf("office A, n1: %+v %q %v; want seq 1", res, code, err)
	}
	// Office A for office B's precinct: the server refuses the publish.
	n2 := presN1
	n2.Precinct = "n2"
	_, _, err = natsReply(t, nc, regional.IntakeSubject("north", "n2", "pres"), encode(t, a.sign(t, n2, "")))
	if err == nil {
		t.Fatal("office A published to precinct n2's intake subject")
	}
	waitPerm := func(what string) {
		t.Helper()
		select {
		case err := <-perm:
			if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
				t.Errorf("%s: async error %v, want a permissions violation", what, err)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("%s: no permissions violation", what)
		}
	}
	waitPerm("publish to n2")
	// Nor may it publish to the results subjects, bypassing the intake.
	if err := nc.Publish(tally.ResultsSubject("north", "n1", "pres"), []byte(encode(t, a.sign(t, presN1, "")))); err != nil {
		t.Fatal(err)
	}
	waitPerm("publish to results")
	// A report for another precinct on A's own subject is refused by the intake.
	_, code, err = natsReply(t, nc, regional.IntakeSubject("north", "n1", "pres"), encode(t, b.sign(t, n2, "")))
	if err != nil || code != tally.EFORBIDDEN {
		t.Errorf("n2 report on n1's subject: code %q, err %v; want forbidden", code, err)
	}
	// Tampered, over NATS: unauthorized.
	bad := a.sign(t, presN1, "")
	bad.Votes["trump"]++
	_, code, err = natsReply(t, nc, regional.IntakeSubject("north", "n1", "pres"), encode(t, bad))
	if err != nil || code != tally.EUNAUTHORIZED {
		t.Errorf("tampered: code %q, err %v; want unauthorized", code, err)
	}
	if got := msgCount(t, s); got != 1 {
		t.Errorf("stream holds %d messages, want 1", got)
	}
}

// TestVerifyStoredEvents: every stored event is checked from the stream
// alone; an event published around the intake (by the node's internal
// user, as an attacker with its password could) is detected.
func TestVerifyStoredEvents(t *testing.T) {
	n, a, b := securedNode(t, nil)
	n2 := presN1
	n2.Precinct = "n2"
	post(t, n, "/api/v1/reports", "["+encode(t, a.sign(t, presN1, ""))+","+encode(t, b.sign(t, n2, ""))+"]").results(t)

	nc, err := n.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, "north")
	if err != nil {
		t.Fatal(err)
	}
	offs, err := tally.NewOffices(testElection(t), "north", []tally.Office{
		{ID: a.id, PublicKey: a.pub, Precincts: []tally.PrecinctID{"n1"}},
		{ID: b.id, PublicKey: b.pub, Precincts: []tally.PrecinctID{"n2"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	audit, err := regional.Verify(ctx, js, tally.ResultsStream, offs)
	if err != nil || audit.Events != 2 || len(audit.Problems) != 0 {
		t.Fatalf("Verify() = %+v, %v; want 2 events, no problems", audit, err)
	}

	tampered := a.sign(t, presN1, "")
	tampered.Votes["biden"] = 99999
	if _, err := js.Publish(ctx, tally.ResultsSubject("north", "n1", "pres"), []byte(encode(t, tampered))); err != nil {
		t.Fatal(err)
	}
	moved := b.sign(t, n2, "") // validly signed, stored on another precinct's subject
	if _, err := js.Publish(ctx, tally.ResultsSubject("north", "n1", "pres"), []byte(encode(t, moved))); err != nil {
		t.Fatal(err)
	}
	audit, err = regional.Verify(ctx, js, tally.ResultsStream, offs)
	if err != nil {
		t.Fatal(err)
	}
	if audit.Events != 4 || len(audit.Problems) != 2 || audit.Problems[0].Seq != 3 || audit.Problems[0].Code != tally.EUNAUTHORIZED || audit.Problems[1].Code != tally.EFORBIDDEN {
		t.Errorf("Verify() after tampering = %+v, want problems at seq 3 (unauthorized) and 4 (forbidden)", audit)
	}
}

// TestAuthenticatedLeafMirror: the hub's leaf listener requires credentials;
// a region without them is not linked, one with them is, and the hub
// mirrors its stream across the authenticated link.
func TestAuthenticatedLeafMirror(t *testing.T) {
	hub, err := server.NewServer(&server.Options{
		ServerName: "hub", Host: "127.0.0.1", Port: -1,
		JetStream: true, JetStreamDomain: tally.HubDomain, StoreDir: t.TempDir(),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: -1, Users: []*server.User{{Username: "leaf", Password: "s3cret"}}},
		NoLog:    true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go hub.Start()
	if !hub.ReadyForConnections(10 * time.Second) {
		t.Fatal("hub not ready")
	}
	t.Cleanup(func() { hub.Shutdown(); hub.WaitForShutdown() })
	v, _ := hub.Varz(nil)
	leafURL := fmt.Sprintf("nats-leaf://127.0.0.1:%d", v.LeafNode.Port)

	anon := MustOpenNode(t, func(c *regional.Config) { c.NATS.HubURL = leafURL })
	time.Sleep(1500 * time.Millisecond) // a refused leaf has nothing to wait for
	if anon.Server().NumLeafNodes() != 0 || hub.NumLeafNodes() != 0 {
		t.Fatalf("a leaf without credentials was accepted")
	}
	if err := anon.Close(); err != nil {
		t.Fatal(err)
	}

	n, a, _ := securedNode(t, func(c *regional.Config) {
		c.NATS.HubURL, c.NATS.HubUser, c.NATS.HubPassword = leafURL, "leaf", "s3cret"
	})
	waitFor(t, "leaf link", func() bool { return n.Server().NumLeafNodes() == 1 && hub.NumLeafNodes() == 1 })
	post(t, n, "/api/v1/reports", encode(t, a.sign(t, presN1, ""))).results(t)

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
		Name: tally.MirrorStream("north"), Storage: jetstream.FileStorage,
		Mirror: &jetstream.StreamSource{Name: tally.ResultsStream, Domain: "north"},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "mirror", func() bool {
		info, err := mirror.Info(ctx)
		return err == nil && info.State.LastSeq == 1
	})
	// The hub's copy verifies from its stored bytes alone.
	offs, err := tally.NewOffices(testElection(t), "north", []tally.Office{{ID: a.id, PublicKey: a.pub, Precincts: []tally.PrecinctID{"n1"}}})
	if err != nil {
		t.Fatal(err)
	}
	audit, err := regional.Verify(ctx, js, tally.MirrorStream("north"), offs)
	if err != nil || audit.Events != 1 || len(audit.Problems) != 0 {
		t.Errorf("Verify(mirror) = %+v, %v; want 1 event, no problems", audit, err)
	}
}

// selfSigned returns a TLS config serving a fresh self-signed certificate
// for 127.0.0.1, and a pool trusting it.
func selfSigned(tb testing.TB) (*tls.Config, *x509.CertPool) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tally test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}, MinVersion: tls.VersionTLS12}, pool
}

// TestTLS: the intake serves HTTPS and the NATS client port requires TLS
// when configured; a client trusting the certificate gets through.
func TestTLS(t *testing.T) {
	srvTLS, pool := selfSigned(t)
	n, a, _ := securedNode(t, func(c *regional.Config) { c.HTTP.TLS, c.NATS.TLS = srvTLS, srvTLS })
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res, err := client.Post("https://"+n.HTTPAddr()+"/api/v1/reports", "application/json", strings.NewReader(encode(t, a.sign(t, presN1, ""))))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("HTTPS intake: status %d", res.StatusCode)
	}
	if res, err := http.Get("http://" + n.HTTPAddr() + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS intake: status %d, want 400", res.StatusCode)
		}
	}
	nc, err := nats.Connect(n.ClientURL(), a.nkeyOption(), nats.Secure(&tls.Config{RootCAs: pool}))
	if err != nil {
		t.Fatalf("NATS over TLS: %v", err)
	}
	defer nc.Close()
	r, code, err := natsReply(t, nc, regional.IntakeSubject("north", "n1", "pres"), encode(t, a.sign(t, tally.Report{Precinct: "n1", Contest: "pres", Votes: map[tally.CandidateID]int64{"biden": 11}}, "")))
	if err != nil || code != "" || len(r.Results) != 1 {
		t.Errorf("NATS intake over TLS: %+v %q %v", r, code, err)
	}
}

// TestLeafTLS: the leaf link to a hub whose leaf listener requires TLS and
// credentials comes up when the region trusts the hub's certificate.
func TestLeafTLS(t *testing.T) {
	srvTLS, pool := selfSigned(t)
	hub, err := server.NewServer(&server.Options{
		ServerName: "hub", Host: "127.0.0.1", Port: -1,
		JetStream: true, JetStreamDomain: tally.HubDomain, StoreDir: t.TempDir(),
		LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: -1, TLSConfig: srvTLS, TLSTimeout: 2,
			Users: []*server.User{{Username: "leaf", Password: "s3cret"}}},
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go hub.Start()
	if !hub.ReadyForConnections(10 * time.Second) {
		t.Fatal("hub not ready")
	}
	t.Cleanup(func() { hub.Shutdown(); hub.WaitForShutdown() })
	v, _ := hub.Varz(nil)
	n := MustOpenNode(t, func(c *regional.Config) {
		c.NATS.HubURL = fmt.Sprintf("nats-leaf://127.0.0.1:%d", v.LeafNode.Port)
		c.NATS.HubUser, c.NATS.HubPassword = "leaf", "s3cret"
		c.NATS.HubTLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	})
	waitFor(t, "TLS leaf link", func() bool { return n.Server().NumLeafNodes() == 1 && hub.NumLeafNodes() == 1 })
}
