package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/regional"
)

// TestBrowserDashboard replays the bundled results through the demo and
// drives the dashboard in headless Chromium: the overview with every contest
// and the feed of changes; a contest page with its county map, county and
// region tables and precinct list; a precinct's audit trail showing a
// correction with its reason; the partial-results banner while a region is
// cut off, cleared when it returns; a live update without reload; and axe-core
// finding no serious or critical accessibility violation, at 1280 and 360 px.
// With TALLY_SCREENSHOTS=dir it writes the overview and a contest page, at
// both widths, into dir (docs/screenshots in the README).
func TestBrowserDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("replays two states and drives a browser")
	}
	browserPath(t)
	axe, err := os.ReadFile("testdata/axe.min.js")
	if err != nil {
		t.Fatal(err)
	}
	d := MustRunDemo(t)
	e := d.election.Election
	api := "http://" + d.gw.Addr()
	const contest = "nm-president"
	checkDemoTotals(t, d)

	ctx := MustBrowser(t)
	run := func(a chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return s
	}
	wait := func(what, cond string, d time.Duration) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(d))); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	checkA11y := func(where string) {
		t.Helper()
		if ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.axe !== undefined`)); !ok {
			if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](string(axe)+"\n;true")); err != nil {
				t.Fatalf("inject axe: %v", err)
			}
		}
		type violation struct {
			ID, Impact, Help string
			Nodes            []struct{ Target []any }
		}
		res, err := chromedp.Run(ctx, chromedp.Evaluate[[]violation](
			`axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => ({target: n.target}))})))`,
			chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("axe.run: %v", err)
		}
		for _, v := range res {
			msg := fmt.Sprintf("%s: axe %s (%s): %s, at %v", where, v.ID, v.Impact, v.Help, v.Nodes)
			if v.Impact == "serious" || v.Impact == "critical" {
				t.Error(msg)
			} else {
				t.Log(msg)
			}
		}
	}
	shots := os.Getenv("TALLY_SCREENSHOTS")
	shot := func(name string) {
		t.Helper()
		if shots == "" {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fitsPhone := func(where string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.documentElement.scrollWidth <= 360`, chromedp.WithPollingTimeout(5*time.Second))); err != nil {
			t.Errorf("%s: at 360 px the page is %s px wide", where, eval(`String(document.documentElement.scrollWidth)`))
		}
	}

	// The overview: every contest, and the feed of what changed.
	run(chromedp.Navigate(api + "/"))
	for _, c := range e.Contests {
		wait("contest "+string(c.ID), `document.querySelector('[data-contest="`+string(c.ID)+`"] [data-details]') !== null`, 30*time.Second)
	}
	for _, o := range e.Offices() {
		wait("national view", `document.querySelector('[data-contest="`+string(tally.NationalContestID(o))+`"]') !== null`, 30*time.Second)
	}
	wait("the feed", `document.querySelectorAll('#feed li[data-feed]').length > 0`, 30*time.Second)
	if text := eval(`document.querySelector('#feed li[data-feed="batch"]').textContent`); !strings.Contains(text, " votes (") {
		t.Errorf("feed batch item = %q", text)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__noReload = 7`)); err != nil {
		t.Fatal(err)
	}
	checkA11y("overview")
	shot("overview-desktop")

	// A contest page: map, tables, precincts.
	hash := func(h string) { t.Helper(); eval(`location.hash = "` + h + `"`) } // the page routes by itself
	hash("#/contest/" + contest)
	var counties tally.CountyResults
	if st := getJSON(t, api+"/api/v1/contests/"+contest+"/counties", &counties); st != http.StatusOK || len(counties.Counties) == 0 {
		t.Fatalf("counties: %d %+v", st, counties)
	}
	n := len(counties.Counties)
	wait("county map", fmt.Sprintf(`document.querySelectorAll('#cp-map path[data-county-shape]').length === %d`, n), 30*time.Second)
	wait("county table", fmt.Sprintf(`document.querySelectorAll('#county-table tbody tr').length === %d`, n), 10*time.Second)
	wait("precinct list", `document.querySelectorAll('#precinct-table tbody tr').length === 50`, 10*time.Second)
	label := eval(`document.querySelector('#cp-map path[data-county-shape="Bernalillo"]').getAttribute('aria-label')`)
	if !strings.HasPrefix(label, "Bernalillo: BIDEN leads by ") || !strings.HasSuffix(label, " of 608 precincts") {
		t.Errorf("Bernalillo's label = %q", label)
	}
	// Every county of the data is drawn ("Dona Ana" is the Census's "Doña Ana").
	if got := eval(`document.querySelector('#cp-map path[data-county-shape="Dona Ana"]') ? "yes" : "no"`); got != "yes" {
		t.Error("Dona Ana not on the map")
	}
	if got := eval(`String(document.querySelectorAll('#cp-regions tbody tr').length)`); got != "2" {
		t.Errorf("region rows = %s, want 2", got)
	}
	// Searching the precinct list.
	run(chromedp.SendKeys(`#pf-q`, "PCT 00"))
	wait("precinct search", `document.querySelectorAll('#precinct-table tbody tr').length > 0 && [...document.querySelectorAll('#precinct-table tbody th')].every(th => th.textContent.includes('PCT 00'))`, 10*time.Second)
	checkA11y("contest page")
	shot("contest-desktop")

	// A precinct's audit trail shows its correction, with the reason.
	var page struct {
		Precincts []struct {
			ID         tally.PrecinctID  `json:"id"`
			Correction *tally.Correction `json:"correction"`
		} `json:"precincts"`
	}
	if st := getJSON(t, api+"/api/v1/contests/"+contest+"/precincts?corrected=true&limit=1", &page); st != http.StatusOK || len(page.Precincts) == 0 || page.Precincts[0].Correction == nil {
		t.Fatalf("no corrected precinct in %s: %d %+v", contest, st, page)
	}
	corrected := page.Precincts[0]
	hash("#/contest/" + contest + "/precinct/" + string(corrected.ID))
	wait("audit trail", `document.querySelector('#audit-table tr[data-kind="correction"]') !== null`, 20*time.Second)
	row := eval(`document.querySelector('#audit-table tr[data-kind="correction"]').innerText`)
	if !strings.Contains(row, corrected.Correction.Reason) || !strings.Contains(row, string(corrected.Correction.Supersedes)) {
		t.Errorf("correction row %q lacks the reason %q or the superseded report %s", row, corrected.Correction.Reason, corrected.Correction.Supersedes)
	}
	if got := eval(`String(document.querySelectorAll('#audit-table tbody tr').length)`); got == "0" || got == "1" {
		t.Errorf("audit trail has %s rows, want the report and its correction", got)
	}
	checkA11y("audit trail")

	// Phone width.
	run(chromedp.EmulateViewport(360, 800))
	hash("#/contest/" + contest)
	wait("county map at 360 px", fmt.Sprintf(`document.querySelectorAll('#cp-map path[data-county-shape]').length === %d`, n), 30*time.Second)
	wait("precinct list at 360 px", `document.querySelectorAll('#precinct-table tbody tr').length > 0`, 10*time.Second)
	fitsPhone("contest page")
	checkA11y("contest page, 360 px")
	shot("contest-phone")
	run(chromedp.Navigate(api + "/"))
	wait("overview at 360 px", `document.querySelectorAll('[data-details]').length === `+fmt.Sprint(len(e.Contests)), 30*time.Second)
	wait("feed at 360 px", `document.querySelectorAll('#feed li[data-feed]').length > 0`, 10*time.Second)
	fitsPhone("overview")
	checkA11y("overview, 360 px")
	shot("overview-phone")
	run(chromedp.EmulateViewport(1280, 1400))
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.__noReload = 9`)); err != nil {
		t.Fatal(err)
	}

	// A region cut off: the banner names it and since when; it clears when
	// the region is back, without a reload.
	const cut = tally.RegionID("nm-2")
	name := e.Region(cut).Name
	if err := d.regions[cut].Close(); err != nil {
		t.Fatal(err)
	}
	wait("offline banner", `!document.getElementById('banner').hidden && document.getElementById('banner').textContent.includes('`+name+` offline since ')`, 30*time.Second)
	wait("contest partial", `document.querySelector('[data-contest="`+contest+`"]').dataset.partial === "true"`, 10*time.Second)
	n2 := restartRegion(t, d, cut)
	wait("banner cleared", `document.getElementById('banner').hidden`, 30*time.Second)

	// A live update, without reload: a new report reaches the card and the feed.
	var p *tally.Precinct
	for _, id := range e.RegionPrecincts(cut) {
		if pp := e.Precinct(id); len(pp.Contests) > 0 && pp.Contests[0] == contest {
			p = pp
			break
		}
	}
	var cur tally.ContestResult
	getJSON(t, api+"/api/v1/contests/"+contest, &cur)
	var biden int64
	for _, c := range cur.Candidates {
		if c.ID == "biden" {
			biden = c.Votes
		}
	}
	var trail struct {
		Contests []struct {
			Current *struct {
				Report *tally.Report `json:"report"`
			} `json:"current"`
		} `json:"contests"`
	}
	getJSON(t, api+"/api/v1/precincts/"+string(p.ID), &trail)
	before := int64(0)
	if c := trail.Contests[0].Current; c != nil {
		before = c.Report.Votes["biden"]
	}
	votes := map[string]int64{"biden": before + 1000}
	if c := trail.Contests[0].Current; c != nil {
		for k, v := range c.Report.Votes {
			if k != "biden" {
				votes[string(k)] = v
			}
		}
	}
	rep := &tally.Report{Region: p.Region, Precinct: p.ID, Contest: tally.ContestID(contest), Votes: map[tally.CandidateID]int64{}, Complete: true}
	for k, v := range votes {
		rep.Votes[tally.CandidateID(k)] = v
	}
	// The demo's regions require their offices' signatures.
	if err := d.keys.signers[p.ID].sign(rep, time.Now()); err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if st, ans := post(t, "http://"+n2.HTTPAddr()+"/api/v1/reports", body); st != http.StatusOK {
		t.Fatalf("report: %d %v", st, ans)
	}
	want := fmt.Sprint(biden + 1000)
	wait("live update", `document.querySelector('[data-contest="`+contest+`"] [data-candidate="biden"]').dataset.votes === "`+want+`"`, 30*time.Second)
	wait("feed item", `[...document.querySelectorAll('#feed li[data-feed="batch"]')].some(li => li.textContent.includes('`+name+`') && li.textContent.includes('+1,000 votes'))`, 30*time.Second)
	if got := eval(`String(window.__noReload)`); got != "9" {
		t.Errorf("the page reloaded (marker %s)", got)
	}
}

// restartRegion opens region r of the demo again on its store, linked to
// the hub, and returns it; the demo closes it.
func restartRegion(t *testing.T, d *Demo, r tally.RegionID) *regional.Node {
	t.Helper()
	n, err := regional.New(d.regionConfig(r))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Open(ctx); err != nil {
		t.Fatal(err)
	}
	d.regions[r] = n
	return n
}
