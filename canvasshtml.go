package tally

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"
)

//go:embed canvass.gohtml
var canvassHTML string

var canvassTemplate = template.Must(template.New("canvass").Funcs(template.FuncMap{
	"num":   fmtAny,
	"num64": Thousands,
	"numu":  func(n uint64) string { return Thousands(int64(n)) },
	"pct": func(f float64) string {
		return strconv.FormatFloat(100*f, 'f', 2, 64) + "%"
	},
	"pctp": func(f *float64) string {
		if f == nil {
			return "—"
		}
		return strconv.FormatFloat(100**f, 'f', 2, 64) + "%"
	},
	"ptr": func(p *int64) string {
		if p == nil {
			return "—"
		}
		return Thousands(*p)
	},
	"when": fmtTime,
	"votes": func(m map[CandidateID]int64, id CandidateID) string {
		return Thousands(m[id])
	},
	"bytype": func(m map[VoteType]map[CandidateID]int64, vt VoteType, id CandidateID) string {
		if m[vt] == nil {
			return "—"
		}
		return Thousands(m[vt][id])
	},
	"candtype": func(c CanvassCandidate, vt VoteType) string { return Thousands(c.ByType[vt]) },
	"signed": func(n int64) string {
		if n > 0 {
			return "+" + Thousands(n)
		}
		if n < 0 {
			return "−" + Thousands(-n)
		}
		return "0"
	},
	"duration": func(o CanvassOutage) string {
		if o.From.IsZero() || o.To.IsZero() {
			return "—"
		}
		return o.To.Sub(o.From).Round(time.Second).String()
	},
	"yes": func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	},
	"candidateName": func(c CanvassContest, id CandidateID) string {
		for _, cand := range c.Candidates {
			if cand.ID == id {
				return cand.Name
			}
		}
		return string(id)
	},
	"scope": func(c *Canvass) string {
		if c.Contest == "" {
			return "the whole election"
		}
		for _, con := range c.Contests {
			return con.Name
		}
		return string(c.Contest)
	},
	"notes":    func(c *Canvass) []string { return c.allNotes() },
	"hashpart": func(h string) []string { return splitEvery(h, 16) },
	"add":      func(a, b int) int { return a + b },
}).Parse(canvassHTML))

// WriteHTML writes the report as one self-contained HTML page (no script,
// no external resource), laid out for the screen and, through its print
// stylesheet, for paper: tables repeat their header on each page, rows are
// not split, and each contest's precinct table starts on a new page.
func (c *Canvass) WriteHTML(w io.Writer) error {
	if err := canvassTemplate.Execute(w, c); err != nil {
		return fmt.Errorf("canvass html: %w", err)
	}
	return nil
}

// fmtAny writes an int or int64 as Thousands does.
func fmtAny(v any) string {
	switch n := v.(type) {
	case int:
		return Thousands(int64(n))
	case int64:
		return Thousands(n)
	case uint64:
		return Thousands(int64(n))
	}
	return fmt.Sprint(v)
}

// Thousands writes n with thousands separators: 1,234,567.
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 MST")
}

func splitEvery(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}
