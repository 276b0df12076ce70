package tally

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// StoredEvent is one message as a JetStream stream stores it: the region
// whose stream it belongs to (empty for the hub's own streams), the stream,
// its sequence there, its subject, when it was stored and its bytes, exactly.
// A region's RESULTS stream and the hub's mirror of it hold the same
// sequences, subjects, times and bytes, so either gives the same events.
type StoredEvent struct {
	Region  RegionID  `json:"region,omitempty"`
	Stream  string    `json:"stream"`
	Seq     uint64    `json:"seq"`
	Subject string    `json:"subject"`
	Stored  time.Time `json:"stored"`
	Data    []byte    `json:"-"` // see MarshalJSON
}

// storedEventJSON is StoredEvent's JSON: Data as a string when it is valid
// UTF-8 (reports and checkpoints are JSON, so a log stays readable and
// greppable), else in base64 under data_base64. Both give back the exact bytes.
type storedEventJSON struct {
	Kind    string    `json:"kind,omitempty"`
	Region  RegionID  `json:"region,omitempty"`
	Stream  string    `json:"stream"`
	Seq     uint64    `json:"seq"`
	Subject string    `json:"subject"`
	Stored  time.Time `json:"stored"`
	Data    *string   `json:"data,omitempty"`
	Data64  []byte    `json:"data_base64,omitempty"`
}

func (ev StoredEvent) wire(kind string) storedEventJSON {
	j := storedEventJSON{Kind: kind, Region: ev.Region, Stream: ev.Stream, Seq: ev.Seq, Subject: ev.Subject, Stored: ev.Stored.UTC()}
	if utf8.Valid(ev.Data) {
		s := string(ev.Data)
		j.Data = &s
	} else {
		j.Data64 = ev.Data
	}
	return j
}

// MarshalJSON writes ev with its data as a JSON string, or in base64 as
// data_base64 when the data is not valid UTF-8.
func (ev StoredEvent) MarshalJSON() ([]byte, error) { return marshalNoEscape(ev.wire("")) }

// UnmarshalJSON reads what MarshalJSON wrote.
func (ev *StoredEvent) UnmarshalJSON(b []byte) error {
	var j storedEventJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	ev.fromWire(j)
	return nil
}

func (ev *StoredEvent) fromWire(j storedEventJSON) {
	*ev = StoredEvent{Region: j.Region, Stream: j.Stream, Seq: j.Seq, Subject: j.Subject, Stored: j.Stored}
	switch {
	case j.Data != nil:
		ev.Data = []byte(*j.Data)
	case j.Data64 != nil:
		ev.Data = j.Data64
	default:
		ev.Data = []byte{}
	}
}

// marshalNoEscape encodes v as JSON without HTML escaping, so that a log
// line shows the stored bytes as they are.
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// The kinds of line in an event log.
const (
	LogHeader   = "header"   // the first line: an EventLogHeader
	LogElection = "election" // the election definition, {"kind":"election","election":{...}}
	LogEvent    = "event"    // a message of a region's stream (or the hub's mirror of it)
	LogAudit    = "audit"    // a message of the hub's AuditStream
	LogCall     = "call"     // a message of the projector's CallsStream
)

// EventLogFormat names the format of an event log; ReadEventLog refuses others.
const EventLogFormat = "tally-event-log-v1"

// EventLogHeader is the first line of an event log: what was exported,
// from where and when.
type EventLogHeader struct {
	Kind   string `json:"kind"`   // LogHeader
	Format string `json:"format"` // EventLogFormat
	// Election and ElectionName identify the election the events belong to.
	Election     string `json:"election"`
	ElectionName string `json:"election_name,omitempty"`
	// Source says what was read, e.g. "hub mirrors" or "region nc-1 stream RESULTS".
	Source string `json:"source"`
	// Regions are the regions whose events the log holds.
	Regions []RegionID `json:"regions"`
	// Streams are the streams read, each with the last sequence it held.
	Streams []LogStream `json:"streams"`
	// Exported is when the export started; messages stored after it may
	// be missing.
	Exported time.Time `json:"exported"`
}

// LogStream is one stream an event log was read from.
type LogStream struct {
	Region   RegionID `json:"region,omitempty"`
	Stream   string   `json:"stream"`
	Messages uint64   `json:"messages"`
	FirstSeq uint64   `json:"first_seq"`
	LastSeq  uint64   `json:"last_seq"`
}

// EventLog is an exported event log: the election definition, the regions'
// stored events and the hub's audit records and calls, each in the order of
// the log.
type EventLog struct {
	Header EventLogHeader
	// Election is the definition the events were recorded against, so that
	// the log can be verified with nothing else; nil if the log has none.
	Election *Election
	Events   []StoredEvent // LogEvent lines
	Audit    []StoredEvent // LogAudit lines
	Calls    []StoredEvent // LogCall lines
}

// EventLogWriter writes an event log as JSON Lines: the header, then one
// line per stored message, {"kind": "event"|"audit"|"call", ...StoredEvent}.
type EventLogWriter struct {
	w   *bufio.Writer
	err error
}

// NewEventLogWriter writes h (its Kind and Format set here) to w and returns
// a writer for the lines that follow. Call Flush at the end.
func NewEventLogWriter(w io.Writer, h EventLogHeader) (*EventLogWriter, error) {
	lw := &EventLogWriter{w: bufio.NewWriterSize(w, 1<<16)}
	h.Kind, h.Format = LogHeader, EventLogFormat
	h.Exported = h.Exported.UTC()
	if h.Regions == nil {
		h.Regions = []RegionID{}
	}
	if h.Streams == nil {
		h.Streams = []LogStream{}
	}
	lw.line(h)
	return lw, lw.err
}

// WriteElection writes election definition e as a line of kind LogElection.
func (lw *EventLogWriter) WriteElection(e *Election) error {
	lw.line(struct {
		Kind     string    `json:"kind"`
		Election *Election `json:"election"`
	}{LogElection, e})
	return lw.err
}

// Write writes one stored message as a line of kind LogEvent, LogAudit or
// LogCall.
func (lw *EventLogWriter) Write(kind string, ev StoredEvent) error {
	switch kind {
	case LogEvent, LogAudit, LogCall:
	default:
		return Errorf(EINVALID, "event log: kind %q: want event, audit or call", kind)
	}
	lw.line(ev.wire(kind))
	return lw.err
}

func (lw *EventLogWriter) line(v any) {
	if lw.err != nil {
		return
	}
	b, err := marshalNoEscape(v)
	if err != nil {
		lw.err = fmt.Errorf("event log: %w", err)
		return
	}
	if _, err := lw.w.Write(append(b, '\n')); err != nil {
		lw.err = fmt.Errorf("event log: %w", err)
	}
}

// Flush writes out what is buffered and returns the first error met.
func (lw *EventLogWriter) Flush() error {
	if lw.err != nil {
		return lw.err
	}
	if err := lw.w.Flush(); err != nil {
		lw.err = fmt.Errorf("event log: %w", err)
	}
	return lw.err
}

// MaxLogLine is the longest line ReadEventLog accepts: far above any stored
// message (a stream's default max message size is 1 MiB), and room for the
// election definition of a national election.
const MaxLogLine = 64 << 20

// ReadEventLog reads an event log written by EventLogWriter. It refuses,
// with EINVALID naming the line, a log without its header, of another
// format, with a line that is not JSON or of an unknown kind, or with a
// line longer than MaxLogLine. It keeps the lines' order and checks nothing
// else: verifying the events is Verify's job.
func ReadEventLog(r io.Reader) (*EventLog, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), MaxLogLine)
	log := &EventLog{}
	n := 0
	for sc.Scan() {
		n++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if log.Header.Kind == "" {
			var h EventLogHeader
			if err := json.Unmarshal(b, &h); err != nil {
				return nil, Errorf(EINVALID, "event log: line %d: %s", n, jsonErrorText(err))
			}
			if h.Kind != LogHeader {
				return nil, Errorf(EINVALID, "event log: line %d: want the header first, got kind %q", n, h.Kind)
			}
			if h.Format != EventLogFormat {
				return nil, Errorf(EINVALID, "event log: line %d: format %q, want %q", n, h.Format, EventLogFormat)
			}
			if !writableTime(h.Exported) {
				return nil, Errorf(EINVALID, "event log: line %d: exported: year out of range", n)
			}
			log.Header = h
			continue
		}
		var j storedEventJSON
		if err := json.Unmarshal(b, &j); err != nil {
			return nil, Errorf(EINVALID, "event log: line %d: %s", n, jsonErrorText(err))
		}
		if j.Kind == LogElection {
			if log.Election != nil {
				return nil, Errorf(EINVALID, "event log: line %d: a second election definition", n)
			}
			var el struct {
				Election json.RawMessage `json:"election"`
			}
			if err := json.Unmarshal(b, &el); err != nil {
				return nil, Errorf(EINVALID, "event log: line %d: %s", n, jsonErrorText(err))
			}
			e, err := LoadElection(bytes.NewReader(el.Election))
			if err != nil {
				return nil, Errorf(EINVALID, "event log: line %d: %s", n, ErrorMessage(err))
			}
			log.Election = e
			continue
		}
		if j.Data != nil && j.Data64 != nil {
			return nil, Errorf(EINVALID, "event log: line %d: both data and data_base64", n)
		}
		if !writableTime(j.Stored) {
			return nil, Errorf(EINVALID, "event log: line %d: stored: year out of range", n)
		}
		var ev StoredEvent
		ev.fromWire(j)
		switch j.Kind {
		case LogEvent:
			log.Events = append(log.Events, ev)
		case LogAudit:
			log.Audit = append(log.Audit, ev)
		case LogCall:
			log.Calls = append(log.Calls, ev)
		default:
			return nil, Errorf(EINVALID, "event log: line %d: kind %q: want event, audit or call", n, j.Kind)
		}
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			return nil, Errorf(EINVALID, "event log: line %d: longer than %d bytes", n+1, MaxLogLine)
		}
		return nil, fmt.Errorf("event log: %w", err)
	}
	if log.Header.Kind == "" {
		return nil, Errorf(EINVALID, "event log: empty; want a header line first")
	}
	return log, nil
}

// writableTime reports whether t can be written back in RFC 3339, in UTC.
func writableTime(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 0 && y <= 9999
}

// WriteTo writes the whole log: its header, then its events, audit records
// and calls.
func (l *EventLog) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	lw, err := NewEventLogWriter(cw, l.Header)
	if err != nil {
		return cw.n, err
	}
	if l.Election != nil {
		if err := lw.WriteElection(l.Election); err != nil {
			return cw.n, err
		}
	}
	for _, part := range []struct {
		kind string
		evs  []StoredEvent
	}{{LogEvent, l.Events}, {LogAudit, l.Audit}, {LogCall, l.Calls}} {
		for _, ev := range part.evs {
			if err := lw.Write(part.kind, ev); err != nil {
				return cw.n, err
			}
		}
	}
	err = lw.Flush()
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
