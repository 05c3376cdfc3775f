package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/rs/zerolog"
)

// Event names a webhook; it is also the "event" field of every body.
type Event string

// The events. EventPublish and EventPlay are decisions (Decide); the others
// are notifications (Notify).
const (
	EventPublish     Event = "on_publish"
	EventPublishDone Event = "on_publish_done"
	EventPlay        Event = "on_play"
	EventPlayDone    Event = "on_play_done"
	EventRecordDone  Event = "on_record_done"
	EventUpgrade     Event = "on_upgrade"
)

func (e Event) decision() bool { return e == EventPublish || e == EventPlay }

func (e Event) notification() bool {
	switch e {
	case EventPublishDone, EventPlayDone, EventRecordDone, EventUpgrade:
		return true
	}
	return false
}

// Defaults for the zero values of Config.
const (
	DefaultTimeout    = 5 * time.Second
	DefaultRetryFor   = time.Hour
	DefaultMaxPending = 100_000
	DefaultSenders    = 4
)

// Config configures the webhooks. Every zero value means the documented
// default.
type Config struct {
	// URLs maps an event to the URL it is posted to. An event absent or
	// mapped to "" is not called: its decision allows, its notifications
	// are not queued. URLs should have passed ValidateURL; an invalid one
	// makes its decisions refuse and its notifications fail until dropped.
	URLs map[Event]string
	// Timeout bounds each request, from connecting to reading the answer;
	// 0 means DefaultTimeout.
	Timeout time.Duration
	// FailOpen makes a decision allow when the receiver gives no answer
	// (timeout, connection refused...). An answer other than 2xx refuses
	// either way.
	FailOpen bool
	// Secret, when set, signs every body: X-Mediad-Signature is
	// "sha256=" and the hex HMAC-SHA256 of the body under Secret.
	Secret string
	// RetryFor bounds how long after its creation a notification is
	// retried before it is dropped; 0 means DefaultRetryFor.
	RetryFor time.Duration
	// MaxPending bounds the notifications held; past it the oldest is
	// dropped. 0 means DefaultMaxPending.
	MaxPending int
	// Senders is how many requests may be in flight at once to each
	// distinct notification URL; 0 means DefaultSenders.
	Senders int
	// ServerID is the "server_id" field of every body.
	ServerID string
	// Log receives drops, failing and recovering receivers; the zero
	// Logger discards.
	Log zerolog.Logger
	// Client sends the requests; nil means a client of this package's
	// own. Whatever is given, redirects are never followed.
	Client *http.Client
}

// ValidateURL checks that raw is an absolute http or https URL, for errors
// at configuration load.
func ValidateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("webhook URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("webhook URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("webhook URL %q: no host", raw)
	}
	return nil
}

// Subject is the session an event is about. For EventUpgrade it is empty.
type Subject struct {
	App, Key string
	// Query is the stream name's query string, without "?".
	Query string
	// Addr is the client's address, host:port.
	Addr     string
	StreamID uint64
}

// StatusError is a decision refused by the receiver's answer.
type StatusError struct {
	Event  Event
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("webhook %s: receiver answered %d %s", e.Event, e.Status, http.StatusText(e.Status))
}

// ErrNotDecision is returned by Decide for an event that is a notification.
var ErrNotDecision = errors.New("not a decision event")
