// Package webhook calls mediad's webhooks: HTTP POSTs of JSON to URLs
// configured per event.
//
// # Decisions and notifications
//
// on_publish and on_play are decisions (Hooks.Decide): the session waits for
// the answer, and only it does. A 2xx answer allows; any other answer,
// a redirect included, refuses; so does no answer within Config.Timeout,
// unless Config.FailOpen makes that allow.
//
// on_publish_done, on_play_done, on_record_done and on_upgrade are
// notifications (Hooks.Notify): queued in an outbox and delivered at least
// once, in order within a lane, retried after 1 s, 2 s, 4 s... up to 30 s
// between attempts, until Config.RetryFor after the event; then dropped
// with one error line. A lane is a stream ("app/key") or, for on_upgrade,
// the upgrade verdicts; it is ordered per URL, each URL having its own
// senders, so a receiver that is down or slow holds up only the events sent
// to it. The outbox holds at most Config.MaxPending notifications and drops
// the oldest past that.
//
// # Requests
//
// Every request is a POST with Content-Type: application/json,
// User-Agent: mediad, an Idempotency-Key (unique per notification and kept
// across its retries and across upgrades; unique per call for a decision)
// and, when Config.Secret is set, X-Mediad-Signature: sha256=<hex>, the
// HMAC-SHA256 of the exact body bytes under the secret. The body is one
// JSON object:
//
//	{"event": "on_record_done", "id": "<Idempotency-Key>",
//	 "app": "live", "key": "cam1", "query": "token=x", "addr": "10.0.0.7:51234",
//	 "stream_id": 42, "server_id": "edge-1", "time": "2026-07-01T12:00:00.123Z",
//	 "path": "/rec/live/cam1/0001.flv", "start": "2026-07-01T11:50:00.000Z", "duration_s": 600.0}
//
// The event's own fields (RecordFields for on_record_done; the verdict for
// on_upgrade) are merged at top level; a field named like a common one is
// overridden by it. "time" is when the event happened, RFC 3339 in UTC with
// milliseconds; the body of a notification is fixed at Notify, so a retry
// or a resend by the next process is byte-identical.
//
// Answers are read up to 64 KiB; a longer one has its connection dropped.
// Redirects are never followed.
//
// # Upgrades
//
// The outbox crosses an upgrade in state.Process (state.Outbox). The old
// process, once its sessions are parked:
//
//	hooks.Pause()             // no new attempt starts
//	hooks.WaitIdle(ctx)       // optional, bounded: lets attempts in flight finish
//	o := hooks.Export()
//	proc.Outbox = &o
//
// and on rollback hooks.Resume(). The new process calls
// hooks.Restore(*proc.Outbox) before or after Start. A notification queued
// in the old process is then sent once, by the new one; twice only when an
// attempt in flight at Export succeeds afterwards, and then under the same
// Idempotency-Key with the same body. A receiver should therefore treat a
// repeated Idempotency-Key as already done.
//
// A Hooks made from a Config without URLs is the "no webhooks" form, cheap
// and inert; a nil *Hooks is not valid.
package webhook
