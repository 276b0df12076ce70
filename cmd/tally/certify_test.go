package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tallyvote/tally"
)

// certifyCmd is a certification command: export, verify or report.
type certifyCmd interface {
	command
	source() *eventSource
}

func (m *ExportMain) source() *eventSource { return &m.Source }
func (m *VerifyMain) source() *eventSource { return &m.Source }
func (m *ReportMain) source() *eventSource { return &m.Source }

// runCertify parses args into cmd, gives it the hub's NATS options (the
// in-process hub's client password is random) and runs it to the end.
func runCertify(t *testing.T, cmd certifyCmd, hub []nats.Option, args ...string) error {
	t.Helper()
	if err := cmd.ParseFlags(args, env(nil)); err != nil {
		return err
	}
	cmd.source().Options = hub
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return errors.Join(cmd.Run(ctx), cmd.Close())
}

// TestCertification replays North Carolina with region nc-1 cut off from the
// hub for the whole replay, brings it back, and once the national totals are
// exact and reconciled, checks the certification tools against the running
// hub:
//   - tally report in JSON, CSV and HTML: totals equal to the API's, every
//     correction (with its office, reason, superseded report and change),
//     nc-1's outage with all of its events late, every region reconciled
//     with its final hash equal to its last checkpoint's;
//   - the CDF export validates against the NIST schema, unofficial-complete,
//     and certified with --certified;
//   - tally verify passes against the live state, and on an exported log
//     against the report; it fails naming the region and sequence when the
//     log has an event altered, dropped or two events swapped;
//   - the HTML report printed to PDF by headless Chromium.
func TestCertification(t *testing.T) {
	if testing.Short() {
		t.Skip("replays a state")
	}
	const cut = tally.RegionID("nc-1")
	d := MustRunDemo(t, "--results", "testdata/nc_president_precinct.csv", "--regions", "3", "--outage", string(cut)+":0s:1h")
	api := "http://" + d.gw.Addr()
	// As in TestDemoOutage: the hub sees the other regions live and the
	// cut-off one offline, then the link comes back.
	waitFor(t, 30*time.Second, func() string {
		var regions []tally.RegionStatus
		getJSON(t, api+"/api/v1/regions", &regions)
		for _, r := range regions {
			if want := map[bool]string{true: tally.StatusOffline, false: tally.StatusLive}[r.ID == cut]; r.Status != want {
				return fmt.Sprintf("region %s is %s, want %s", r.ID, r.Status, want)
			}
		}
		return ""
	})
	if err := d.SetRegionLink(cut, true); err != nil {
		t.Fatal(err)
	}
	checkDemoTotals(t, d)
	// Reconciled, with the last checkpoint applied and counted in the
	// status: the streams hold nothing after it.
	waitFor(t, time.Minute, func() string {
		var regions []tally.RegionStatus
		getJSON(t, api+"/api/v1/regions", &regions)
		for _, r := range regions {
			if !r.Reconciled || r.Checkpoint == nil || r.Applied != r.Checkpoint.StreamSeq || r.LastSeq != r.Applied {
				return fmt.Sprintf("region %s: %s, reconciled %v, applied %d of %d, checkpoint %+v", r.ID, r.Status, r.Reconciled, r.Applied, r.LastSeq, r.Checkpoint)
			}
		}
		return ""
	})
	var regions []tally.RegionStatus
	getJSON(t, api+"/api/v1/regions", &regions)
	var apiContest tally.ContestResult
	getJSON(t, api+"/api/v1/contests/nc-president", &apiContest)
	apiVotes := map[tally.CandidateID]int64{}
	for _, c := range apiContest.Candidates {
		apiVotes[c.ID] = c.Votes
	}

	hub := d.rec.ClientOptions()
	dir := os.Getenv("TALLY_REPORT_OUT") // keep the files to look at them
	if dir == "" {
		dir = t.TempDir()
	}
	src := []string{"--nats", d.rec.ClientURL(), "--results", "testdata/nc_president_precinct.csv", "--regions", "3"}
	report := func(format string, extra ...string) string {
		t.Helper()
		path := filepath.Join(dir, "canvass."+format)
		if format == "cdf" {
			path += ".json"
		}
		args := append(append(append([]string{}, src...), "--format", format, "--out", path), extra...)
		if err := runCertify(t, NewReportMain(io.Discard), hub, args...); err != nil {
			t.Fatalf("report --format %s: %v", format, err)
		}
		return path
	}
	offices := filepath.Join(d.keys.dir, officesFile)

	var canvass tally.Canvass
	t.Run("JSON", func(t *testing.T) {
		b, err := os.ReadFile(report("json", "--offices", offices))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &canvass); err != nil {
			t.Fatal(err)
		}
		if canvass.Status != tally.CanvassComplete || len(canvass.Discrepancies) != 0 {
			t.Errorf("status %s (%s), discrepancies %v", canvass.Status, canvass.StatusNote, canvass.Discrepancies)
		}
		if !strings.HasPrefix(canvass.Signatures, "checked against the offices of nc-1, nc-2, nc-3") {
			t.Errorf("signatures: %s", canvass.Signatures)
		}
		if len(canvass.Contests) != 1 {
			t.Fatalf("contests %d, want 1", len(canvass.Contests))
		}
		con := canvass.Contests[0]
		for _, c := range con.Candidates {
			if c.Votes != apiVotes[c.ID] {
				t.Errorf("%s: report %d, API %d", c.ID, c.Votes, apiVotes[c.ID])
			}
		}
		if con.TotalVotes != apiContest.TotalVotes || con.Precincts != apiContest.Precincts || con.Corrections != apiContest.Corrections || !con.Reconciled {
			t.Errorf("total %d precincts %+v corrections %d reconciled %v; API %d %+v %d",
				con.TotalVotes, con.Precincts, con.Corrections, con.Reconciled, apiContest.TotalVotes, apiContest.Precincts, apiContest.Corrections)
		}
		for _, ar := range apiContest.Regions {
			var rr tally.CanvassUnit
			for _, u := range con.Regions {
				if u.ID == string(ar.ID) {
					rr = u
				}
			}
			for cand, n := range ar.Votes {
				if rr.Votes[cand] != n {
					t.Errorf("region %s %s: report %d, API %d", ar.ID, cand, rr.Votes[cand], n)
				}
			}
		}
		var counties tally.CountyResults
		getJSON(t, api+"/api/v1/contests/nc-president/counties", &counties)
		for i, cr := range counties.Counties {
			if i >= len(con.Counties) || con.Counties[i].ID != cr.County || con.Counties[i].TotalVotes != cr.TotalVotes {
				t.Errorf("county %s: API total %d, report %+v", cr.County, cr.TotalVotes, con.Counties[min(i, len(con.Counties)-1)])
				break
			}
		}
		if con.BallotsCast != nil || con.Turnout != nil || !strings.Contains(con.TurnoutNote, "registered voters are not known") {
			t.Errorf("ballots %v turnout %v (%q): the data has neither", con.BallotsCast, con.Turnout, con.TurnoutNote)
		}
		// Every correction, as the API counts them.
		if len(canvass.Corrections) != apiContest.Corrections || len(canvass.Corrections) == 0 {
			t.Errorf("%d corrections, API %d", len(canvass.Corrections), apiContest.Corrections)
		}
		for _, cr := range canvass.Corrections {
			if cr.Reason == "" || cr.Office == "" || cr.SupersedesSeq == 0 || cr.ReplacedSeq != cr.SupersedesSeq || len(cr.Changes) == 0 || cr.Stored.IsZero() {
				t.Errorf("correction %+v", cr)
				break
			}
		}
		// nc-1's outage: every one of its events reached the hub late.
		var outage *tally.CanvassOutage
		for i := range canvass.Outages {
			if canvass.Outages[i].Region == cut {
				outage = &canvass.Outages[i]
			}
		}
		var ncut tally.CanvassRegion
		for _, r := range canvass.Regions {
			if r.ID == cut {
				ncut = r
			}
			var st tally.RegionStatus
			for _, s := range regions {
				if s.ID == r.ID {
					st = s
				}
			}
			if !r.Reconciled || r.Matched != r.Checkpoints || r.HubMatched != r.HubCompared || r.HubCompared == 0 || r.LastSeq != st.LastSeq || r.Hash != st.Checkpoint.Hash {
				t.Errorf("region %+v; hub status %+v", r, st)
			}
		}
		if outage == nil || outage.Ongoing || outage.To.IsZero() || uint64(outage.Late) != ncut.Events || outage.Late == 0 {
			t.Errorf("outage of %s: %+v; want it over, with all %d events late (outages %+v)", cut, outage, ncut.Events, canvass.Outages)
		}
		t.Logf("status %s; %d corrections; outages %+v", canvass.Status, len(canvass.Corrections), canvass.Outages)
	})

	t.Run("CSV", func(t *testing.T) {
		f, err := os.Open(report("csv"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r := csv.NewReader(f)
		r.FieldsPerRecord = -1
		got := map[tally.CandidateID]int64{}
		var corrections, outages int
		for {
			rec, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case rec[0] == tally.CSVResults && rec[2] == "contest" && rec[8] == "total":
				var n int64
				fmt.Sscan(rec[9], &n)
				got[tally.CandidateID(rec[5])] = n
			case rec[0] == tally.CSVCorrections && rec[9] == "transcription error in the final count":
				corrections++
			case rec[0] == tally.CSVOutages && rec[1] == string(cut):
				outages++
			}
		}
		for cand, n := range apiVotes {
			if got[cand] != n {
				t.Errorf("CSV %s = %d, API %d", cand, got[cand], n)
			}
		}
		if corrections < apiContest.Corrections || outages != 1 {
			t.Errorf("CSV: %d correction rows for %d corrections, %d outage rows of %s", corrections, apiContest.Corrections, outages, cut)
		}
	})

	htmlPath := ""
	t.Run("HTML", func(t *testing.T) {
		htmlPath = report("html", "--offices", offices)
		b, err := os.ReadFile(htmlPath)
		if err != nil {
			t.Fatal(err)
		}
		html := string(b)
		for cand, n := range apiVotes {
			if want := fmt.Sprintf(`data-candidate="%s" data-votes="%d"`, cand, n); !strings.Contains(html, want) {
				t.Errorf("HTML lacks %s", want)
			}
		}
		for _, want := range []string{`data-region="` + string(cut) + `" data-late="`, "transcription error in the final count", `data-status="unofficial-complete"`, "@media print"} {
			if !strings.Contains(html, want) {
				t.Errorf("HTML lacks %q", want)
			}
		}
	})

	t.Run("CDF", func(t *testing.T) {
		sch := mustNISTSchema(t)
		for _, tt := range []struct {
			args []string
			want tally.CDFStatus
		}{{nil, tally.CDFUnofficialComplete}, {[]string{"--certified", "--issuer", "North Carolina State Board of Elections", "--issuer-abbreviation", "NCSBE"}, tally.CDFCertified}} {
			b, err := os.ReadFile(report("cdf", tt.args...))
			if err != nil {
				t.Fatal(err)
			}
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(doc); err != nil {
				t.Errorf("CDF %v does not validate: %v", tt.args, err)
			}
			var rep tally.CDFElectionReport
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Status != tt.want {
				t.Errorf("CDF %v status %s, want %s", tt.args, rep.Status, tt.want)
			}
		}
	})

	verify := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := runCertify(t, NewVerifyMain(&out), hub, args...)
		return out.String(), err
	}
	t.Run("VerifyLive", func(t *testing.T) {
		out, err := verify(append(src, "--offices", offices)...)
		if err != nil || !strings.Contains(out, "OK: no discrepancy") || !strings.Contains(out, "compared with the live national state") {
			t.Fatalf("verify: %v\n%s", err, out)
		}
		t.Log(out)
	})

	logPath := filepath.Join(dir, "events.jsonl")
	if err := runCertify(t, NewExportMain(io.Discard, io.Discard), hub, append(src, "--out", logPath)...); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, logPath)
	t.Run("VerifyLog", func(t *testing.T) {
		out, err := verify("--log", logPath, "--offices", offices, "--against", filepath.Join(dir, "canvass.json"))
		if err != nil || !strings.Contains(out, "OK: no discrepancy") {
			t.Fatalf("verify --log: %v\n%s", err, out)
		}
		// The report of the log is the report of the hub.
		var out2 bytes.Buffer
		if err := runCertify(t, NewReportMain(&out2), nil, "--log", logPath, "--format", "json"); err != nil {
			t.Fatal(err)
		}
		var c tally.Canvass
		if err := json.Unmarshal(out2.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		if c.Status != canvass.Status || len(c.Corrections) != len(canvass.Corrections) || len(c.Outages) != len(canvass.Outages) || c.Regions[0].Hash != canvass.Regions[0].Hash {
			t.Errorf("report from the log: %s, %d corrections, %d outages; from the hub: %s, %d, %d",
				c.Status, len(c.Corrections), len(c.Outages), canvass.Status, len(canvass.Corrections), len(canvass.Outages))
		}
	})

	// Tampering with the exported log.
	type event struct {
		Kind    string         `json:"kind"`
		Region  tally.RegionID `json:"region"`
		Seq     uint64         `json:"seq"`
		Subject string         `json:"subject"`
		Data    string         `json:"data"`
	}
	find := func(region tally.RegionID, n int) (int, event) {
		t.Helper()
		for i, l := range lines {
			var ev event
			if json.Unmarshal([]byte(l), &ev) == nil && ev.Kind == tally.LogEvent && ev.Region == region && strings.Contains(ev.Subject, ".results.") {
				if n == 0 {
					return i, ev
				}
				n--
			}
		}
		t.Fatalf("no results event %d of %s in the log", n, region)
		return 0, event{}
	}
	votes := regexp.MustCompile(`"votes":\{"([a-z0-9-]+)":([0-9]+)`)
	tests := []struct {
		name   string
		extra  []string
		change func([]string) []string
		want   []string
	}{
		{"Altered", []string{"--offices", offices}, func(ls []string) []string {
			i, ev := find("nc-2", 40)
			m := votes.FindStringSubmatch(ev.Data)
			ls[i] = strings.Replace(ls[i], fmt.Sprintf(`\"%s\":%s`, m[1], m[2]), fmt.Sprintf(`\"%s\":%s1`, m[1], m[2]), 1)
			return ls
		}, []string{"region nc-2 seq ", "signature: does not verify"}},
		{"AlteredNoKeys", nil, func(ls []string) []string {
			i, ev := find("nc-2", 40)
			m := votes.FindStringSubmatch(ev.Data)
			ls[i] = strings.Replace(ls[i], fmt.Sprintf(`\"%s\":%s`, m[1], m[2]), fmt.Sprintf(`\"%s\":%s1`, m[1], m[2]), 1)
			return ls
		}, []string{"region nc-2 seq ", "contest nc-president candidate ", "checkpoint covering seq "}},
		{"Dropped", nil, func(ls []string) []string {
			i, _ := find("nc-3", 100)
			return append(ls[:i:i], ls[i+1:]...)
		}, []string{"region nc-3 seq ", "sequence: seq ", " missing"}},
		{"Reordered", nil, func(ls []string) []string {
			i, _ := find(cut, 7)
			ls[i], ls[i+1] = ls[i+1], ls[i]
			return ls
		}, []string{"region nc-1 seq ", "sequence: out of order"}},
	}
	for _, tt := range tests {
		t.Run("Tampered/"+tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			ls := tt.change(append([]string(nil), lines...))
			if err := os.WriteFile(path, []byte(strings.Join(ls, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := verify(append([]string{"--log", path}, tt.extra...)...)
			if err == nil {
				t.Fatalf("verify passed a tampered log:\n%s", out)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			t.Log(err)
		})
	}

	// Last, as it changes the hub: a message deleted from a mirror.
	defer t.Run("VerifyLiveDeleted", func(t *testing.T) {
		js, err := jetstream.New(d.nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, tally.MirrorStream("nc-3"))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteMsg(ctx, 200); err != nil {
			t.Fatal(err)
		}
		out, err := verify(src...)
		if err == nil || !strings.Contains(err.Error(), "region nc-3 seq 200: sequence: seq 200 missing") {
			t.Errorf("verify after deleting seq 200 of nc-3's mirror: %v\n%s", err, out)
		}
	})

	t.Run("PDF", func(t *testing.T) {
		browserPath(t)
		ctx := MustBrowser(t)
		if _, err := chromedp.Run(ctx, chromedp.Navigate("file://"+htmlPath)); err != nil {
			t.Fatal(err)
		}
		yes := true
		// The first 2400 px of the page at 1280 px wide: the header, the
		// results and the start of the tables.
		png, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) ([]byte, error) {
			r, err := cdp.Call(ctx, tg, page.CaptureScreenshot, page.CaptureScreenshotParams{
				Format: page.CaptureScreenshotFormatPng, CaptureBeyondViewport: &yes,
				Clip: &page.Viewport{X: 0, Y: 0, Width: 1280, Height: 2400, Scale: 1},
			})
			return r.Data, err
		})
		if err != nil {
			t.Fatal(err)
		}
		res, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (page.PrintToPDFResult, error) {
			return cdp.Call(ctx, tg, page.PrintToPDF, page.PrintToPDFParams{
				PreferCSSPageSize: &yes, PrintBackground: &yes, DisplayHeaderFooter: &yes,
				HeaderTemplate: `<div style="font-size:7px;width:100%;text-align:center"><span class="title"></span></div>`,
				FooterTemplate: `<div style="font-size:7px;width:100%;text-align:center">page <span class="pageNumber"></span> of <span class="totalPages"></span></div>`,
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		pdf := res.Data
		if err := os.WriteFile(filepath.Join(dir, "canvass.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "canvass.pdf"), pdf, 0o644); err != nil {
			t.Fatal(err)
		}
		pages := len(regexp.MustCompile(`/Type\s*/Page[^s]`).FindAll(pdf, -1))
		if !bytes.HasPrefix(pdf, []byte("%PDF-")) || pages < 2 {
			t.Errorf("PDF: %d bytes, %d pages", len(pdf), pages)
		}
		// The print layout: the text is there, at a readable size, and no
		// table is wider than the page.
		type layout struct {
			Text      string   `json:"text"`
			FontPt    float64  `json:"fontPt"`
			Overflows []string `json:"overflows"`
		}
		// Lay the page out for print, at the width of a letter page
		// less its margins (8.5in - 2 x 12mm, at 96 px per inch).
		err = chromedp.Do(ctx,
			chromedp.EmulateViewport(725, 1000), // 8.5in - 2 x 12mm at 96 px/in
			chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"})
				return err
			}))
		if err != nil {
			t.Fatal(err)
		}
		l, err := chromedp.Run(ctx, chromedp.Evaluate[layout](`(() => {
			const px = parseFloat(getComputedStyle(document.querySelector('table[data-table="precincts"] td')).fontSize);
			const w = document.documentElement.clientWidth;
			const over = [...document.querySelectorAll('table')].filter(t => t.getBoundingClientRect().width > w + 1).map(t => t.dataset.table + ' ' + Math.round(t.getBoundingClientRect().width) + 'px');
			return {text: document.body.innerText, fontPt: px * 0.75, overflows: over};
		})()`))
		if err != nil {
			t.Fatal(err)
		}
		if l.FontPt < 7.5 || len(l.Overflows) > 0 {
			t.Errorf("print layout: precinct tables at %.1f pt; tables wider than the page: %v", l.FontPt, l.Overflows)
		}
		for _, want := range []string{"Canvass report", "Corrections", "Region outages", "Reconciliation", "transcription error in the final count"} {
			if !strings.Contains(l.Text, want) {
				t.Errorf("printed text lacks %q", want)
			}
		}
		t.Logf("PDF %d bytes, %d pages; screenshot %d bytes, in %s", len(pdf), pages, len(png), dir)
	})
}

// mustNISTSchema compiles the NIST SP 1500-100 v2 JSON schema kept in the
// root package's testdata (its source is named there).
func mustNISTSchema(tb testing.TB) *jsonschema.Schema {
	tb.Helper()
	f, err := os.Open("../../testdata/nist/NIST_V2_election_results_reporting.json")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		tb.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("nist-v2.json", doc); err != nil {
		tb.Fatal(err)
	}
	sch, err := c.Compile("nist-v2.json")
	if err != nil {
		tb.Fatal(err)
	}
	return sch
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, tally.MaxLogLine)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}
