package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
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

// TestDashboardProjections replays the bundled results through the demo at
// full speed and checks, in headless Chromium, that every state contest
// shows its projection, with intervals, and a call; and that the page stays
// readable at 360 px. It also makes a manual retraction through the admin
// API with the demo's token.
func TestDashboardProjections(t *testing.T) {
	if testing.Short() {
		t.Skip("replays two states and drives a browser")
	}
	browserPath(t) // skip before the replay when there is no browser
	d := MustRunDemo(t)
	e := d.election.Election
	api := "http://" + d.gw.Addr()

	// The API first: every state contest gets a projection and a call.
	type merged struct {
		tally.ContestResult
		Projection *tally.Projection `json:"projection"`
		Call       *tally.Call       `json:"call"`
	}
	winners := map[tally.ContestID]tally.CandidateID{}
	waitFor(t, time.Minute, func() string {
		for _, c := range e.Contests {
			var m merged
			if st := getJSON(t, api+"/api/v1/contests/"+string(c.ID), &m); st != http.StatusOK {
				return fmt.Sprintf("contest %s: status %d", c.ID, st)
			}
			if m.Projection == nil {
				return fmt.Sprintf("contest %s: no projection", c.ID)
			}
			if m.Call == nil || m.Call.Status != tally.CallCalled {
				return fmt.Sprintf("contest %s: not called (call %+v, %.1f%% of expected vote counted)", c.ID, m.Call, m.Projection.CountedShare*100)
			}
			winners[c.ID] = m.Call.Winner
		}
		return ""
	})

	ctx := MustBrowser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(d.URL())); err != nil {
		t.Fatalf("load dashboard: %v", err)
	}
	estimate := regexp.MustCompile(`est\. \d+\.\d% \(\d+\.\d–\d+\.\d\)`)
	for _, c := range e.Contests {
		sel := `[data-contest="` + string(c.ID) + `"][data-projection="yes"][data-call="` + string(winners[c.ID]) + `"]`
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('`+sel+`') !== null`, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			t.Fatalf("contest %s: no projection and call for %s shown: %v", c.ID, winners[c.ID], err)
		}
		text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('`+sel+`').innerText`))
		if err != nil {
			t.Fatal(err)
		}
		name := e.Candidate(c.ID, winners[c.ID]).Name
		for _, want := range []string{"Called for " + name + " at ", "(model, ", "of expected vote counted", "Margin: ", "Expected vote outstanding: "} {
			if !strings.Contains(text, want) {
				t.Errorf("contest %s does not show %q:\n%s", c.ID, want, text)
			}
		}
		if !estimate.MatchString(text) {
			t.Errorf("contest %s shows no estimate with its interval:\n%s", c.ID, text)
		}
	}
	// National views have no projection of their own.
	for _, o := range e.Offices() {
		sel := `[data-contest="` + string(tally.NationalContestID(o)) + `"]`
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('`+sel+`').dataset.projection`))
		if err != nil || got != "no" {
			t.Errorf("national view %s data-projection = %q, %v; want no", o, got, err)
		}
	}

	// Readable at 360 px: nothing wider than the screen.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(360, 800)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.documentElement.scrollWidth <= 360`, chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		w, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
		t.Errorf("at 360 px the page is %d px wide", w)
	}
	if path := os.Getenv("TALLY_SCREENSHOT_PROJECTIONS"); path != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A manual retraction, with the demo's admin token, reaches the projector.
	c := e.Contests[0]
	body, err := json.Marshal(map[string]string{"contest": string(c.ID), "action": "retract", "reason": "test retraction"})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, api+"/api/v1/admin/calls", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.Config.HTTP.AdminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var call tally.Call
	if err := json.NewDecoder(res.Body).Decode(&call); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("retraction = %d %+v %v, want 200 and the call", res.StatusCode, call, err)
	}
	if call.Contest != c.ID || call.Status != tally.CallRetracted || !strings.HasPrefix(call.By, "admin") {
		t.Errorf("retraction answered %+v", call)
	}
}
