package tally_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tallyvote/tally"
)

func TestEventLogRoundTrip(t *testing.T) {
	at := time.Date(2020, 11, 3, 20, 0, 0, 123456789, time.UTC)
	e, err := tally.LoadElection(strings.NewReader(canvassElection))
	if err != nil {
		t.Fatal(err)
	}
	log := &tally.EventLog{
		Election: e,
		Header: tally.EventLogHeader{
			Election: "x-2020", ElectionName: "Test", Source: "hub mirrors",
			Regions: []tally.RegionID{"ra"}, Streams: []tally.LogStream{{Region: "ra", Stream: "MIRROR_ra", Messages: 3, FirstSeq: 1, LastSeq: 3}},
			Exported: at,
		},
		Events: []tally.StoredEvent{
			{Region: "ra", Stream: "MIRROR_ra", Seq: 1, Subject: "tally.ra.results.p1.gov", Stored: at, Data: []byte(`{"reason":"a <b> & c"}`)},
			{Region: "ra", Stream: "MIRROR_ra", Seq: 2, Subject: "tally.ra.results.p1.gov", Stored: at, Data: []byte{0xff, 0x00, 'x'}},
			{Region: "ra", Stream: "MIRROR_ra", Seq: 3, Subject: "tally.ra.checkpoint", Stored: at, Data: []byte{}},
		},
		Audit: []tally.StoredEvent{{Stream: tally.AuditStream, Seq: 1, Subject: "tally.audit.status.ra", Stored: at, Data: []byte(`{}`)}},
		Calls: []tally.StoredEvent{{Stream: tally.CallsStream, Seq: 1, Subject: "tally.calls.gov", Stored: at, Data: []byte(`{}`)}},
	}
	var buf bytes.Buffer
	if _, err := log.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	if !strings.Contains(text, `a <b> & c`) {
		t.Errorf("the log escapes the stored bytes:\n%s", text)
	}
	if !strings.Contains(text, `"data_base64":"/wB4"`) {
		t.Errorf("non-UTF-8 data not in base64:\n%s", text)
	}
	if n := strings.Count(text, "\n"); n != 7 {
		t.Errorf("%d lines, want 7:\n%s", n, text)
	}
	got, err := tally.ReadEventLog(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := *log
	want.Header.Kind, want.Header.Format = tally.LogHeader, tally.EventLogFormat
	if !reflect.DeepEqual(got.Header, want.Header) {
		t.Errorf("header = %+v, want %+v", got.Header, want.Header)
	}
	if a, b := jsonOf(t, got.Election), jsonOf(t, e); a != b {
		t.Errorf("election = %s, want %s", a, b)
	}
	for name, pair := range map[string][2][]tally.StoredEvent{"events": {got.Events, log.Events}, "audit": {got.Audit, log.Audit}, "calls": {got.Calls, log.Calls}} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("%s = %+v, want %+v", name, pair[0], pair[1])
		}
	}
}

func TestReadEventLogRefuses(t *testing.T) {
	header := `{"kind":"header","format":"tally-event-log-v1","election":"x","source":"s","regions":[],"streams":[],"exported":"2020-11-03T00:00:00Z"}` + "\n"
	tests := []struct{ name, in, want string }{
		{"Empty", "", "empty"},
		{"NoHeader", `{"kind":"event","seq":1}` + "\n", "line 1: want the header first"},
		{"OtherFormat", strings.Replace(header, "v1", "v9", 1), "line 1: format"},
		{"UnknownKind", header + `{"kind":"secret","seq":1}` + "\n", `line 2: kind "secret"`},
		{"NotJSON", header + "{\n", "line 2: malformed JSON"},
		{"BadElection", header + `{"kind":"election","election":{"id":""}}` + "\n", "line 2: election: id required"},
		{"BothData", header + `{"kind":"event","data":"x","data_base64":"eA=="}` + "\n", "line 2: both data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tally.ReadEventLog(strings.NewReader(tt.in))
			if tally.ErrorCode(err) != tally.EINVALID || !strings.Contains(tally.ErrorMessage(err), tt.want) {
				t.Errorf("ReadEventLog() = %v, want EINVALID containing %q", err, tt.want)
			}
		})
	}
}

// FuzzReadEventLog: no panic, and read→write→read is stable.
func FuzzReadEventLog(f *testing.F) {
	f.Add([]byte(`{"kind":"header","format":"tally-event-log-v1","election":"x","source":"s","exported":"2020-11-03T00:00:00Z"}
{"kind":"event","region":"ra","stream":"MIRROR_ra","seq":1,"subject":"tally.ra.results.p1.gov","stored":"2020-11-03T00:00:00Z","data":"{}"}
{"kind":"audit","stream":"TALLY_AUDIT","seq":1,"subject":"tally.audit.status.ra","stored":"2020-11-03T00:00:00Z","data_base64":"/wB4"}
`))
	f.Fuzz(func(t *testing.T, b []byte) {
		log, err := tally.ReadEventLog(bytes.NewReader(b))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if _, err := log.WriteTo(&buf); err != nil {
			t.Fatalf("write: %v", err)
		}
		log2, err := tally.ReadEventLog(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("read again: %v\n%s", err, buf.Bytes())
		}
		var buf2 bytes.Buffer
		if _, err := log2.WriteTo(&buf2); err != nil || !bytes.Equal(buf.Bytes(), buf2.Bytes()) {
			t.Fatalf("round trip: %v\n%s\n%s", err, buf.Bytes(), buf2.Bytes())
		}
	})
}

// jsonOf returns v in JSON.
func jsonOf(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
