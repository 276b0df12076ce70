package tally

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"
	"time"
)

// Office keys are ed25519 key pairs written in the NATS nkeys format, so the
// same key signs reports and authenticates the office's NATS user:
//
//	public key: base32(prefix 'U' | 32-byte key | crc16), 56 characters, "U..."
//	seed:       base32('S'+'U' prefix bytes | 32-byte seed | crc16), 58 characters, "SU..."
//
// base32 is the standard alphabet without padding and the CRC is CRC-16/XMODEM,
// little-endian, as in github.com/nats-io/nkeys. The decoders live here, with
// the standard library only, so that a stored event can be verified with
// nothing but this package.
const (
	nkeyPrefixSeed = 18 << 3 // 'S'
	nkeyPrefixUser = 20 << 3 // 'U'
)

var nkeyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewOfficeKey returns a new office key pair: the seed ("SU...", a secret) and
// the public key ("U..."). It never fails: crypto/rand does not.
func NewOfficeKey() (seed, public string) {
	var raw [ed25519.SeedSize]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+)
	priv := ed25519.NewKeyFromSeed(raw[:])
	seed = nkeyEncode([]byte{nkeyPrefixSeed | nkeyPrefixUser>>5, (nkeyPrefixUser & 31) << 3}, raw[:])
	return seed, EncodePublicKey(priv.Public().(ed25519.PublicKey))
}

// EncodePublicKey writes an ed25519 public key as an nkeys user public key.
func EncodePublicKey(pub ed25519.PublicKey) string {
	return nkeyEncode([]byte{nkeyPrefixUser}, pub)
}

// ParsePublicKey decodes an nkeys user public key ("U..."). Errors have code
// EINVALID.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	raw, err := nkeyDecode(s)
	if err != nil {
		return nil, Errorf(EINVALID, "public key: %s", err.Message)
	}
	if len(raw) != 1+ed25519.PublicKeySize || raw[0] != nkeyPrefixUser {
		return nil, Errorf(EINVALID, "public key: not an nkeys user public key (U...)")
	}
	return ed25519.PublicKey(raw[1:]), nil
}

// ParseSeed decodes an nkeys user seed ("SU...") into its private key.
// Errors have code EINVALID and never quote the seed.
func ParseSeed(s string) (ed25519.PrivateKey, error) {
	raw, err := nkeyDecode(strings.TrimSpace(s))
	if err != nil {
		return nil, Errorf(EINVALID, "seed: %s", err.Message)
	}
	if len(raw) != 2+ed25519.SeedSize || raw[0]&0xf8 != nkeyPrefixSeed ||
		(raw[0]&7)<<5|(raw[1]&0xf8)>>3 != nkeyPrefixUser {
		return nil, Errorf(EINVALID, "seed: not an nkeys user seed (SU...)")
	}
	return ed25519.NewKeyFromSeed(raw[2:]), nil
}

func nkeyEncode(prefix, key []byte) string {
	raw := append(append([]byte{}, prefix...), key...)
	raw = binary.LittleEndian.AppendUint16(raw, crc16(raw))
	return nkeyEncoding.EncodeToString(raw)
}

func nkeyDecode(s string) ([]byte, *Error) {
	if len(s) > 128 {
		return nil, Errorf(EINVALID, "too long")
	}
	raw, err := nkeyEncoding.DecodeString(s)
	if err != nil || len(raw) < 3 {
		return nil, Errorf(EINVALID, "not base32")
	}
	body, sum := raw[:len(raw)-2], binary.LittleEndian.Uint16(raw[len(raw)-2:])
	if crc16(body) != sum {
		return nil, Errorf(EINVALID, "bad checksum")
	}
	return body, nil
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), as nkeys uses.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// SignedBytes returns the bytes an office signs: the canonical encoding
// (Encode) of r with Signature empty. Office, ID and ReportedAt are part of
// them, so they must be set before signing, and an intake must not change
// them afterwards.
func (r *Report) SignedBytes() ([]byte, error) {
	c := *r
	c.Signature = ""
	return c.Encode()
}

// Sign sets r.Office to office and r.Signature to key's signature of
// SignedBytes. r.ID must already be set (AssignID does it deterministically),
// since the id is signed too.
func (r *Report) Sign(office string, key ed25519.PrivateKey) error {
	if r.ID == "" {
		return Errorf(EINVALID, "id: required before signing")
	}
	r.Office = office
	b, err := r.SignedBytes()
	if err != nil {
		return err
	}
	r.Signature = base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, b))
	return nil
}

// VerifySignature reports whether r.Signature is pub's signature of r's
// SignedBytes. A missing signature is EUNAUTHORIZED, and so is one that does
// not verify.
func (r *Report) VerifySignature(pub ed25519.PublicKey) error {
	if r.Signature == "" {
		return Errorf(EUNAUTHORIZED, "signature: required; sign the report with the office key (tally submit)")
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(r.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Errorf(EUNAUTHORIZED, "signature: not a base64url ed25519 signature")
	}
	b, err := r.SignedBytes()
	if err != nil {
		return Errorf(EUNAUTHORIZED, "signature: %v", err)
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, b, sig) {
		return Errorf(EUNAUTHORIZED, "signature: does not verify with the key of office %q", r.Office)
	}
	return nil
}

// Office is a reporting office of a region: its id (the value of
// Report.Office), its public key and the precincts it may report for,
// listed one by one or by county (every precinct of the county in the
// office's region).
type Office struct {
	ID        string       `json:"id"`
	PublicKey string       `json:"public_key"`
	Precincts []PrecinctID `json:"precincts,omitempty"`
	Counties  []string     `json:"counties,omitempty"`
}

// Offices is a region's resolved office list: who may sign reports for
// which precinct. Build it with NewOffices.
type Offices struct {
	byID map[string]*office
}

type office struct {
	key       ed25519.PublicKey
	precincts map[PrecinctID]bool
}

// NewOffices resolves list against election e for region reg: each office's
// key is decoded and its counties expanded to the region's precincts of
// that county. Errors have code EINVALID and name the office: a duplicate
// id or key, a bad key, a precinct not of reg, a county with no precinct in
// reg, or an office with no precinct at all.
func NewOffices(e *Election, reg RegionID, list []Office) (*Offices, error) {
	o := &Offices{byID: map[string]*office{}}
	keys := map[string]string{}
	for i, of := range list {
		name := "offices[" + strconv.Itoa(i) + "]"
		if err := ValidToken(of.ID); err != nil {
			return nil, Errorf(EINVALID, "%s.id: %v", name, err)
		}
		if o.byID[of.ID] != nil {
			return nil, Errorf(EINVALID, "%s.id: office %q listed twice", name, of.ID)
		}
		pub, err := ParsePublicKey(of.PublicKey)
		if err != nil {
			return nil, Errorf(EINVALID, "%s.public_key: %s", name, ErrorMessage(err))
		}
		if other, ok := keys[of.PublicKey]; ok {
			return nil, Errorf(EINVALID, "%s.public_key: also the key of office %q; give each office its own key", name, other)
		}
		keys[of.PublicKey] = of.ID
		ps := map[PrecinctID]bool{}
		for _, p := range of.Precincts {
			pr := e.Precinct(p)
			if pr == nil || pr.Region != reg {
				return nil, Errorf(EINVALID, "%s.precincts: %q is not a precinct of region %q", name, p, reg)
			}
			ps[p] = true
		}
		for _, county := range of.Counties {
			found := false
			for _, p := range e.RegionPrecincts(reg) {
				if strings.EqualFold(e.Precinct(p).County, county) {
					ps[p], found = true, true
				}
			}
			if !found {
				return nil, Errorf(EINVALID, "%s.counties: region %q has no precinct in county %q", name, reg, county)
			}
		}
		if len(ps) == 0 {
			return nil, Errorf(EINVALID, "%s: lists no precinct; set precincts or counties", name)
		}
		o.byID[of.ID] = &office{key: pub, precincts: ps}
	}
	return o, nil
}

// Len returns the number of offices.
func (o *Offices) Len() int { return len(o.byID) }

// Precincts returns the precincts office id may report for, nil for an
// unknown office.
func (o *Offices) Precincts(id string) []PrecinctID {
	of := o.byID[id]
	if of == nil {
		return nil
	}
	ps := make([]PrecinctID, 0, len(of.precincts))
	for p := range of.precincts {
		ps = append(ps, p)
	}
	return ps
}

// Authorize checks that r is signed by its office and that the office may
// report for r's precinct: an unsigned report, an unknown office or a
// signature that does not verify is EUNAUTHORIZED; a precinct outside the
// office's list is EFORBIDDEN. It checks nothing else (see Validate).
func (o *Offices) Authorize(r *Report) error {
	if r.Signature == "" {
		return Errorf(EUNAUTHORIZED, "signature: required; sign the report with the office key (tally submit)")
	}
	of := o.byID[r.Office]
	if of == nil {
		return Errorf(EUNAUTHORIZED, "office: %q is not an office of this region", r.Office)
	}
	if err := r.VerifySignature(of.key); err != nil {
		return err
	}
	if !of.precincts[r.Precinct] {
		return Errorf(EFORBIDDEN, "precinct: office %q may not report for precinct %q", r.Office, r.Precinct)
	}
	return nil
}

// ReplayWindow returns the reported_at times a signed report may carry when
// it reaches an intake whose stream remembers ids for dupWindow: from
// now-dupWindow+skew to now+skew, with skew = min(5m, dupWindow/4).
//
// Why: a signed report can be replayed by anyone who saw it. Inside the
// duplicate window the stream recognises its id and answers with the
// original sequence, storing nothing; outside it, the report is refused as
// stale. The skew bound keeps a report dated in the future from outliving
// its id's duplicate window.
func ReplayWindow(now time.Time, dupWindow time.Duration) (from, to time.Time) {
	skew := min(5*time.Minute, dupWindow/4)
	return now.Add(-dupWindow + skew), now.Add(skew)
}
