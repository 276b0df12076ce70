package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
)

// TLSFiles names the PEM files of a TLS setting. A server needs Cert and
// Key;
// a client needs only CA, when the server's certificate is not signed by a
// system CA.
type TLSFiles struct {
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	CA   string `json:"ca,omitempty"`
}

func (t TLSFiles) enabled() bool { return t.Cert != "" || t.Key != "" }

func (t TLSFiles) validate(field string) error {
	if (t.Cert == "") != (t.Key == "") {
		return fmt.Errorf("%s: set both cert and key, or neither", field)
	}
	return nil
}

// server returns the TLS config of a listener, nil when TLS is off.
func (t TLSFiles) server() (*tls.Config, error) {
	if !t.enabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// client returns the TLS config of a client trusting CA (or the system's
// CAs when CA is empty).
func (t TLSFiles) client() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CA == "" {
		return c, nil
	}
	pem, err := os.ReadFile(t.CA)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: %s: no PEM certificate", t.CA)
	}
	c.RootCAs = pool
	return c, nil
}

// readSecret returns the secret in file (trimmed), or "" when file is "".
// Errors name the file, never its content.
func readSecret(file string) (string, error) {
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("secret: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("secret: %s is empty", file)
	}
	return s, nil
}

// redacted is what configs show instead of a secret.
func redacted(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}
