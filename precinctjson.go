package tally

import (
	"encoding/json"
	"strconv"
)

// AppendPrecinctResults appends the JSON of t.PrecinctResults(c, s) to dst,
// byte for byte as encoding/json writes it, without building the results
// first: the reconciler writes every shard a report changed, and building
// and reflecting over each precinct's result was most of its publishing.
func (t *Totals) AppendPrecinctResults(dst []byte, c ContestID, s Shard) ([]byte, error) {
	dst = append(dst, `{"contest":`...)
	dst = appendJSONString(dst, string(c))
	dst = append(dst, `,"region":`...)
	dst = appendJSONString(dst, string(s.Region))
	dst = append(dst, `,"shard":`...)
	dst = strconv.AppendInt(dst, int64(s.N), 10)
	dst = append(dst, `,"precincts":[`...)
	ci := t.candIndex(c)
	first := true
	err := t.eachShardCell(c, s, func(p *Precinct, k cellKey, cl *cell) error {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		var err error
		dst, err = t.appendPrecinctResult(dst, ci, p.ID, k, cl)
		return err
	})
	if err != nil {
		return nil, err
	}
	return append(dst, "]}"...), nil
}

func (t *Totals) appendPrecinctResult(dst []byte, ci *candIndex, id PrecinctID, k cellKey, cl *cell) ([]byte, error) {
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, string(id))
	dst = append(dst, `,"votes":`...)
	if len(cl.other) > 0 { // never in a valid report: the slow way
		b, err := json.Marshal(cl.votesMap(ci))
		if err != nil {
			return nil, err
		}
		dst = append(dst, b...)
	} else {
		dst = append(dst, '{')
		first := true
		for _, i := range ci.sorted {
			n := cl.votes[i]
			if n == noCount {
				continue
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendJSONString(dst, string(ci.ids[i]))
			dst = append(dst, ':')
			dst = strconv.AppendInt(dst, n, 10)
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `,"complete":`...)
	dst = strconv.AppendBool(dst, cl.complete)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, cl.seq, 10)
	dst = append(dst, `,"report":`...)
	var buf [64]byte // the event id is built here, not in a string of its own
	dst = appendJSONString(dst, cl.appendID(buf[:0]))
	dst = append(dst, `,"reported_at":`...)
	b, err := cl.reportedAt().MarshalJSON()
	if err != nil {
		return nil, err
	}
	dst = append(dst, b...)
	dst = append(dst, `,"reports":`...)
	dst = strconv.AppendInt(dst, int64(cl.reports), 10)
	dst = append(dst, `,"corrections":`...)
	dst = strconv.AppendInt(dst, int64(cl.corrections), 10)
	if corr := t.corrections[k]; corr != nil {
		b, err := json.Marshal(corr)
		if err != nil {
			return nil, err
		}
		dst = append(dst, `,"correction":`...)
		dst = append(dst, b...)
	}
	return append(dst, '}'), nil
}

// appendJSONString appends s as a JSON string, as encoding/json writes it.
// A string of letters, digits, '-', '_', '.' and spaces (every id the
// intake makes) is copied between quotes; anything else goes through
// encoding/json.
func appendJSONString[S ~string | ~[]byte](dst []byte, s S) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ' ') {
			b, _ := json.Marshal(string(s)) // a string always encodes
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
