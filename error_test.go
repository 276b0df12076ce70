package tally_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/tallyvote/tally"
)

func TestErrorCodes(t *testing.T) {
	err := fmt.Errorf("submit: %w", tally.Errorf(tally.ECONFLICT, "stale correction"))
	if got := tally.ErrorCode(err); got != tally.ECONFLICT {
		t.Errorf("ErrorCode = %q, want conflict", got)
	}
	if got := tally.ErrorMessage(err); got != "stale correction" {
		t.Errorf("ErrorMessage = %q", got)
	}
	if got := tally.ErrorMessage(fmt.Errorf("disk on fire")); got != "internal error" {
		t.Errorf("uncoded ErrorMessage = %q, want internal error", got)
	}
	for code, want := range map[string]int{
		tally.EINVALID: 400, tally.EUNAUTHORIZED: 401, tally.EFORBIDDEN: 403, tally.ENOTFOUND: 404,
		tally.ECONFLICT: 409, tally.ETOOLARGE: 413, tally.EUNAVAILABLE: 503, tally.EINTERNAL: 500, "made_up": 500,
	} {
		if got := tally.HTTPStatus(code); got != want {
			t.Errorf("HTTPStatus(%q) = %d, want %d", code, got, want)
		}
	}
	for status, want := range map[int]string{
		http.StatusNotFound: tally.ENOTFOUND, http.StatusMethodNotAllowed: "method_not_allowed",
		http.StatusBadGateway: tally.EINTERNAL, http.StatusUnsupportedMediaType: "unsupported_media_type",
	} {
		if got := tally.CodeForHTTPStatus(status); got != want {
			t.Errorf("CodeForHTTPStatus(%d) = %q, want %q", status, got, want)
		}
	}
}
