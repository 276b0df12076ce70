package tally

import (
	"strconv"
	"time"
)

// The fast path of Report.Encode. A region encodes every report its intake
// takes; encoding/json spends most of that time on reflection, and on
// sorting the keys of the vote maps through reflect. appendCanonicalReport
// writes the same bytes by hand for the reports nearly all are: every string
// of printable ASCII with no quote or backslash (nothing to escape), and a
// time encoding/json can write (years 0 to 9999). For anything else it
// reports false and Encode falls back to encoding/json, so errors and edge
// cases stay exactly as they were. FuzzEncodeReport checks that both write
// the same bytes.

// appendCanonicalReport appends the canonical encoding of r (Report.Encode)
// to dst, and reports whether it could; when it could not, what it appended
// is to be discarded.
func appendCanonicalReport(dst []byte, r *Report) ([]byte, bool) {
	at := r.ReportedAt.UTC()
	if y := at.Year(); y < 0 || y > 9999 {
		return dst, false
	}
	ok := true
	str := func(s string) {
		if !plainString(s) {
			ok = false
			return
		}
		dst = append(dst, '"')
		dst = append(dst, s...)
		dst = append(dst, '"')
	}
	field := func(name string) {
		dst = append(dst, ',', '"')
		dst = append(dst, name...)
		dst = append(dst, '"', ':')
	}
	dst = append(dst, `{"id":`...)
	str(string(r.ID))
	field("region")
	str(string(r.Region))
	field("precinct")
	str(string(r.Precinct))
	field("contest")
	str(string(r.Contest))
	field("votes")
	dst, ok = appendCounts(dst, r.Votes, ok)
	if len(r.VoteTypes) > 0 {
		field("vote_types")
		dst = append(dst, '{')
		for i, vt := range sortedKeys(r.VoteTypes) {
			if i > 0 {
				dst = append(dst, ',')
			}
			str(string(vt))
			dst = append(dst, ':')
			dst, ok = appendCounts(dst, r.VoteTypes[vt], ok)
		}
		dst = append(dst, '}')
	}
	if r.BallotsCast != nil {
		field("ballots_cast")
		dst = strconv.AppendInt(dst, *r.BallotsCast, 10)
	}
	if r.Overvotes != 0 {
		field("overvotes")
		dst = strconv.AppendInt(dst, r.Overvotes, 10)
	}
	if r.Undervotes != 0 {
		field("undervotes")
		dst = strconv.AppendInt(dst, r.Undervotes, 10)
	}
	field("complete")
	dst = strconv.AppendBool(dst, r.Complete)
	field("reported_at")
	dst = append(dst, '"')
	dst = at.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	if r.Office != "" {
		field("office")
		str(r.Office)
	}
	if c := r.Correction; c != nil {
		field("correction")
		dst = append(dst, `{"supersedes":`...)
		str(string(c.Supersedes))
		field("supersedes_seq")
		dst = strconv.AppendUint(dst, c.SupersedesSeq, 10)
		field("reason")
		str(c.Reason)
		dst = append(dst, '}')
	}
	if r.Signature != "" {
		field("signature")
		str(r.Signature)
	}
	return append(dst, '}'), ok
}

// appendCounts appends a candidate's counts as encoding/json writes a map:
// keys sorted, null for a nil map. ok turns false on a key it cannot write
// as is.
func appendCounts(dst []byte, m map[CandidateID]int64, ok bool) ([]byte, bool) {
	if m == nil {
		return append(dst, "null"...), ok
	}
	dst = append(dst, '{')
	for i, cand := range sortedKeys(m) {
		if i > 0 {
			dst = append(dst, ',')
		}
		if !plainString(string(cand)) {
			ok = false
		}
		dst = append(dst, '"')
		dst = append(dst, cand...)
		dst = append(dst, '"', ':')
		dst = strconv.AppendInt(dst, m[cand], 10)
	}
	return append(dst, '}'), ok
}

// plainString reports whether encoding/json writes s as it is between
// quotes (with HTML escaping off): printable ASCII without '"' or '\'.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
