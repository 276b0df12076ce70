package tally

// The canonical fast path of DecodeReport. Every event in a results stream is
// a report in the canonical encoding (Report.Encode), and the hub and the
// regions decode every one of them; encoding/json spends most of that time
// on reflection and allocations. decodeCanonicalReport decodes only a strict
// subset of JSON: one object with the fields in declaration order (each at
// most once, names exactly as tagged), no whitespace, strings of printable
// ASCII without escapes, counts of digits alone (no sign, fraction,
// exponent or leading zero, at most 18 of them), and nothing after the
// object. Anything else, valid or not, is left to encoding/json, so errors
// and edge cases stay exactly as they were. What it accepts is valid JSON
// that encoding/json decodes to the same report (FuzzDecodeCanonicalReport
// checks both).

// reportFields are Report's JSON names in declaration order.
var reportFields = [...]string{
	"id", "region", "precinct", "contest", "votes", "vote_types", "ballots_cast",
	"overvotes", "undervotes", "complete", "reported_at", "office", "correction", "signature",
}

// correctionFields are Correction's JSON names in declaration order.
var correctionFields = [...]string{"supersedes", "supersedes_seq", "reason"}

// canonParser reads canonical JSON from b at i; ok turns false at the first
// byte outside the subset, after which every method is a no-op.
type canonParser struct {
	b  []byte
	i  int
	ok bool
}

func (p *canonParser) fail() { p.ok = false }

// peek reports whether the next byte is c.
func (p *canonParser) peek(c byte) bool { return p.ok && p.i < len(p.b) && p.b[p.i] == c }

// lit consumes byte c or fails.
func (p *canonParser) lit(c byte) {
	if p.peek(c) {
		p.i++
		return
	}
	p.fail()
}

// raw consumes a string literal and returns its contents, without quotes.
func (p *canonParser) raw() []byte {
	p.lit('"')
	if !p.ok {
		return nil
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			return s
		}
		if c < 0x20 || c > 0x7e || c == '\\' {
			break
		}
		p.i++
	}
	p.fail()
	return nil
}

func (p *canonParser) str() string { return string(p.raw()) }

// uint reads a count: 1 to 18 digits, no leading zero.
func (p *canonParser) uint() uint64 {
	if !p.ok {
		return 0
	}
	start := p.i
	var n uint64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		n = n*10 + uint64(p.b[p.i]-'0')
		p.i++
	}
	d := p.i - start
	if d == 0 || d > 18 || (d > 1 && p.b[start] == '0') {
		p.fail()
		return 0
	}
	return n
}

func (p *canonParser) int() int64 { return int64(p.uint()) } // at most 18 digits: no overflow

func (p *canonParser) bool() bool {
	switch {
	case p.ok && len(p.b)-p.i >= 4 && string(p.b[p.i:p.i+4]) == "true":
		p.i += 4
		return true
	case p.ok && len(p.b)-p.i >= 5 && string(p.b[p.i:p.i+5]) == "false":
		p.i += 5
	default:
		p.fail()
	}
	return false
}

// object reads an object whose keys are fields[...] in order, each at most
// once, calling value for each to read its value.
func (p *canonParser) object(fields []string, value func(field int)) {
	p.lit('{')
	if p.peek('}') {
		p.i++
		return
	}
	next := 0
	for p.ok {
		key := p.raw()
		p.lit(':')
		for next < len(fields) && fields[next] != string(key) {
			next++
		}
		if next == len(fields) {
			p.fail() // unknown, repeated or out of order
			return
		}
		value(next)
		next++
		if p.peek('}') {
			p.i++
			return
		}
		p.lit(',')
	}
}

// counts reads a map of counts.
func (p *canonParser) counts() map[CandidateID]int64 {
	m := make(map[CandidateID]int64, 4)
	p.lit('{')
	if p.peek('}') {
		p.i++
		return m
	}
	for p.ok {
		k := p.str()
		p.lit(':')
		m[CandidateID(k)] = p.int()
		if p.peek('}') {
			p.i++
			break
		}
		p.lit(',')
	}
	return m
}

// decodeCanonicalReport decodes b if it is in the subset above; ok is false
// otherwise, and says nothing about whether b is a report.
func decodeCanonicalReport(b []byte) (r *Report, ok bool) {
	p := canonParser{b: b, ok: true}
	r = &Report{}
	p.object(reportFields[:], func(f int) {
		switch f {
		case 0:
			r.ID = EventID(p.str())
		case 1:
			r.Region = RegionID(p.str())
		case 2:
			r.Precinct = PrecinctID(p.str())
		case 3:
			r.Contest = ContestID(p.str())
		case 4:
			r.Votes = p.counts()
		case 5:
			r.VoteTypes = map[VoteType]map[CandidateID]int64{}
			p.lit('{')
			if p.peek('}') {
				p.i++
				return
			}
			for p.ok {
				vt := VoteType(p.str())
				p.lit(':')
				if !p.peek('{') {
					p.fail() // null: encoding/json would keep an earlier map
					return
				}
				r.VoteTypes[vt] = p.counts()
				if p.peek('}') {
					p.i++
					return
				}
				p.lit(',')
			}
		case 6:
			n := p.int()
			r.BallotsCast = &n
		case 7:
			r.Overvotes = p.int()
		case 8:
			r.Undervotes = p.int()
		case 9:
			r.Complete = p.bool()
		case 10:
			start := p.i
			p.raw()
			// encoding/json hands the literal, quotes included, to
			// time.Time's UnmarshalJSON: the same call, the same result.
			if p.ok && r.ReportedAt.UnmarshalJSON(b[start:p.i]) != nil {
				p.fail()
			}
		case 11:
			r.Office = p.str()
		case 12:
			c := &Correction{}
			p.object(correctionFields[:], func(f int) {
				switch f {
				case 0:
					c.Supersedes = EventID(p.str())
				case 1:
					c.SupersedesSeq = p.uint()
				case 2:
					c.Reason = p.str()
				}
			})
			r.Correction = c
		case 13:
			r.Signature = p.str()
		}
	})
	if !p.ok || p.i != len(b) {
		return nil, false
	}
	return r, true
}
