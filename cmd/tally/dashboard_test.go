package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tallyvote/tally"
)

// browserPath finds a Chromium to drive. Under CI a missing browser is a
// failure (.ci/run installs Debian's chromium); elsewhere the test skips.
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on PATH: .ci/run must install it")
	}
	t.Skip("no chromium on PATH (apt-get install chromium)")
	return ""
}

// MustBrowser starts headless Chromium and returns a context to drive it.
func MustBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browserPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1400),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancel3)
	return ctx
}

// TestDashboardLive loads the dashboard in headless Chromium against a
// running federation and checks that it shows every contest and region and
// that a report submitted to a region's intake shows up without a reload.
func TestDashboardLive(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser")
	}
	le, err := loadElection(ElectionSource{Results: "bundled", Regions: 2})
	if err != nil {
		t.Fatal(err)
	}
	e := le.Election
	f := MustRunFederation(t, e, true)
	ctx := MustBrowser(t)

	// Every contest, and the national view of each office.
	var ids []string
	for _, c := range e.Contests {
		ids = append(ids, string(c.ID))
	}
	for _, o := range e.Offices() {
		ids = append(ids, string(tally.NationalContestID(o)))
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(f.api+"/")); err != nil {
		t.Fatalf("load dashboard: %v", err)
	}
	for _, id := range ids {
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`[data-contest="`+id+`"]`))); err != nil {
			t.Fatalf("contest %s not shown: %v", id, err)
		}
	}
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("[data-contest]").length`))
	if err != nil {
		t.Fatal(err)
	}
	if shown != len(ids) {
		t.Errorf("dashboard shows %d contests, want %d", shown, len(ids))
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__noReload = 42`)); err != nil {
		t.Fatal(err)
	}
	// Every region is listed with its status; all go live once linked.
	for _, r := range e.Regions {
		sel := chromedp.CSS(`[data-region="` + string(r.ID) + `"][data-region-status="live"]`)
		if err := chromedp.Do(ctx, chromedp.WaitVisible(sel)); err != nil {
			t.Fatalf("region %s not shown live: %v", r.ID, err)
		}
	}

	// A report arrives: the page updates from the live stream, not a reload.
	p := e.Precinct(e.RegionPrecincts(e.Regions[0].ID)[0])
	c := e.Contest(p.Contests[0])
	body, err := json.Marshal(map[string]any{"precinct": p.ID, "contest": c.ID, "votes": map[string]int{"biden": 1234, "trump": 567}, "complete": true})
	if err != nil {
		t.Fatal(err)
	}
	if st, ans := post(t, f.intake(p.Region)+"/api/v1/reports", body); st != http.StatusOK {
		t.Fatalf("report: %d %v", st, ans)
	}
	cell := `document.querySelector('[data-contest="` + string(c.ID) + `"] [data-candidate="biden"]')`
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cell+` && `+cell+`.dataset.votes === "1234"`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the report did not reach the page: %v", err)
	}
	marker, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__noReload`))
	if err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](cell+`.textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if marker != 42 {
		t.Errorf("the page reloaded (marker %d)", marker)
	}
	if want := "1,234"; !strings.Contains(text, want) {
		t.Errorf("candidate row %q does not show %q", text, want)
	}
	if path := os.Getenv("TALLY_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
