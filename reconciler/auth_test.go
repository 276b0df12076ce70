package reconciler

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestNoAnonymousAccess: the hub's client port refuses anonymous clients,
// and its leaf listener refuses a region without the leaf credentials.
func TestNoAnonymousAccess(t *testing.T) {
	r := MustOpenReconciler(t, testConfig(t, testElection(t)))
	if nc, err := nats.Connect(r.ClientURL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("anonymous client accepted by the hub")
	}
	if nc, err := nats.Connect(r.ClientURL(), nats.UserInfo("leaf", "guess"), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("client with a wrong password accepted by the hub")
	}
	anon := MustStartRegion(t, "north", r.LeafURL())
	time.Sleep(time.Second) // a refused link has no event to wait for
	if anon.ns.NumLeafNodes() != 0 || r.Server().NumLeafNodes() != 0 {
		t.Fatal("leaf link without credentials accepted")
	}
	anon.stop()
	ok := MustStartRegion(t, "south", leafURL(r))
	deadline := time.Now().Add(10 * time.Second)
	for ok.ns.NumLeafNodes() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("leaf link with credentials not established")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClientTLS: with NATS.TLS set the hub's client port takes TLS clients
// that trust its certificate and present the client credentials; the
// reconciler's own in-process connection keeps working.
func TestClientTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hub"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	cfg := testConfig(t, testElection(t))
	cfg.NATS.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	r := MustOpenReconciler(t, cfg)
	nc, err := nats.Connect(r.ClientURL(), append(r.ClientOptions(), nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))...)
	if err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	nc.Close()
	if nc, err := nats.Connect(r.ClientURL(), r.ClientOptions()...); err == nil {
		nc.Close()
		t.Error("client without trust in the certificate connected")
	}
}
