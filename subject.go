package tally

import (
	"strings"
)

// The wire contract between services: subjects, stream and bucket names.
const (
	// ResultsStream is the name of every region's stream of accepted events,
	// in the region's own JetStream domain.
	ResultsStream = "RESULTS"

	// HubDomain is the JetStream domain of the hub.
	HubDomain = "hub"

	// NationalBucket is the hub's key-value bucket holding the national
	// state that gateways serve: one key per contest (ContestKey) and the
	// region statuses (KeyRegions).
	NationalBucket = "TALLY_NATIONAL"

	// KeyRegions is the key of the region statuses ([]RegionStatus).
	KeyRegions = "regions"
	// KeyContestPrefix prefixes the key of each contest's result (ContestResult).
	KeyContestPrefix = "contest."
)

// ResultsSubject is the subject of reports and corrections for one precinct
// and contest: tally.<region>.results.<precinct>.<contest>. One subject per
// precinct and contest lets a correction be guarded with the expected last
// subject sequence.
func ResultsSubject(r RegionID, p PrecinctID, c ContestID) string {
	return "tally." + string(r) + ".results." + string(p) + "." + string(c)
}

// ResultsSubjects is the subject filter of a region's RESULTS stream.
func ResultsSubjects(r RegionID) string { return "tally." + string(r) + ".results.>" }

// PrecinctSubjects is the subject filter for every contest of one precinct.
func PrecinctSubjects(r RegionID, p PrecinctID) string {
	return "tally." + string(r) + ".results." + string(p) + ".*"
}

// ParseResultsSubject splits a results subject into its region, precinct and
// contest. ok is false when s is not a results subject.
func ParseResultsSubject(s string) (r RegionID, p PrecinctID, c ContestID, ok bool) {
	// strings.Split, without its allocation: this runs for every event.
	var parts [5]string
	n := 0
	for n < 4 {
		i := strings.IndexByte(s, '.')
		if i < 0 {
			break
		}
		parts[n], s = s[:i], s[i+1:]
		n++
	}
	if n != 4 || strings.IndexByte(s, '.') >= 0 {
		return "", "", "", false
	}
	parts[4] = s
	if parts[0] != "tally" || parts[2] != "results" {
		return "", "", "", false
	}
	return RegionID(parts[1]), PrecinctID(parts[3]), ContestID(parts[4]), true
}

// MirrorStream is the name of the hub's mirror of region r's RESULTS stream.
// It keeps the region's sequence numbers and has no subjects of its own.
func MirrorStream(r RegionID) string { return "MIRROR_" + string(r) }

// ContestKey is the national bucket key of contest c's result.
func ContestKey(c ContestID) string { return KeyContestPrefix + string(c) }
