//go:build ignore

// Gencounties converts the county shapes of the us-atlas package (TopoJSON,
// https://github.com/topojson/us-atlas, ISC license; the shapes are the U.S.
// Census Bureau's cartographic boundary files, 1:10,000,000) into one small
// file per state for the dashboard's county maps: static/counties-<ST>.json,
// each county an SVG path in the state's own projection.
//
// Run it with go generate (see web.go) after installing us-atlas with npm:
//
//	npm ci --prefix web && go generate ./web
//
// Each state is projected on its own: an equirectangular projection with
// longitudes scaled by the cosine of the state's middle latitude, which is
// close enough at the size of one state. Arcs are simplified once
// (Douglas-Peucker, in output units) before the rings are assembled, so
// neighbouring counties keep sharing exactly the same border.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// size is the longer side of every state's map, in output units.
const size = 500

// tolerance is the simplification tolerance, in output units.
const tolerance = 0.7

// postal maps state FIPS codes to postal codes.
var postal = map[string]string{
	"01": "AL", "02": "AK", "04": "AZ", "05": "AR", "06": "CA", "08": "CO", "09": "CT", "10": "DE",
	"11": "DC", "12": "FL", "13": "GA", "15": "HI", "16": "ID", "17": "IL", "18": "IN", "19": "IA",
	"20": "KS", "21": "KY", "22": "LA", "23": "ME", "24": "MD", "25": "MA", "26": "MI", "27": "MN",
	"28": "MS", "29": "MO", "30": "MT", "31": "NE", "32": "NV", "33": "NH", "34": "NJ", "35": "NM",
	"36": "NY", "37": "NC", "38": "ND", "39": "OH", "40": "OK", "41": "OR", "42": "PA", "44": "RI",
	"45": "SC", "46": "SD", "47": "TN", "48": "TX", "49": "UT", "50": "VT", "51": "VA", "53": "WA",
	"54": "WV", "55": "WI", "56": "WY", "60": "AS", "66": "GU", "69": "MP", "72": "PR", "78": "VI",
}

type topology struct {
	Transform struct {
		Scale     [2]float64 `json:"scale"`
		Translate [2]float64 `json:"translate"`
	} `json:"transform"`
	Objects struct {
		Counties struct {
			Geometries []geometry `json:"geometries"`
		} `json:"counties"`
		States struct {
			Geometries []geometry `json:"geometries"`
		} `json:"states"`
	} `json:"objects"`
	Arcs [][][2]float64 `json:"arcs"`
}

type geometry struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"`
	Arcs       json.RawMessage `json:"arcs"`
	Properties struct {
		Name string `json:"name"`
	} `json:"properties"`
}

// polygons returns g's polygons, each a list of rings of arc indexes.
func (g geometry) polygons() ([][][]int, error) {
	switch g.Type {
	case "Polygon":
		var p [][]int
		err := json.Unmarshal(g.Arcs, &p)
		return [][][]int{p}, err
	case "MultiPolygon":
		var mp [][][]int
		err := json.Unmarshal(g.Arcs, &mp)
		return mp, err
	}
	return nil, nil
}

// County is one county of a state file.
type County struct {
	Name string `json:"name"` // as the Census Bureau spells it, e.g. "Doña Ana"
	Slug string `json:"slug"` // for matching names in results files, see slug
	FIPS string `json:"fips"`
	D    string `json:"d"` // SVG path data
}

// State is one state file.
type State struct {
	State       string   `json:"state"`
	Name        string   `json:"name"`
	FIPS        string   `json:"fips"`
	Width       int      `json:"width"`
	Height      int      `json:"height"`
	Source      string   `json:"source"`
	Attribution string   `json:"attribution"`
	Counties    []County `json:"counties"`
}

// slug folds a county name for matching: lower case, accents removed, only
// letters and digits kept, a trailing "county" dropped ("Doña Ana" and
// "Dona Ana", "New-Hanover" and "New Hanover" match). The dashboard folds
// results files' names the same way.
func slug(s string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(strings.ToLower(s)) {
		if unicode.IsLetter(r) && r < unicode.MaxASCII || unicode.IsDigit(r) {
			b.WriteRune(r)
		}
	}
	return strings.TrimSuffix(b.String(), "county")
}

func main() {
	in := flag.String("atlas", "node_modules/us-atlas/counties-10m.json", "us-atlas counties-10m.json")
	out := flag.String("out", "static", "output directory")
	version := flag.String("version", "", "us-atlas version, for the attribution")
	flag.Parse()
	b, err := os.ReadFile(*in)
	if err != nil {
		log.Fatal(err)
	}
	var t topology
	if err := json.Unmarshal(b, &t); err != nil {
		log.Fatal(err)
	}
	// Decode every arc to longitude and latitude.
	arcs := make([][][2]float64, len(t.Arcs))
	for i, a := range t.Arcs {
		var x, y float64
		pts := make([][2]float64, len(a))
		for j, d := range a {
			x += d[0]
			y += d[1]
			pts[j] = [2]float64{x*t.Transform.Scale[0] + t.Transform.Translate[0], y*t.Transform.Scale[1] + t.Transform.Translate[1]}
		}
		arcs[i] = pts
	}
	stateNames := map[string]string{}
	for _, g := range t.Objects.States.Geometries {
		stateNames[g.ID] = g.Properties.Name
	}
	byState := map[string][]geometry{}
	for _, g := range t.Objects.Counties.Geometries {
		if len(g.ID) == 5 && postal[g.ID[:2]] != "" {
			byState[g.ID[:2]] = append(byState[g.ID[:2]], g)
		}
	}
	src := "us-atlas"
	if *version != "" {
		src += " " + *version
	}
	src += " counties-10m.json"
	total := 0
	for fips, gs := range byState {
		st := project(fips, gs, arcs)
		st.Name = stateNames[fips]
		st.Source = src
		st.Attribution = "County boundaries: U.S. Census Bureau, via us-atlas (ISC license, Mike Bostock)"
		b, err := json.Marshal(st)
		if err != nil {
			log.Fatal(err)
		}
		name := filepath.Join(*out, "counties-"+st.State+".json")
		if err := os.WriteFile(name, append(b, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
		total += len(b)
	}
	fmt.Printf("%d states, %d bytes\n", len(byState), total)
}

// project projects and simplifies one state's counties.
func project(fips string, gs []geometry, arcs [][][2]float64) State {
	lon := func(x float64) float64 {
		if fips == "02" && x > 0 { // the Aleutians cross the antimeridian
			return x - 360
		}
		return x
	}
	// The state's extent, from the arcs its counties use.
	used := map[int]bool{}
	polys := make([][][][]int, len(gs))
	for i, g := range gs {
		p, err := g.polygons()
		if err != nil {
			log.Fatalf("county %s: %v", g.ID, err)
		}
		polys[i] = p
		for _, poly := range p {
			for _, ring := range poly {
				for _, a := range ring {
					if a < 0 {
						a = ^a
					}
					used[a] = true
				}
			}
		}
	}
	minX, minY, maxX, maxY := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for a := range used {
		for _, p := range arcs[a] {
			minX, maxX = math.Min(minX, lon(p[0])), math.Max(maxX, lon(p[0]))
			minY, maxY = math.Min(minY, p[1]), math.Max(maxY, p[1])
		}
	}
	k := math.Cos((minY + maxY) / 2 * math.Pi / 180)
	w, h := (maxX-minX)*k, maxY-minY
	scale := size / math.Max(w, h)
	pad := 2.0
	xy := func(p [2]float64) [2]float64 {
		return [2]float64{pad + (lon(p[0])-minX)*k*scale, pad + (maxY-p[1])*scale}
	}
	simple := map[int][][2]float64{}
	for a := range used {
		pts := make([][2]float64, len(arcs[a]))
		for i, p := range arcs[a] {
			pts[i] = xy(p)
		}
		simple[a] = douglasPeucker(pts, tolerance)
	}
	st := State{State: postal[fips], FIPS: fips, Width: int(math.Ceil(w*scale + 2*pad)), Height: int(math.Ceil(h*scale + 2*pad))}
	for i, g := range gs {
		var d strings.Builder
		for _, poly := range polys[i] {
			for _, ring := range poly {
				var pts [][2]int
				for _, a := range ring {
					arc := simple[max(a, ^a)]
					n := len(arc)
					for j := range n {
						p := arc[j]
						if a < 0 {
							p = arc[n-1-j]
						}
						q := [2]int{int(math.Round(p[0])), int(math.Round(p[1]))}
						if len(pts) > 0 && pts[len(pts)-1] == q {
							continue
						}
						pts = append(pts, q)
					}
				}
				if len(pts) > 1 && pts[0] == pts[len(pts)-1] {
					pts = pts[:len(pts)-1]
				}
				if len(pts) < 3 {
					continue
				}
				writePath(&d, pts)
			}
		}
		st.Counties = append(st.Counties, County{Name: g.Properties.Name, Slug: slug(g.Properties.Name), FIPS: g.ID, D: d.String()})
	}
	sort.Slice(st.Counties, func(i, j int) bool { return st.Counties[i].FIPS < st.Counties[j].FIPS })
	return st
}

// writePath writes a closed ring as SVG path data with relative moves.
func writePath(d *strings.Builder, pts [][2]int) {
	d.WriteString("M")
	d.WriteString(strconv.Itoa(pts[0][0]))
	d.WriteString(" ")
	d.WriteString(strconv.Itoa(pts[0][1]))
	d.WriteString("l")
	for i := 1; i < len(pts); i++ {
		dx, dy := pts[i][0]-pts[i-1][0], pts[i][1]-pts[i-1][1]
		if i > 1 && dx >= 0 {
			d.WriteString(" ")
		}
		d.WriteString(strconv.Itoa(dx))
		if dy >= 0 {
			d.WriteString(" ")
		}
		d.WriteString(strconv.Itoa(dy))
	}
	d.WriteString("z")
}

// douglasPeucker simplifies a polyline, keeping its end points.
func douglasPeucker(pts [][2]float64, tol float64) [][2]float64 {
	if len(pts) < 3 {
		return pts
	}
	keep := make([]bool, len(pts))
	keep[0], keep[len(pts)-1] = true, true
	var rec func(i, j int)
	rec = func(i, j int) {
		if j <= i+1 {
			return
		}
		best, at := -1.0, -1
		for m := i + 1; m < j; m++ {
			if d := segDist(pts[m], pts[i], pts[j]); d > best {
				best, at = d, m
			}
		}
		if best > tol {
			keep[at] = true
			rec(i, at)
			rec(at, j)
		}
	}
	rec(0, len(pts)-1)
	out := make([][2]float64, 0, len(pts))
	for i, p := range pts {
		if keep[i] {
			out = append(out, p)
		}
	}
	return out
}

// segDist is the distance from p to the segment ab.
func segDist(p, a, b [2]float64) float64 {
	dx, dy := b[0]-a[0], b[1]-a[1]
	l2 := dx*dx + dy*dy
	if l2 == 0 {
		return math.Hypot(p[0]-a[0], p[1]-a[1])
	}
	t := math.Max(0, math.Min(1, ((p[0]-a[0])*dx+(p[1]-a[1])*dy)/l2))
	return math.Hypot(p[0]-a[0]-t*dx, p[1]-a[1]-t*dy)
}
