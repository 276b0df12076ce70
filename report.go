package tally

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"time"
)

// EventID is an event's globally unique id, "<region>-<rest>". It is the
// event's Nats-Msg-Id, so a retried submission is recognised as a duplicate.
type EventID string

// VoteType is a way of voting that results may be split by. The names are
// those of NIST SP 1500-100.
type VoteType string

// Vote types.
const (
	VoteElectionDay VoteType = "election-day"
	VoteEarly       VoteType = "early"
	VoteAbsentee    VoteType = "absentee"
	VoteProvisional VoteType = "provisional"
	VoteOther       VoteType = "other"
)

// ValidVoteType reports whether t is one of the vote types above.
func ValidVoteType(t VoteType) bool {
	switch t {
	case VoteElectionDay, VoteEarly, VoteAbsentee, VoteProvisional, VoteOther:
		return true
	}
	return false
}

// Report is the one event kind that carries votes: the cumulative count of
// one precinct for one contest as of ReportedAt. A later report for the same
// precinct and contest replaces it in the totals. Reports are immutable once
// stored.
//
// A Report with Correction set is a correction: it supersedes the named
// report (which must be the latest for its precinct and contest) and says why.
type Report struct {
	ID          EventID                            `json:"id"`
	Region      RegionID                           `json:"region"`
	Precinct    PrecinctID                         `json:"precinct"`
	Contest     ContestID                          `json:"contest"`
	Votes       map[CandidateID]int64              `json:"votes"`
	VoteTypes   map[VoteType]map[CandidateID]int64 `json:"vote_types,omitempty"`
	BallotsCast *int64                             `json:"ballots_cast,omitempty"` // nil when not reported
	Overvotes   int64                              `json:"overvotes,omitempty"`
	Undervotes  int64                              `json:"undervotes,omitempty"`
	Complete    bool                               `json:"complete"`
	ReportedAt  time.Time                          `json:"reported_at"`
	Office      string                             `json:"office,omitempty"` // the office that sent it
	Correction  *Correction                        `json:"correction,omitempty"`
	// Signature is the office's ed25519 signature of SignedBytes, in
	// base64url without padding; "" for an unsigned report. See Sign.
	Signature string `json:"signature,omitempty"`
}

// Correction makes a Report a correction: it names the report it supersedes,
// by id and stream sequence, and the reason.
type Correction struct {
	Supersedes    EventID `json:"supersedes"`
	SupersedesSeq uint64  `json:"supersedes_seq"`
	Reason        string  `json:"reason"`
}

// IsCorrection reports whether r is a correction.
func (r *Report) IsCorrection() bool { return r.Correction != nil }

// TotalVotes returns the sum of r's candidate votes.
func (r *Report) TotalVotes() int64 {
	var n int64
	for _, v := range r.Votes {
		n += v
	}
	return n
}

// MaxEventIDLen is the longest event id accepted.
const MaxEventIDLen = 128

// Encode returns the canonical bytes of r: JSON with fields in declaration
// order, map keys sorted, times in UTC. Equal reports encode to equal bytes,
// so the encoding can be hashed and signed.
func (r *Report) Encode() ([]byte, error) {
	if b, ok := appendCanonicalReport(make([]byte, 0, 256), r); ok {
		return b, nil
	}
	return r.encodeJSON()
}

// encodeJSON is Encode with encoding/json alone.
func (r *Report) encodeJSON() ([]byte, error) {
	c := *r
	c.ReportedAt = c.ReportedAt.UTC()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// DecodeReport decodes one report in JSON. Unknown fields, trailing data and
// counts that are not integers are refused with EINVALID, naming the field.
// It checks the shape only; Validate checks a report against an election.
func DecodeReport(b []byte) (*Report, error) {
	if r, ok := decodeCanonicalReport(b); ok {
		return r, nil
	}
	return decodeReportJSON(b)
}

// decodeReportJSON is DecodeReport with encoding/json alone.
func decodeReportJSON(b []byte) (*Report, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r Report
	if err := dec.Decode(&r); err != nil {
		if field := badCount(b); field != "" {
			return nil, Errorf(EINVALID, "report: %s", field)
		}
		return nil, Errorf(EINVALID, "report: %s", jsonErrorText(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, Errorf(EINVALID, "report: unexpected data after the report object")
	}
	return &r, nil
}

// DecodeReports decodes a submission: one report object, a JSON array of
// reports, or an object {"reports": [...]}. It refuses an empty batch and one
// longer than max (when max > 0). Errors have code EINVALID or ETOOLARGE and
// name the index of the offending report.
func DecodeReports(b []byte, max int) ([]*Report, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, Errorf(EINVALID, "body: empty; want a report or a batch of reports")
	}
	var raws []json.RawMessage
	switch b[0] {
	case '[':
		if err := json.Unmarshal(b, &raws); err != nil {
			return nil, Errorf(EINVALID, "batch: %s", jsonErrorText(err))
		}
	case '{':
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(b, &probe); err != nil {
			return nil, Errorf(EINVALID, "body: %s", jsonErrorText(err))
		}
		if rs, ok := probe["reports"]; ok && len(probe) == 1 {
			if err := json.Unmarshal(rs, &raws); err != nil {
				return nil, Errorf(EINVALID, "reports: %s", jsonErrorText(err))
			}
		} else {
			r, err := DecodeReport(b)
			if err != nil {
				return nil, err
			}
			return []*Report{r}, nil
		}
	default:
		return nil, Errorf(EINVALID, "body: want a JSON object or array")
	}
	if len(raws) == 0 {
		return nil, Errorf(EINVALID, "batch: no reports")
	}
	if max > 0 && len(raws) > max {
		return nil, Errorf(ETOOLARGE, "batch: %d reports, at most %d allowed", len(raws), max)
	}
	out := make([]*Report, len(raws))
	for i, raw := range raws {
		r, err := DecodeReport(raw)
		if err != nil {
			return nil, Errorf(EINVALID, "reports[%d]: %s", i, strings.TrimPrefix(ErrorMessage(err), "report: "))
		}
		out[i] = r
	}
	return out, nil
}

// badCount finds the first count in votes or vote_types that is not a
// non-negative integer and names it with its key ("votes.biden: ..."),
// which encoding/json's errors do not. It returns "" when it finds none.
func badCount(b []byte) string {
	var raw struct {
		Votes     map[string]json.RawMessage            `json:"votes"`
		VoteTypes map[string]map[string]json.RawMessage `json:"vote_types"`
	}
	if json.Unmarshal(b, &raw) != nil {
		return ""
	}
	check := func(field string, m map[string]json.RawMessage) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			var n int64
			if err := json.Unmarshal(m[k], &n); err != nil {
				return fmt.Sprintf("%s.%s: must be a non-negative integer, got %s", field, k, m[k])
			}
		}
		return ""
	}
	if msg := check("votes", raw.Votes); msg != "" {
		return msg
	}
	vts := make([]string, 0, len(raw.VoteTypes))
	for k := range raw.VoteTypes {
		vts = append(vts, k)
	}
	sort.Strings(vts)
	for _, vt := range vts {
		if msg := check("vote_types."+vt, raw.VoteTypes[vt]); msg != "" {
			return msg
		}
	}
	return ""
}

// jsonErrorText turns an encoding/json error into a message naming the field.
func jsonErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "value"
		}
		want := "a " + te.Type.String()
		switch te.Type.Kind() {
		case reflect.Int64, reflect.Pointer:
			want = "a non-negative integer"
		case reflect.Uint64:
			want = "a positive integer"
		case reflect.String:
			want = "a string"
		case reflect.Bool:
			want = "true or false"
		case reflect.Map, reflect.Struct:
			want = "an object"
		}
		return fmt.Sprintf("%s: must be %s, got %s", field, want, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, se.Error())
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "malformed JSON: unexpected end of input"
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return msg
}

// AssignID gives r an id when it has none: "<region>-" and a hash of its
// canonical bytes, so a retry of the same submission gets the same id and is
// recognised as a duplicate.
func (r *Report) AssignID() error {
	if r.ID != "" {
		return nil
	}
	b, err := r.Encode()
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	r.ID = EventID(string(r.Region) + "-" + hex.EncodeToString(sum[:12]))
	return nil
}

// Validate checks r against election e: the id, the region, precinct, contest
// and candidates, the counts and, for a correction, what it supersedes. Errors
// have code EINVALID and name the field.
func (r *Report) Validate(e *Election) error {
	if err := r.validateID(); err != nil {
		return err
	}
	reg := e.Region(r.Region)
	if reg == nil {
		return Errorf(EINVALID, "region: unknown region %q", r.Region)
	}
	p := e.Precinct(r.Precinct)
	if p == nil {
		return Errorf(EINVALID, "precinct: unknown precinct %q", r.Precinct)
	}
	if p.Region != r.Region {
		return Errorf(EINVALID, "precinct: precinct %q belongs to region %q, not %q", r.Precinct, p.Region, r.Region)
	}
	c := e.Contest(r.Contest)
	if c == nil {
		return Errorf(EINVALID, "contest: unknown contest %q", r.Contest)
	}
	if !e.OnBallot(r.Precinct, r.Contest) {
		return Errorf(EINVALID, "contest: contest %q is not on the ballot of precinct %q", r.Contest, r.Precinct)
	}
	if r.Votes == nil && r.VoteTypes != nil {
		r.Votes = map[CandidateID]int64{}
		for _, byCand := range r.VoteTypes {
			for cand, n := range byCand {
				r.Votes[cand] += n
			}
		}
	}
	if len(r.Votes) == 0 {
		return Errorf(EINVALID, "votes: at least one candidate count required")
	}
	if r.countsFine(e) {
		return r.validateRest(p, c)
	}
	var sum int64
	for _, cand := range sortedCandidates(r.Votes) {
		n := r.Votes[cand]
		if e.Candidate(r.Contest, cand) == nil {
			return Errorf(EINVALID, "votes.%s: unknown candidate %q in contest %q", cand, cand, r.Contest)
		}
		if n < 0 {
			return Errorf(EINVALID, "votes.%s: must be a non-negative integer, got %d", cand, n)
		}
		sum += n
		if sum < 0 {
			return Errorf(EINVALID, "votes: sum overflows")
		}
	}
	if r.VoteTypes != nil {
		byCand := map[CandidateID]int64{}
		for _, vt := range sortedVoteTypes(r.VoteTypes) {
			if !ValidVoteType(vt) {
				return Errorf(EINVALID, "vote_types.%s: unknown vote type; want one of election-day, early, absentee, provisional, other", vt)
			}
			for _, cand := range sortedCandidates(r.VoteTypes[vt]) {
				n := r.VoteTypes[vt][cand]
				if e.Candidate(r.Contest, cand) == nil {
					return Errorf(EINVALID, "vote_types.%s.%s: unknown candidate %q in contest %q", vt, cand, cand, r.Contest)
				}
				if n < 0 {
					return Errorf(EINVALID, "vote_types.%s.%s: must be a non-negative integer, got %d", vt, cand, n)
				}
				byCand[cand] += n
			}
		}
		for _, cand := range sortedCandidates(r.Votes) {
			if byCand[cand] != r.Votes[cand] {
				return Errorf(EINVALID, "vote_types: counts for %q sum to %d, but votes.%s is %d", cand, byCand[cand], cand, r.Votes[cand])
			}
		}
		for cand := range byCand {
			if _, ok := r.Votes[cand]; !ok && byCand[cand] != 0 {
				return Errorf(EINVALID, "vote_types: candidate %q has votes by type but none in votes", cand)
			}
		}
	}
	return r.validateRest(p, c)
}

// countsFine reports whether r's votes and vote types pass the checks of
// Validate. Validate checks them in sorted order, so that an error names the
// first bad count whatever the map order; sorting costs allocations, so it
// does that only when this quick pass finds something wrong.
func (r *Report) countsFine(e *Election) bool {
	var sum int64
	for cand, n := range r.Votes {
		if n < 0 || e.Candidate(r.Contest, cand) == nil {
			return false
		}
		sum += n
		if sum < 0 {
			return false
		}
	}
	if r.VoteTypes == nil {
		return true
	}
	if len(r.Votes) > 8 {
		return false // the slow path's sums then; rare
	}
	var keys [8]CandidateID
	var byCand [8]int64
	nk := 0
	for k := range r.Votes {
		keys[nk] = k
		nk++
	}
	for vt, m := range r.VoteTypes {
		if !ValidVoteType(vt) {
			return false
		}
		for cand, n := range m {
			if n < 0 || e.Candidate(r.Contest, cand) == nil {
				return false
			}
			i := 0
			for i < nk && keys[i] != cand {
				i++
			}
			if i == nk {
				if n != 0 {
					return false
				}
				continue
			}
			byCand[i] += n
		}
	}
	for i := range nk {
		if byCand[i] != r.Votes[keys[i]] {
			return false
		}
	}
	return true
}

// validateRest is Validate past the counts.
func (r *Report) validateRest(p *Precinct, c *Contest) error {
	var sum int64
	for _, n := range r.Votes {
		sum += n
	}
	if r.Overvotes < 0 {
		return Errorf(EINVALID, "overvotes: must be a non-negative integer, got %d", r.Overvotes)
	}
	if r.Undervotes < 0 {
		return Errorf(EINVALID, "undervotes: must be a non-negative integer, got %d", r.Undervotes)
	}
	if r.BallotsCast != nil {
		b := *r.BallotsCast
		if b < 0 {
			return Errorf(EINVALID, "ballots_cast: must be a non-negative integer, got %d", b)
		}
		if limit := b * int64(c.Seats); sum > limit {
			return Errorf(EINVALID, "votes: candidate votes sum to %d, more than ballots_cast %d allows for %d seat(s)", sum, b, c.Seats)
		}
		if p.Registered > 0 && b > p.Registered {
			return Errorf(EINVALID, "ballots_cast: %d is more than the %d registered voters of precinct %q", b, p.Registered, r.Precinct)
		}
	}
	if r.Correction != nil {
		cr := r.Correction
		if cr.Supersedes == "" {
			return Errorf(EINVALID, "correction.supersedes: the id of the superseded report is required")
		}
		if cr.SupersedesSeq == 0 {
			return Errorf(EINVALID, "correction.supersedes_seq: the stream sequence of the superseded report is required")
		}
		if strings.TrimSpace(cr.Reason) == "" {
			return Errorf(EINVALID, "correction.reason: required")
		}
		if len(cr.Reason) > 1000 {
			return Errorf(EINVALID, "correction.reason: longer than 1000 characters")
		}
		if cr.Supersedes == r.ID {
			return Errorf(EINVALID, "correction.supersedes: a report cannot supersede itself")
		}
	}
	if len(r.Office) > 128 {
		return Errorf(EINVALID, "office: longer than 128 characters")
	}
	if len(r.Signature) > 128 {
		return Errorf(EINVALID, "signature: longer than 128 characters")
	}
	return nil
}

func (r *Report) validateID() error {
	if r.ID == "" {
		return Errorf(EINVALID, "id: required")
	}
	if len(r.ID) > MaxEventIDLen {
		return Errorf(EINVALID, "id: longer than %d characters", MaxEventIDLen)
	}
	if !strings.HasPrefix(string(r.ID), string(r.Region)+"-") {
		return Errorf(EINVALID, "id: %q must start with the region, %q", r.ID, string(r.Region)+"-")
	}
	for _, c := range r.ID {
		if c <= ' ' || c > '~' {
			return Errorf(EINVALID, "id: %q holds a space or a non-ASCII character", r.ID)
		}
	}
	return nil
}

func sortedCandidates(m map[CandidateID]int64) []CandidateID {
	ids := make([]CandidateID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

func sortedVoteTypes(m map[VoteType]map[CandidateID]int64) []VoteType {
	ids := make([]VoteType, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}
