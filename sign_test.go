package tally_test

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

func TestOfficeKeyRoundTrip(t *testing.T) {
	seed, pub := tally.NewOfficeKey()
	if !strings.HasPrefix(seed, "SU") || len(seed) != 58 || !strings.HasPrefix(pub, "U") || len(pub) != 56 {
		t.Fatalf("NewOfficeKey() = %d chars %.2s..., %q; want SU... (58), U... (56)", len(seed), seed, pub)
	}
	priv, err := tally.ParseSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	if got := tally.EncodePublicKey(priv.Public().(ed25519.PublicKey)); got != pub {
		t.Errorf("public key of seed = %q, want %q", got, pub)
	}
	for _, bad := range []string{"", pub, seed[:30] + flip(seed[30]) + seed[31:], "not base32!", seed[:20]} {
		if _, err := tally.ParseSeed(bad); tally.ErrorCode(err) != tally.EINVALID || strings.Contains(err.Error(), seed) {
			t.Errorf("ParseSeed(%.6q...) err = %v, want EINVALID not quoting the seed", bad, err)
		}
	}
	for _, bad := range []string{"", seed, pub[:55] + flip(pub[55]), "U"} {
		if _, err := tally.ParsePublicKey(bad); tally.ErrorCode(err) != tally.EINVALID {
			t.Errorf("ParsePublicKey(%q) err = %v, want EINVALID", bad, err)
		}
	}
}

// mustOffices returns the offices of region xa-1 of the small election:
// "north" (county North: xa-north-1, xa-north-2) and "one" (xa-north-1 only),
// and their private keys.
func mustOffices(tb testing.TB, e *tally.Election) (*tally.Offices, map[string]string) {
	tb.Helper()
	seeds := map[string]string{}
	var list []tally.Office
	for _, of := range []tally.Office{{ID: "north", Counties: []string{"north"}}, {ID: "one", Precincts: []tally.PrecinctID{"xa-north-1"}}} {
		seed, pub := tally.NewOfficeKey()
		seeds[of.ID], of.PublicKey = seed, pub
		list = append(list, of)
	}
	o, err := tally.NewOffices(e, "xa-1", list)
	if err != nil {
		tb.Fatal(err)
	}
	return o, seeds
}

func mustSign(tb testing.TB, r *tally.Report, office, seed string) {
	tb.Helper()
	key, err := tally.ParseSeed(seed)
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.Sign(office, key); err != nil {
		tb.Fatal(err)
	}
}

func TestOfficesAuthorize(t *testing.T) {
	e, _ := MustBuildSmall(t)
	offs, seeds := mustOffices(t, e)
	if got := len(offs.Precincts("north")); got != 2 {
		t.Errorf("office north has %d precincts, want 2 (its county)", got)
	}
	tests := []struct {
		name string
		edit func(r *tally.Report)
		code string
	}{
		{"Valid", func(r *tally.Report) { mustSign(t, r, "one", seeds["one"]) }, ""},
		{"CountyOffice", func(r *tally.Report) { r.Precinct = "xa-north-2"; mustSign(t, r, "north", seeds["north"]) }, ""},
		{"Unsigned", func(r *tally.Report) { r.Office = "one" }, tally.EUNAUTHORIZED},
		{"UnknownOffice", func(r *tally.Report) { mustSign(t, r, "nobody", seeds["one"]) }, tally.EUNAUTHORIZED},
		{"WrongKey", func(r *tally.Report) { mustSign(t, r, "one", seeds["north"]) }, tally.EUNAUTHORIZED},
		{"Tampered", func(r *tally.Report) { mustSign(t, r, "one", seeds["one"]); r.Votes["smith"]++ }, tally.EUNAUTHORIZED},
		{"TamperedID", func(r *tally.Report) { mustSign(t, r, "one", seeds["one"]); r.ID += "x" }, tally.EUNAUTHORIZED},
		{"Garbage", func(r *tally.Report) { mustSign(t, r, "one", seeds["one"]); r.Signature = "!!" }, tally.EUNAUTHORIZED},
		{"OtherPrecinct", func(r *tally.Report) { r.Precinct = "xa-north-2"; mustSign(t, r, "one", seeds["one"]) }, tally.EFORBIDDEN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validReport(e)
			tt.edit(r)
			if got := tally.ErrorCode(offs.Authorize(r)); got != tt.code {
				t.Errorf("Authorize() code = %q, want %q", got, tt.code)
			}
		})
	}
}

func TestSignedReportSurvivesTheWire(t *testing.T) {
	e, _ := MustBuildSmall(t)
	offs, seeds := mustOffices(t, e)
	r := validReport(e)
	r.ReportedAt = time.Date(2020, 11, 3, 21, 0, 0, 123456789, time.FixedZone("EST", -5*3600))
	r.VoteTypes = map[tally.VoteType]map[tally.CandidateID]int64{}
	mustSign(t, r, "one", seeds["one"])
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := tally.DecodeReport(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := offs.Authorize(got); err != nil {
		t.Errorf("Authorize(decoded) = %v, want nil", err)
	}
}

func TestNewOfficesRefuses(t *testing.T) {
	e, _ := MustBuildSmall(t)
	_, pub := tally.NewOfficeKey()
	_, pub2 := tally.NewOfficeKey()
	tests := []struct {
		name string
		list []tally.Office
		want string
	}{
		{"BadID", []tally.Office{{ID: "a b", PublicKey: pub, Counties: []string{"North"}}}, "offices[0].id"},
		{"BadKey", []tally.Office{{ID: "a", PublicKey: "Uxyz", Counties: []string{"North"}}}, "offices[0].public_key"},
		{"SameKey", []tally.Office{{ID: "a", PublicKey: pub, Counties: []string{"North"}}, {ID: "b", PublicKey: pub, Counties: []string{"North"}}}, "offices[1].public_key"},
		{"SameID", []tally.Office{{ID: "a", PublicKey: pub, Counties: []string{"North"}}, {ID: "a", PublicKey: pub2, Counties: []string{"North"}}}, "listed twice"},
		{"OtherRegion", []tally.Office{{ID: "a", PublicKey: pub, Precincts: []tally.PrecinctID{"xa-south-1"}}}, "not a precinct of region"},
		{"NoCounty", []tally.Office{{ID: "a", PublicKey: pub, Counties: []string{"South"}}}, "no precinct in county"},
		{"Empty", []tally.Office{{ID: "a", PublicKey: pub}}, "lists no precinct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tally.NewOffices(e, "xa-1", tt.list)
			if tally.ErrorCode(err) != tally.EINVALID || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewOffices() err = %v, want EINVALID containing %q", err, tt.want)
			}
		})
	}
}

func TestReplayWindow(t *testing.T) {
	now := time.Date(2024, 11, 5, 20, 0, 0, 0, time.UTC)
	from, to := tally.ReplayWindow(now, time.Hour)
	if want := now.Add(-55 * time.Minute); !from.Equal(want) {
		t.Errorf("from = %v, want %v", from, want)
	}
	if want := now.Add(5 * time.Minute); !to.Equal(want) {
		t.Errorf("to = %v, want %v", to, want)
	}
}

// flip returns another base32 character than c.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
