package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tallyvote/tally"
)

// runOneShot parses args into cmd and runs it to the end.
func runOneShot(t *testing.T, cmd command, getenv func(string) string, args ...string) error {
	t.Helper()
	if err := cmd.ParseFlags(args, getenv); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := cmd.Run(ctx)
	return errors.Join(err, cmd.Close())
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestKeysSubmitVerify runs the office tools against a real region node:
// tally keys makes the keys, tally submit signs and sends a CSV, another
// county's office is refused for the same precincts, a resubmission is
// answered as duplicates, and tally verify passes the stored events, then
// catches one published around the intake.
func TestKeysSubmitVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a region node")
	}
	dir := t.TempDir()
	keysDir := filepath.Join(dir, "keys")
	var out bytes.Buffer
	if err := runOneShot(t, NewKeysMain(&out), env(nil), "--counties", "--results", "bundled", "--regions", "2", "--out", keysDir); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), `"SU`) {
		t.Fatal("tally keys printed a seed")
	}
	le, err := loadElection(ElectionSource{Results: "bundled", Regions: 2})
	if err != nil {
		t.Fatal(err)
	}
	e := le.Election
	ok, err := loadOfficeKeys(e, keysDir)
	if err != nil {
		t.Fatal(err)
	}
	reg := e.Regions[0].ID
	offices := ok.Offices[reg]
	if len(offices) < 2 {
		t.Fatalf("region %s has %d county offices, want at least 2", reg, len(offices))
	}
	a, b := offices[0], offices[1]
	if st, err := os.Stat(filepath.Join(keysDir, a.ID+".nk")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}

	// One key made by name prints its public key, and only that.
	out.Reset()
	if err := runOneShot(t, NewKeysMain(&out), env(nil), "--name", "solo", "--out", keysDir); err != nil {
		t.Fatal(err)
	}
	if _, err := tally.ParsePublicKey(strings.TrimSpace(out.String())); err != nil {
		t.Errorf("tally keys --name printed %q: %v", out.String(), err)
	}

	// The region, configured with its offices.
	cfg := map[string]any{
		"region":   reg,
		"election": map[string]any{"results": "bundled", "regions": 2},
		"nats":     map[string]any{"port": 0, "store_dir": filepath.Join(dir, "store")},
		"http":     map[string]any{"addr": "127.0.0.1:0"},
		"offices":  offices,
		"log":      map[string]any{"level": "error", "format": "json"},
	}
	cfgPath := filepath.Join(dir, "region.json")
	b0, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, b0, 0o644); err != nil {
		t.Fatal(err)
	}
	const natsPassword = "verify-s3cret"
	regionEnv := env(map[string]string{"TALLY_NATS_PASSWORD": natsPassword})
	rm := NewRegionMain(&bytes.Buffer{})
	if err := rm.ParseFlags([]string{"--config", cfgPath}, regionEnv); err != nil {
		t.Fatal(err)
	}
	if !rm.Config.requireSignatures() {
		t.Fatal("require_signatures not on by default with offices listed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rm.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	intake := "http://" + rm.node.HTTPAddr()

	// A CSV of two precincts of office a's county.
	offs, err := tally.NewOffices(e, reg, offices)
	if err != nil {
		t.Fatal(err)
	}
	var csv strings.Builder
	csv.WriteString("precinct,contest,candidate,votes,complete\n")
	for _, p := range offs.Precincts(a.ID)[:min(2, len(offs.Precincts(a.ID)))] {
		c := e.Contest(e.Precinct(p).Contests[0])
		for i, cand := range c.Candidates {
			fmt.Fprintf(&csv, "%s,%s,%s,%d,true\n", p, c.ID, cand.ID, 10+i)
		}
	}
	csvPath := filepath.Join(dir, "reports.csv")
	if err := os.WriteFile(csvPath, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	submit := func(office tally.Office) (string, error) {
		var out bytes.Buffer
		err := runOneShot(t, NewSubmitMain(&out, &bytes.Buffer{}), env(nil),
			"--key", filepath.Join(keysDir, office.ID+".nk"), "--intake", intake, "--region", string(reg), "--csv", csvPath)
		return out.String(), err
	}
	if _, err := submit(b); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "may not report") {
		t.Fatalf("submit as another county's office: %v, want 403 may not report", err)
	}
	first, err := submit(a)
	if err != nil {
		t.Fatal(err)
	}
	again, err := submit(a)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(first, `"duplicate": true`) || !strings.Contains(again, `"duplicate": true`) || strings.Contains(again, `"duplicate": false`) {
		t.Errorf("first submit %s\nsecond %s\nwant the second all duplicates", first, again)
	}

	verify := func() (string, error) {
		var out bytes.Buffer
		err := runOneShot(t, NewVerifyMain(&out), regionEnv, "--config", cfgPath, "--nats", rm.node.ClientURL(), "--json")
		return out.String(), err
	}
	if res, err := verify(); err != nil || !strings.Contains(res, `"events": `) {
		t.Fatalf("verify: %v\n%s", err, res)
	}

	// An event published around the intake is caught.
	nc, err := rm.node.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithDomain(nc, string(reg))
	if err != nil {
		t.Fatal(err)
	}
	p := offs.Precincts(a.ID)[0]
	c := e.Contest(e.Precinct(p).Contests[0])
	forged := &tally.Report{ID: tally.EventID(string(reg) + "-forged"), Region: reg, Precinct: p, Contest: c.ID,
		Votes: map[tally.CandidateID]int64{c.Candidates[0].ID: 1e6}, Complete: true, ReportedAt: time.Now().UTC(), Office: a.ID, Signature: strings.Repeat("A", 86)}
	data, _ := forged.Encode()
	if _, err := js.Publish(ctx, tally.ResultsSubject(reg, p, c.ID), data); err != nil {
		t.Fatal(err)
	}
	res, err := verify()
	if err == nil || !strings.Contains(res, string(reg)+"-forged") {
		t.Errorf("verify after a forged event: %v\n%s; want it named and an error", err, res)
	}
}

// TestHubAdminNeedsToken: the hub's admin API refuses a request without the
// token read from admin_token_file, and the public API answers anonymously.
func TestHubAdminNeedsToken(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub")
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokenFile, []byte("t0ken-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{
		"election":  map[string]any{"results": "bundled", "regions": 2},
		"nats":      map[string]any{"port": 0, "leaf_port": 0, "store_dir": filepath.Join(dir, "hub")},
		"http":      map[string]any{"addr": "127.0.0.1:0", "admin_token_file": tokenFile},
		"projector": map[string]any{"enabled": false},
		"log":       map[string]any{"level": "error", "format": "json"},
	}
	cfgPath := filepath.Join(dir, "hub.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	m := NewHubMain(&logs)
	if err := m.ParseFlags([]string{"--config", cfgPath}, env(nil)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	api := "http://" + m.gw.Addr()
	call := `{"contest":"x","action":"call","winner":"y","reason":"r"}`
	for _, auth := range []string{"", "Bearer wrong", "Bearer t0ken-from-fil"} {
		req, _ := http.NewRequest(http.MethodPost, api+"/api/v1/admin/calls", strings.NewReader(call))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("admin call with %q: status %d, want 401", auth, res.StatusCode)
		}
	}
	res, err := http.Get(api + "/api/v1/election")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("public API: status %d, want 200", res.StatusCode)
	}
	if strings.Contains(logs.String(), "t0ken-from-file") {
		t.Error("the admin token was logged")
	}
}
