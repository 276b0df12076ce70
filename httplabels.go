package tally

import "net/http"

// MethodLabel is an HTTP method as a metric label: the standard methods
// as they are, anything else "other", so that the label stays bounded.
func MethodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// StatusClass is an HTTP status as a metric label: "2xx", "4xx", ...,
// or "other".
func StatusClass(status int) string {
	if i := status/100 - 1; i >= 0 && i < len(statusClasses) {
		return statusClasses[i]
	}
	return "other"
}
