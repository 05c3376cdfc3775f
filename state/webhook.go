package state

// Outbox is what package ingest/webhook had not yet delivered when the
// process handed over, and its counters, so that the next process sends the
// rest and its metrics continue. It travels inside Process.
type Outbox struct {
	// Pending is in the order the notifications were created, oldest
	// first; within a lane that is the order they must be delivered in.
	Pending []Notification `msgpack:"pending"`
	Counts  WebhookCounts  `msgpack:"counts"`
}

// Notification is one webhook call still owed to a receiver. Body holds the
// exact bytes to POST, signature and all derived from them, so that a
// resend by another process is byte-identical; the URL is not kept, since
// the process that sends it posts to the URL its own configuration names
// for Event.
type Notification struct {
	// ID is the Idempotency-Key, fixed when the notification was created.
	ID    string `msgpack:"id"`
	Event string `msgpack:"event"`
	// Lane orders delivery: "app/key" for a stream's events, "upgrade" for
	// upgrade verdicts.
	Lane    string `msgpack:"lane"`
	Body    []byte `msgpack:"body"`
	Created int64  `msgpack:"created"` // Unix ns
	// Attempts counts the failed attempts so far, which sets the next
	// backoff; NextAttempt (Unix ns) is when the next may start, 0 for at
	// once.
	Attempts    int   `msgpack:"attempts"`
	NextAttempt int64 `msgpack:"next_attempt"`
}

// WebhookCounts are the webhook counters over the service's life.
type WebhookCounts struct {
	Delivered uint64 `msgpack:"delivered"`
	// Retries counts failed attempts that were followed by another.
	Retries uint64 `msgpack:"retries"`
	// Dropped counts notifications given up: past the retry bound, pushed
	// out of a full outbox, or no longer configured after an upgrade.
	Dropped uint64 `msgpack:"dropped"`
	// Decisions by outcome: a 2xx answer, any other answer, no answer.
	DecideAllowed uint64 `msgpack:"decide_allowed"`
	DecideRefused uint64 `msgpack:"decide_refused"`
	DecideErrors  uint64 `msgpack:"decide_errors"`
}
