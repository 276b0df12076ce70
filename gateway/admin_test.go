package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tallyvote/tally"
	"github.com/tallyvote/tally/gateway"
)

// fakeProjector answers manual calls on tally.AdminCallSubject as the
// projector does, from its own goroutine: a Call, or an error object when
// the reason asks for one ("refuse:<code>"), or no answer at all ("ignore").
type fakeProjector struct {
	mu   sync.Mutex
	got  []tally.AdminCall
	done chan struct{}
}

func MustFakeProjector(tb testing.TB, nc *nats.Conn) *fakeProjector {
	tb.Helper()
	msgs := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe(tally.AdminCallSubject, msgs)
	if err != nil {
		tb.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	f := &fakeProjector{done: make(chan struct{})}
	stop := make(chan struct{})
	go func() {
		defer close(f.done)
		for {
			select {
			case <-stop:
				return
			case m := <-msgs:
				f.answer(m)
			}
		}
	}()
	tb.Cleanup(func() {
		_ = sub.Unsubscribe() // the connection closes next anyway
		close(stop)
		<-f.done
	})
	return f
}

func (f *fakeProjector) answer(m *nats.Msg) {
	var ac tally.AdminCall
	var reply []byte
	if err := json.Unmarshal(m.Data, &ac); err != nil {
		reply = []byte(`{"error":{"code":"invalid","message":"bad request"}}`)
	} else {
		f.mu.Lock()
		f.got = append(f.got, ac)
		f.mu.Unlock()
		switch {
		case ac.Reason == "ignore":
			return
		case strings.HasPrefix(ac.Reason, "refuse:"):
			code := strings.TrimPrefix(ac.Reason, "refuse:")
			reply, _ = json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": "refused: " + code}})
		default:
			c := tally.Call{Contest: ac.Contest, Status: tally.CallCalled, Winner: ac.Winner,
				At: time.Date(2024, 11, 5, 22, 0, 0, 0, time.UTC), By: ac.By, Reason: ac.Reason}
			if ac.Action == "retract" {
				c.Status = tally.CallRetracted
			}
			reply, _ = json.Marshal(c)
		}
	}
	_ = m.Respond(reply) // the requester may have given up: nothing to do
}

func (f *fakeProjector) calls() []tally.AdminCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]tally.AdminCall(nil), f.got...)
}

// postAdmin posts body to the admin calls route with the given
// Authorization header ("" for none).
func postAdmin(t *testing.T, base, auth, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/admin/calls", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

func TestAdminCallDisabled(t *testing.T) {
	v := MustEnv(t, nil)
	f := MustFakeProjector(t, v.nc)
	for _, auth := range []string{"", "Bearer ", "Bearer anything"} {
		st, _, body := postAdmin(t, v.base, auth, `{"contest":"pres-nm","action":"call","winner":"alice","reason":"r"}`)
		var e errorJSON
		mustJSON(t, body, &e)
		if st != http.StatusForbidden || e.Error.Code != tally.EFORBIDDEN || e.Error.Message != "admin API disabled" {
			t.Errorf("auth %q: %d %s, want 403 admin API disabled", auth, st, body)
		}
	}
	if got := f.calls(); len(got) != 0 {
		t.Errorf("projector asked %v", got)
	}
}

func TestAdminCall(t *testing.T) {
	const token = "s3cret-token"
	v := MustEnv(t, func(c *gateway.Config) { c.AdminToken, c.AdminTimeout = token, 300*time.Millisecond })
	f := MustFakeProjector(t, v.nc)
	bearer := "Bearer " + token
	tests := []struct {
		name   string
		auth   string
		body   string
		status int
		code   string     // error code, or "" for a Call
		want   tally.Call // with code "": the call answered
		asked  bool       // the projector saw the request
	}{
		{"NoToken", "", `{"contest":"pres-nm","action":"call","winner":"alice","reason":"r"}`, 401, tally.EUNAUTHORIZED, tally.Call{}, false},
		{"WrongToken", "Bearer s3cret-tokem", `{"contest":"pres-nm","action":"call","winner":"alice","reason":"r"}`, 401, tally.EUNAUTHORIZED, tally.Call{}, false},
		{"LongerToken", bearer + "x", `{"contest":"pres-nm","action":"call","winner":"alice","reason":"r"}`, 401, tally.EUNAUTHORIZED, tally.Call{}, false},
		{"WrongScheme", "Basic " + token, `{"contest":"pres-nm","action":"call","winner":"alice","reason":"r"}`, 401, tally.EUNAUTHORIZED, tally.Call{}, false},
		{"NotJSON", bearer, `call it`, 400, tally.EINVALID, tally.Call{}, false},
		{"UnknownField", bearer, `{"contest":"pres-nm","action":"call","winner":"alice","reason":"r","by":"me"}`, 400, tally.EINVALID, tally.Call{}, false},
		{"UnknownContest", bearer, `{"contest":"nope","action":"call","winner":"alice","reason":"r"}`, 400, tally.EINVALID, tally.Call{}, false},
		{"UnknownWinner", bearer, `{"contest":"pres-nm","action":"call","winner":"carol","reason":"r"}`, 400, tally.EINVALID, tally.Call{}, false},
		{"NoReason", bearer, `{"contest":"pres-nm","action":"call","winner":"alice"}`, 400, tally.EINVALID, tally.Call{}, false},
		{"RetractWithWinner", bearer, `{"contest":"pres-nm","action":"retract","winner":"alice","reason":"r"}`, 400, tally.EINVALID, tally.Call{}, false},
		{"BadAction", bearer, `{"contest":"pres-nm","action":"declare","winner":"alice","reason":"r"}`, 400, tally.EINVALID, tally.Call{}, false},
		{"TooLarge", bearer, `{"contest":"pres-nm","action":"call","winner":"alice","reason":"` + strings.Repeat("x", 20000) + `"}`, 413, tally.ETOOLARGE, tally.Call{}, false},
		{"Call", bearer, `{"contest":"pres-nm","action":"call","winner":"alice","reason":"AP and state data agree"}`, 200, "",
			tally.Call{Contest: "pres-nm", Status: tally.CallCalled, Winner: "alice", By: "admin", Reason: "AP and state data agree"}, true},
		{"LowerCaseScheme", "bearer " + token, `{"contest":"gov-nm","action":"call","winner":"dan","reason":"r"}`, 200, "",
			tally.Call{Contest: "gov-nm", Status: tally.CallCalled, Winner: "dan", By: "admin", Reason: "r"}, true},
		{"Retract", bearer, `{"contest":"pres-nm","action":"retract","reason":"premature"}`, 200, "",
			tally.Call{Contest: "pres-nm", Status: tally.CallRetracted, By: "admin", Reason: "premature"}, true},
		{"ProjectorForbids", bearer, `{"contest":"pres-nm","action":"call","winner":"bob","reason":"refuse:forbidden"}`, 403, tally.EFORBIDDEN, tally.Call{}, true},
		{"ProjectorRefuses", bearer, `{"contest":"pres-nm","action":"call","winner":"bob","reason":"refuse:invalid"}`, 400, tally.EINVALID, tally.Call{}, true},
		{"ProjectorFails", bearer, `{"contest":"pres-nm","action":"call","winner":"bob","reason":"refuse:internal"}`, 500, tally.EINTERNAL, tally.Call{}, true},
		{"ProjectorSilent", bearer, `{"contest":"pres-nm","action":"call","winner":"bob","reason":"ignore"}`, 503, tally.EUNAVAILABLE, tally.Call{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.calls())
			st, h, body := postAdmin(t, v.base, tt.auth, tt.body)
			if st != tt.status {
				t.Fatalf("status = %d, want %d: %s", st, tt.status, body)
			}
			if h.Get("Cache-Control") != "no-store" || h.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("headers = %v, want no-store and no CORS", h)
			}
			if tt.code != "" {
				var e errorJSON
				mustJSON(t, body, &e)
				if e.Error.Code != tt.code || e.Error.Message == "" {
					t.Errorf("error = %s, want code %s", body, tt.code)
				}
				if tt.status == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate = %q", h.Get("WWW-Authenticate"))
				}
			} else {
				var got tally.Call
				mustJSON(t, body, &got)
				got.At = time.Time{}
				if got.Contest != tt.want.Contest || got.Status != tt.want.Status || got.Winner != tt.want.Winner ||
					got.By != tt.want.By || got.Reason != tt.want.Reason {
					t.Errorf("call = %+v, want %+v", got, tt.want)
				}
			}
			// The projector hears only valid, authorised requests, made by "admin".
			calls := f.calls()
			if asked := len(calls) > before; asked != tt.asked {
				t.Fatalf("projector asked = %v, want %v", asked, tt.asked)
			}
			if tt.asked {
				if last := calls[len(calls)-1]; last.By != "admin" {
					t.Errorf("request By = %q, want admin", last.By)
				}
			}
		})
	}
}

func TestAdminCallNoProjector(t *testing.T) {
	v := MustEnv(t, func(c *gateway.Config) { c.AdminToken = "t" })
	start := time.Now()
	st, h, body := postAdmin(t, v.base, "Bearer t", `{"contest":"pres-nm","action":"call","winner":"alice","reason":"r"}`)
	var e errorJSON
	mustJSON(t, body, &e)
	if st != http.StatusServiceUnavailable || e.Error.Code != tally.EUNAVAILABLE || h.Get("Retry-After") == "" {
		t.Errorf("no projector = %d %s, want 503 unavailable", st, body)
	}
	if d := time.Since(start); d > gateway.DefaultAdminTimeout/2 {
		t.Errorf("no responder took %s: want an immediate answer", d)
	}
}
