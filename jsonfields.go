package tally

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Reading and writing a large JSON object a part at a time: the snapshot
// readers (ReadTotals, ReadTotalsCompact, the reconciler's) and writers
// (TotalsCopy.WriteJSON and WriteCompact, the reconciler's) hold one cell
// or one group of cells at a time, never the whole object.

// WriteJSONWith writes v as JSON to w, except the value of its field name,
// which v holds as placeholder (null, [] or {}) and fill writes instead,
// a part at a time. Errors of w may show only at its end (a bufio.Writer).
func WriteJSONWith(w io.Writer, v any, name, placeholder string, fill func() error) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	// A key in a JSON string has its quotes escaped, so the first match
	// is the field itself.
	mark := `"` + name + `":` + placeholder
	i := bytes.Index(b, []byte(mark))
	if i < 0 {
		return Errorf(EINTERNAL, "no field %s in %.60s", mark, b)
	}
	if _, err := w.Write(b[:i+len(mark)-len(placeholder)]); err != nil {
		return err
	}
	if err := fill(); err != nil {
		return err
	}
	_, err = w.Write(b[i+len(mark):])
	return err
}

// DecodeFields reads one JSON object from dec a field at a time: it calls
// field with each key, dec before the key's value, which field must read
// (decodeField, readArray, or dec.Decode). A key may come only once; field
// refuses the keys it does not know. It returns field's errors as they
// are, and any other (the JSON itself, a key twice) as an *Error with code
// EINVALID whose message starts with what.
func DecodeFields(dec *json.Decoder, what string, field func(key string) error) error {
	if err := readDelim(dec, '{'); err != nil {
		return Errorf(EINVALID, "%s: %v", what, err)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Errorf(EINVALID, "%s: %v", what, err)
		}
		key, _ := tok.(string) // object keys are strings
		if seen[key] {
			return Errorf(EINVALID, "%s: field %q twice", what, key)
		}
		seen[key] = true
		if err := field(key); err != nil {
			var e *Error
			if errors.As(err, &e) {
				return err
			}
			return Errorf(EINVALID, "%s: %s: %v", what, key, err)
		}
	}
	if err := readDelim(dec, '}'); err != nil {
		return Errorf(EINVALID, "%s: %v", what, err)
	}
	return nil
}

// decodeField decodes the value of field key of what from dec into v.
func decodeField(dec *json.Decoder, what, key string, v any) error {
	if err := dec.Decode(v); err != nil {
		return Errorf(EINVALID, "%s: %s: %v", what, key, err)
	}
	return nil
}

// readDelim reads the token d from dec.
func readDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("want %q, got %v", d, tok)
	}
	return nil
}

// readArray reads a JSON array, or null, from dec, calling each for every
// element with dec before it. It returns each's errors as they are, and
// its own as an *Error with code EINVALID whose message starts with what.
func readArray(dec *json.Decoder, what string, each func() error) error {
	tok, err := dec.Token()
	if err != nil {
		return Errorf(EINVALID, "%s: %v", what, err)
	}
	if tok == nil {
		return nil // null
	}
	if tok != json.Delim('[') {
		return Errorf(EINVALID, "%s: want an array, got %v", what, tok)
	}
	for dec.More() {
		if err := each(); err != nil {
			return err
		}
	}
	if err := readDelim(dec, ']'); err != nil {
		return Errorf(EINVALID, "%s: %v", what, err)
	}
	return nil
}
