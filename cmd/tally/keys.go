package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tallyvote/tally"
)

// Office key files: <dir>/<office>.nk holds the office's seed ("SU...",
// mode 0600), <dir>/<office>.pub its public key. A directory made with
// `tally keys --counties` also holds offices.json: the offices of every
// region ({"<region>": [{id, public_key, counties}]}), for the regions'
// configs and for `tally replay --keys`.
const officesFile = "offices.json"

// signer signs reports as one office.
type signer struct {
	office string
	key    ed25519.PrivateKey
}

// sign sets r's office, its id (derived from the content, before the time
// is set, so that submitting the same content again gets the same id and is
// answered as a duplicate), its time (now, unless set) and its signature.
func (s signer) sign(r *tally.Report, now time.Time) error {
	r.Office, r.Signature = s.office, ""
	if err := r.AssignID(); err != nil {
		return err
	}
	if r.ReportedAt.IsZero() {
		r.ReportedAt = now.UTC()
	}
	return r.Sign(s.office, s.key)
}

// officeKeys are the offices of an election by region, and a signer per
// precinct.
type officeKeys struct {
	dir     string
	Offices map[tally.RegionID][]tally.Office
	signers map[tally.PrecinctID]signer
}

// writeKey writes a new key pair of office id in dir and returns its public
// key. It refuses to overwrite an existing seed.
func writeKey(dir, id string) (seed, pub string, err error) {
	if err := tally.ValidToken(id); err != nil {
		return "", "", fmt.Errorf("name: %v", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	seed, pub = tally.NewOfficeKey()
	f, err := os.OpenFile(filepath.Join(dir, id+".nk"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("write seed: %w", err)
	}
	_, werr := f.WriteString(seed + "\n")
	if err := errors.Join(werr, f.Close()); err != nil {
		return "", "", fmt.Errorf("write seed: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, id+".pub"), []byte(pub+"\n"), 0o644); err != nil {
		return "", "", err
	}
	return seed, pub, nil
}

// readSeed reads an office seed from a file; it never quotes the file's content.
func readSeed(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := tally.ParseSeed(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %s", path, tally.ErrorMessage(err))
	}
	return key, nil
}

// countyOfficeID is the id of the office of county in region reg.
func countyOfficeID(reg tally.RegionID, county string) string {
	return string(reg) + "-" + tally.Slug(county)
}

// writeCountyOffices makes one office per county of every region of e, with
// its key pair in dir, and writes offices.json.
func writeCountyOffices(e *tally.Election, dir string) (*officeKeys, error) {
	ok := &officeKeys{dir: dir, Offices: map[tally.RegionID][]tally.Office{}, signers: map[tally.PrecinctID]signer{}}
	for _, reg := range e.Regions {
		seen := map[string]bool{}
		var counties []string
		for _, p := range e.RegionPrecincts(reg.ID) {
			if c := e.Precinct(p).County; !seen[c] {
				seen[c] = true
				counties = append(counties, c)
			}
		}
		sort.Strings(counties)
		for _, c := range counties {
			id := countyOfficeID(reg.ID, c)
			_, pub, err := writeKey(dir, id)
			if err != nil {
				return nil, fmt.Errorf("office %s: %w", id, err)
			}
			ok.Offices[reg.ID] = append(ok.Offices[reg.ID], tally.Office{ID: id, PublicKey: pub, Counties: []string{c}})
		}
	}
	b, err := json.MarshalIndent(ok.Offices, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, officesFile), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return ok, ok.resolve(e, dir)
}

// loadOfficeKeys reads offices.json and the offices' seeds from dir.
func loadOfficeKeys(e *tally.Election, dir string) (*officeKeys, error) {
	ok := &officeKeys{dir: dir, signers: map[tally.PrecinctID]signer{}}
	if err := loadConfigFile(filepath.Join(dir, officesFile), &ok.Offices); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return ok, ok.resolve(e, dir)
}

// resolve reads each office's seed, checks it against the listed public key
// and maps every precinct to its office's signer.
func (ok *officeKeys) resolve(e *tally.Election, dir string) error {
	for reg, list := range ok.Offices {
		offs, err := tally.NewOffices(e, reg, list)
		if err != nil {
			return fmt.Errorf("keys: region %s: %s", reg, tally.ErrorMessage(err))
		}
		for _, of := range list {
			key, err := readSeed(filepath.Join(dir, of.ID+".nk"))
			if err != nil {
				return fmt.Errorf("keys: %w", err)
			}
			if tally.EncodePublicKey(key.Public().(ed25519.PublicKey)) != of.PublicKey {
				return fmt.Errorf("keys: office %s: the seed does not match the listed public key", of.ID)
			}
			for _, p := range offs.Precincts(of.ID) {
				ok.signers[p] = signer{office: of.ID, key: key}
			}
		}
	}
	return nil
}

// KeysMain runs `tally keys`: it makes an office's key pair, or one per
// county of an election, and prints the public key(s). Seeds go to files
// only, never to the output.
type KeysMain struct {
	Dir      string
	Name     string
	Counties bool
	Election ElectionSource

	out  io.Writer
	done chan struct{}
}

// NewKeysMain returns a KeysMain printing to out.
func NewKeysMain(out io.Writer) *KeysMain { return &KeysMain{out: out, done: make(chan struct{})} }

// ParseFlags reads the flags.
func (m *KeysMain) ParseFlags(args []string, getenv func(string) string) error {
	fs := flagSet("keys", m.out)
	dir := fs.String("out", "keys", "directory for the key files (<name>.nk, mode 0600, and <name>.pub)")
	name := fs.String("name", "", "office id, for one key pair")
	counties := fs.Bool("counties", false, "make one office per county of every region of the election, and offices.json")
	results := fs.String("results", "bundled", "with --counties: results CSV file(s), or \"bundled\"")
	regions := fs.Int("regions", 0, "with --counties: regions per state (default 2)")
	year := fs.Int("year", 0, "with --counties: the year (default: the latest)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m.Dir, m.Name, m.Counties = *dir, *name, *counties
	m.Election = ElectionSource{Results: *results, Regions: *regions, Year: *year}
	if (m.Name == "") == !m.Counties {
		return fmt.Errorf("keys: set --name (one office) or --counties (one per county), not both")
	}
	return nil
}

// Run makes the keys and prints the public keys.
func (m *KeysMain) Run(ctx context.Context) error {
	defer close(m.done)
	if !m.Counties {
		_, pub, err := writeKey(m.Dir, m.Name)
		if err != nil {
			return err
		}
		fmt.Fprintf(m.out, "%s\n", pub)
		return nil
	}
	le, err := loadElection(m.Election)
	if err != nil {
		return fmt.Errorf("election: %w", err)
	}
	ok, err := writeCountyOffices(le.Election, m.Dir)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(m.out)
	enc.SetIndent("", "  ")
	return enc.Encode(ok.Offices)
}

// Done is closed once Run has finished.
func (m *KeysMain) Done() <-chan struct{} { return m.done }

// Close does nothing.
func (m *KeysMain) Close() error { return nil }
