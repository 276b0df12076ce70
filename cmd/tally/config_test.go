package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigs loads and validates every example config in configs/.
func TestConfigs(t *testing.T) {
	none := func(string) string { return "" }
	tests := []struct {
		file string
		cmd  command
	}{
		{"region.yaml", NewRegionMain(nil)},
		{"hub.yaml", NewHubMain(nil)},
		{"gateway.yaml", NewGatewayMain(nil)},
		{"demo.yaml", NewDemo(nil, nil)},
		{"nats/hub/tally-hub.yaml", NewHubMain(nil)},
		{"nats/region-nh-1/tally-region.yaml", NewRegionMain(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			if err := tt.cmd.ParseFlags([]string{"-config", filepath.Join("..", "..", "configs", tt.file)}, none); err != nil {
				t.Fatal(err)
			}
		})
	}
	entries, err := os.ReadDir(filepath.Join("..", "..", "configs"))
	if err != nil {
		t.Fatal(err)
	}
	// configs/nats holds the NATS cluster deployment, run by TestExternalNATS.
	files, checked := 0, 0
	for _, en := range entries {
		if !en.IsDir() && en.Name() != "grafana-dashboard.json" { // not a config: TestGrafanaDashboard
			files++
		}
	}
	for _, tt := range tests {
		if !strings.Contains(tt.file, "/") {
			checked++
		}
	}
	if files != checked {
		t.Errorf("configs/ holds %d files, the test checks %d: add the new one here", files, checked)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name string
		cmd  command
		args []string
		env  map[string]string
		want string
	}{
		{"UnknownField", NewHubMain(nil), []string{"-config", write("a.yaml", "election: {results: bundled}\nhttp: {adr: x}\n")}, nil, `unknown field "adr"`},
		{"NoElection", NewHubMain(nil), nil, nil, "election: set file"},
		{"BadRegion", NewRegionMain(nil), []string{"--results", "bundled", "--region", "a.b"}, nil, "region:"},
		{"BadDuration", NewHubMain(nil), []string{"-config", write("b.yaml", "election: {results: bundled}\noffline_after: soon\n")}, nil, "duration"},
		{"BadEnvPort", NewHubMain(nil), []string{"--results", "bundled"}, map[string]string{"TALLY_NATS_PORT": "x"}, "TALLY_NATS_PORT"},
		{"BadSpeed", NewDemo(nil, nil), []string{"--speed", "fast"}, nil, "replay.speed"},
		{"BadLogLevel", NewDemo(nil, nil), []string{"--log-level", "loud"}, nil, "log.level"},
		{"BadProjectorInterval", NewHubMain(nil), []string{"-config", write("c.yaml", "election: {results: bundled}\nprojector: {interval: 0s}\n")}, nil, "projector.interval"},
		{"UnknownProjectorField", NewDemo(nil, nil), []string{"-config", write("d.yaml", "projector: {manual: true}\n")}, nil, `unknown field "manual"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cmd.ParseFlags(tt.args, env(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseFlags() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestConfigPrecedence checks defaults < file < environment < flags.
func TestConfigPrecedence(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hub.yaml")
	if err := os.WriteFile(p, []byte("election: {results: bundled}\nhttp: {addr: 127.0.0.1:1}\nnats: {store_dir: file, port: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := NewHubMain(nil)
	env := map[string]string{"TALLY_HTTP_ADDR": "127.0.0.1:2", "TALLY_NATS_STORE_DIR": "env"}
	if err := m.ParseFlags([]string{"-config", p, "--store", "flag"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	c := m.Config
	if c.NATS.Port != 1 || c.HTTP.Addr != "127.0.0.1:2" || c.NATS.StoreDir != "flag" || c.NATS.LeafPort != 7422 {
		t.Errorf("port %d addr %s store %s leaf %d; want 1 (file), 127.0.0.1:2 (env), flag (flag), 7422 (default)",
			c.NATS.Port, c.HTTP.Addr, c.NATS.StoreDir, c.NATS.LeafPort)
	}
}

// TestProjectorConfig checks the projector defaults of hub and demo, and the
// admin token from the environment.
func TestProjectorConfig(t *testing.T) {
	env := map[string]string{"TALLY_ADMIN_TOKEN": "from-env"}
	hub := NewHubMain(nil)
	if err := hub.ParseFlags([]string{"--results", "bundled"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if p := hub.Config.Projector; !p.Enabled || p.ManualCalls || p.Crosswalks != "bundled" || time.Duration(p.Interval) != time.Second {
		t.Errorf("hub projector = %+v, want enabled, bundled, 1s, no manual calls", p)
	}
	if hub.Config.HTTP.AdminToken != "from-env" {
		t.Errorf("hub admin token = %q, want the environment's", hub.Config.HTTP.AdminToken)
	}
	demo := NewDemo(nil, nil)
	if err := demo.ParseFlags(nil, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if p := demo.Config.Projector; !p.Enabled || !p.ManualCalls {
		t.Errorf("demo projector = %+v, want enabled with manual calls", p)
	}
}
