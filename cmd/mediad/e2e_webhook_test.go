package main

// End-to-end tests of webhooks: the real binary calls a real HTTP receiver
// run by the test. on_publish and on_play decide (2xx allows; a refusal, or
// silence past --webhook-timeout, refuses; --webhook-fail-open allows on
// silence); the notifications are delivered at least once, in order per
// stream, under one Idempotency-Key per event, across upgrades and across a
// receiver that is down; every body is signed with --webhook-secret.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hookSecret signs every body in these tests.
const hookSecret = "e2e-webhook-secret"

// notifyTimeout bounds the delivery of every pending notification once
// the receiver answers again: attempts are at most 30 s apart.
const notifyTimeout = 30*time.Second + quickTimeout

// hookDelivery is one request the receiver took.
type hookDelivery struct {
	at      time.Time // arrival
	method  string
	path    string
	body    []byte
	fields  map[string]any // nil if the body is not a JSON object
	idemKey string
	sig     string
	sigOK   bool // sig is sha256=<hex HMAC-SHA256 of body under hookSecret>
	status  int  // the receiver's answer
	// answered: the client still waited when the answer was written.
	answered bool
}

// str is a body field as text; numbers as JSON writes them.
func (d hookDelivery) str(key string) string {
	switch v := d.fields[key].(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case nil:
		return ""
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

func (d hookDelivery) has(key string) bool {
	_, ok := d.fields[key]
	return ok
}

func (d hookDelivery) event() string  { return d.str("event") }
func (d hookDelivery) stream() string { return d.str("app") + "/" + d.str("key") }
func (d hookDelivery) accepted() bool { return d.answered && d.status/100 == 2 }

func (d hookDelivery) String() string {
	return fmt.Sprintf("%s %s %s -> %d Idempotency-Key=%q %s", d.at.Format("15:04:05.000"), d.method, d.path, d.status, d.idemKey, d.body)
}

// hookIdentity names the event a notification reports, whatever the
// attempt: what a duplicate shares with its original.
func hookIdentity(d hookDelivery) string {
	switch d.event() {
	case "on_record_done":
		return "on_record_done " + d.stream() + " " + d.str("path")
	case "on_upgrade":
		return fmt.Sprintf("on_upgrade pid %s -> %s", d.str("old_pid"), d.str("new_pid"))
	default:
		return d.event() + " " + d.stream()
	}
}

// hookPolicy answers a delivery: a status, after a delay.
type hookPolicy func(d hookDelivery) (status int, delay time.Duration)

// hookReceiver is the test's webhook receiver, on 127.0.0.1. It keeps every
// request, and can go down and come back on the same address.
type hookReceiver struct {
	addr    string
	policy  hookPolicy
	closing chan struct{} // closed at the end of the test: delayed answers go

	mu      sync.Mutex
	srv     *httptest.Server // nil while down
	got     []hookDelivery
	changed chan struct{} // closed and replaced on every delivery
}

func newHookReceiver(t *testing.T, policy hookPolicy) *hookReceiver {
	t.Helper()
	h := &hookReceiver{policy: policy, closing: make(chan struct{}), changed: make(chan struct{})}
	h.up(t, "127.0.0.1:0")
	t.Cleanup(func() {
		close(h.closing)
		h.down()
		if t.Failed() {
			t.Logf("webhook receiver: %d requests:\n%s", len(h.deliveries()), describeDeliveries(h.deliveries(), 30))
		}
	})
	return h
}

// up starts serving on addr.
func (h *hookReceiver) up(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("webhook receiver: listen on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(h.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	h.mu.Lock()
	h.srv, h.addr = srv, ln.Addr().String()
	h.mu.Unlock()
}

// down closes the listener and every connection: mediad's attempts are
// refused until up.
func (h *hookReceiver) down() {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

func (h *hookReceiver) url(path string) string { return "http://" + h.addr + "/" + path }

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	d := hookDelivery{at: time.Now(), method: r.Method, path: r.URL.Path, body: body,
		idemKey: r.Header.Get("Idempotency-Key"), sig: r.Header.Get("X-Mediad-Signature")}
	if err == nil {
		if json.Unmarshal(body, &d.fields) != nil {
			d.fields = nil
		}
	}
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write(body)
	d.sigOK = hmac.Equal([]byte(d.sig), []byte("sha256="+hex.EncodeToString(mac.Sum(nil))))
	var status int
	delay := time.Duration(0)
	if d.fields == nil {
		status = http.StatusBadRequest
	} else {
		status, delay = h.policy(d)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		case <-h.closing:
		}
	}
	d.status, d.answered = status, r.Context().Err() == nil
	// Kept before the answer goes: once mediad has it, so has the test.
	h.mu.Lock()
	h.got = append(h.got, d)
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
	w.WriteHeader(status)
}

// deliveries returns every request so far, in order of arrival.
func (h *hookReceiver) deliveries() []hookDelivery {
	ds, _ := h.snapshot()
	return ds
}

func (h *hookReceiver) snapshot() ([]hookDelivery, chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ds := slices.Clone(h.got)
	slices.SortStableFunc(ds, func(a, b hookDelivery) int { return a.at.Compare(b.at) })
	return ds, h.changed
}

// wait waits until done accepts the deliveries so far; after timeout it
// fails the test with what missing says.
func (h *hookReceiver) wait(t *testing.T, timeout time.Duration, what string, done func([]hookDelivery) bool, missing func([]hookDelivery) string) []hookDelivery {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ds, changed := h.snapshot()
		if done(ds) {
			return ds
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("webhook receiver: no %s within %v: %s", what, timeout, missing(ds))
		}
	}
}

// waitDelivery waits for a request that match accepts, answered or not
// (a decision mediad gave up on is not), and returns the first.
func (h *hookReceiver) waitDelivery(t *testing.T, timeout time.Duration, what string, match func(hookDelivery) bool) hookDelivery {
	t.Helper()
	ds := h.wait(t, timeout, what, func(ds []hookDelivery) bool {
		return slices.IndexFunc(ds, match) >= 0
	}, func(ds []hookDelivery) string {
		return fmt.Sprintf("%d requests:\n%s", len(ds), describeDeliveries(ds, 20))
	})
	return ds[slices.IndexFunc(ds, match)]
}

// waitAccepted waits for a request that match accepts and that the
// receiver accepted (a 2xx answer mediad waited for).
func (h *hookReceiver) waitAccepted(t *testing.T, timeout time.Duration, what string, match func(hookDelivery) bool) hookDelivery {
	t.Helper()
	return h.waitDelivery(t, timeout, what+" accepted", func(d hookDelivery) bool { return match(d) && d.accepted() })
}

func describeDeliveries(ds []hookDelivery, n int) string {
	if len(ds) == 0 {
		return "\t(none)"
	}
	var b strings.Builder
	if len(ds) > n {
		fmt.Fprintf(&b, "\t... (%d before)\n", len(ds)-n)
		ds = ds[len(ds)-n:]
	}
	for _, d := range ds {
		b.WriteString("\t" + d.String() + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

func isHook(event, app, key string) func(hookDelivery) bool {
	return func(d hookDelivery) bool { return d.event() == event && d.str("app") == app && d.str("key") == key }
}

func filterHooks(ds []hookDelivery, match func(hookDelivery) bool) []hookDelivery {
	var out []hookDelivery
	for _, d := range ds {
		if match(d) {
			out = append(out, d)
		}
	}
	return out
}

// checkRequests checks what every request must be: a POST of a JSON
// object naming its event, to the URL configured for that event (eventOf
// maps a path to the events it receives), with an Idempotency-Key and a
// valid signature.
func checkRequests(t *testing.T, ds []hookDelivery, eventOf func(path string) []string) {
	t.Helper()
	bad := 0
	fail := func(d hookDelivery, format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf("webhook request %s: %s", d, fmt.Sprintf(format, args...))
		}
	}
	for _, d := range ds {
		switch {
		case d.method != http.MethodPost:
			fail(d, "method %s, want POST", d.method)
		case d.fields == nil:
			fail(d, "body is not a JSON object")
		case !slices.Contains(eventOf(d.path), d.event()):
			fail(d, "event %q sent to %s, which is configured for %q", d.event(), d.path, eventOf(d.path))
		case d.idemKey == "":
			fail(d, "no Idempotency-Key header")
		case !d.sigOK:
			fail(d, "X-Mediad-Signature %q is not sha256=<hex HMAC-SHA256 of the body> under the secret", d.sig)
		}
	}
	if bad > 10 {
		t.Errorf("... %d bad webhook requests in all", bad)
	}
}

// streamFieldProblems lists what is wrong with the fields every event
// about a session has.
func streamFieldProblems(d hookDelivery, app, key string) []string {
	var out []string
	if d.str("app") != app || d.str("key") != key {
		out = append(out, fmt.Sprintf("app/key %q/%q, want %s/%s", d.str("app"), d.str("key"), app, key))
	}
	if !strings.HasPrefix(d.str("addr"), "127.0.0.1:") {
		out = append(out, fmt.Sprintf("addr %q, want the client's 127.0.0.1:PORT", d.str("addr")))
	}
	for _, f := range []string{"query", "stream_id", "server_id", "time"} {
		if !d.has(f) {
			out = append(out, fmt.Sprintf("no %q field", f))
		}
	}
	for _, f := range []string{"stream_id", "server_id"} {
		if d.has(f) && d.str(f) == "" {
			out = append(out, fmt.Sprintf("%q is empty", f))
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, d.str("time")); err != nil {
		out = append(out, fmt.Sprintf("time %q is not RFC 3339", d.str("time")))
	}
	return out
}

// checkStreamFields checks the fields every event about a session has.
func checkStreamFields(t *testing.T, d hookDelivery, app, key string) {
	t.Helper()
	for _, p := range streamFieldProblems(d, app, key) {
		t.Errorf("%s: %s", d, p)
	}
}

// problemTally reports each kind of problem once, with how many requests
// have it and the first of them.
type problemTally struct {
	order []string
	count map[string]int
	first map[string]hookDelivery
}

func (p *problemTally) add(problem string, d hookDelivery) {
	if p.count == nil {
		p.count, p.first = map[string]int{}, map[string]hookDelivery{}
	}
	if p.count[problem] == 0 {
		p.order = append(p.order, problem)
		p.first[problem] = d
	}
	p.count[problem]++
}

func (p *problemTally) report(t *testing.T, what string) {
	t.Helper()
	for _, problem := range p.order {
		t.Errorf("%s: %s (%d requests), first: %s", what, problem, p.count[problem], p.first[problem])
	}
}

// TestE2EWebhookDecisions: on_publish and on_play decide. A 2xx answer
// allows, with every field of the call; 403 refuses (ffmpeg's publish or
// play fails, and mediad never starts it); an answer later than
// --webhook-timeout (1 s) refuses, at the timeout. With
// --webhook-fail-open the late answer allows, and 403 still refuses. The
// allowed sessions' on_publish_done and on_play_done follow.
func TestE2EWebhookDecisions(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	clip := shortClip(t, 3)
	publisherSlots.acquire(t, 1)
	const late = 4 * time.Second // the slow receiver's answer; the timeout is 1 s
	decide := func(d hookDelivery) (int, time.Duration) {
		switch d.str("key") {
		case "refused", "private":
			return http.StatusForbidden, 0
		case "slow":
			return http.StatusOK, late
		}
		return http.StatusOK, 0
	}
	eventOf := func(path string) []string { return []string{strings.TrimPrefix(path, "/")} }

	hooks := newHookReceiver(t, decide)
	srv := startServer(t, "--segment", "0",
		"--on-publish", hooks.url("on_publish"), "--on-play", hooks.url("on_play"),
		"--on-publish-done", hooks.url("on_publish_done"), "--on-play-done", hooks.url("on_play_done"),
		"--webhook-timeout", "1s", "--webhook-secret", hookSecret)

	// Allowed: a player, then the publish, which carries a query.
	playerPath := filepath.Join(t.TempDir(), "player.flv")
	player := srv.play(t, "live", "allowed", playerPath)
	srv.waitLog(quickTimeout, "play started live/allowed", isMsg("play started", "live", "allowed"))
	pub := srv.publish(t, clip, "live", "allowed?token=abc")
	pub.waitOK(t, publishTimeout)
	player.waitOK(t, quickTimeout)
	segs := srv.recording(t, "live", "allowed")
	if len(segs) != 1 {
		t.Errorf("recorded %d files %q for live/allowed, want 1", len(segs), segs)
	} else {
		checkSamePackets(t, segs[0], mustProbe(t, segs[0]), clip.packets)
	}
	if start, offset := checkRelay(t, "allowed player", mustProbe(t, playerPath), clip.packets); start != 0 || offset != 0 {
		t.Errorf("the allowed player joined before the publish but starts at source frame %d, dts offset %d", start, offset)
	}

	// Refused by the receiver.
	srv.burst(t, clip, "live", "refused").waitRefused(t, quickTimeout)
	srv.play(t, "live", "private", filepath.Join(t.TempDir(), "private.flv")).waitRefused(t, quickTimeout)

	// Refused by the timeout: at 1 s, not when the late answer comes.
	srv.burst(t, clip, "live", "slow").waitRefused(t, quickTimeout)
	refusedAt := time.Now()
	ask := hooks.waitDelivery(t, quickTimeout+late, "on_publish for live/slow", isHook("on_publish", "live", "slow"))
	if took := refusedAt.Sub(ask.at); took >= late-500*time.Millisecond {
		t.Errorf("the publish of live/slow was refused %v after on_publish was asked: not at the 1 s --webhook-timeout but at the %v answer", took.Round(time.Millisecond), late)
	} else {
		t.Logf("live/slow refused %v after on_publish was asked (timeout 1 s)", took.Round(time.Millisecond))
	}

	for _, key := range []string{"refused", "slow"} {
		if n := srv.logged(isMsg("publish started", "live", key)); len(n) != 0 {
			t.Errorf("on_publish refused live/%s, yet mediad started it: %s", key, describeLines(n))
		}
	}
	if n := srv.logged(isMsg("play started", "live", "private")); len(n) != 0 {
		t.Errorf("on_play refused live/private, yet mediad started it: %s", describeLines(n))
	}

	// The allowed sessions' notifications.
	hooks.waitAccepted(t, notifyTimeout, "on_publish_done for live/allowed", isHook("on_publish_done", "live", "allowed"))
	hooks.waitAccepted(t, notifyTimeout, "on_play_done for live/allowed", isHook("on_play_done", "live", "allowed"))

	ds := hooks.deliveries()
	checkRequests(t, ds, eventOf)
	decisionKeys := map[string]string{}
	for _, c := range []struct {
		event, key string
	}{{"on_publish", "allowed"}, {"on_publish", "refused"}, {"on_publish", "slow"}, {"on_play", "allowed"}, {"on_play", "private"}} {
		got := filterHooks(ds, isHook(c.event, "live", c.key))
		if len(got) != 1 {
			t.Errorf("%d %s calls for live/%s, want 1:\n%s", len(got), c.event, c.key, describeDeliveries(got, 10))
			continue
		}
		checkStreamFields(t, got[0], "live", c.key)
		if prev, dup := decisionKeys[got[0].idemKey]; dup {
			t.Errorf("%s for live/%s has the Idempotency-Key of %s: each decision is a call of its own", c.event, c.key, prev)
		}
		decisionKeys[got[0].idemKey] = c.event + " live/" + c.key
	}
	if p := filterHooks(ds, isHook("on_publish", "live", "allowed")); len(p) == 1 && !strings.Contains(p[0].str("query"), "token=abc") {
		t.Errorf("on_publish for live/allowed: query %q, want the publisher's token=abc", p[0].str("query"))
	}
	for _, c := range []struct{ event, key string }{{"on_publish_done", "allowed"}, {"on_play_done", "allowed"}} {
		got := filterHooks(ds, isHook(c.event, "live", c.key))
		checkStreamFields(t, got[0], "live", c.key)
		if keys := idemKeys(got); len(keys) != 1 {
			t.Errorf("%s for live/%s came %d times under %d Idempotency-Keys %q: a retry keeps its key", c.event, c.key, len(got), len(keys), keys)
		}
	}

	// Fail-open: the late answer allows; an explicit 403 still refuses.
	open := newHookReceiver(t, decide)
	srvOpen := startServer(t, "--segment", "0", "--on-publish", open.url("on_publish"),
		"--webhook-timeout", "1s", "--webhook-fail-open", "--webhook-secret", hookSecret)
	srvOpen.burst(t, clip, "live", "slow").waitOK(t, publishTimeout)
	segs = srvOpen.recording(t, "live", "slow")
	if len(segs) != 1 {
		t.Errorf("fail-open: recorded %d files %q for live/slow, want 1", len(segs), segs)
	} else {
		checkSamePackets(t, "fail-open: "+segs[0], mustProbe(t, segs[0]), clip.packets)
	}
	srvOpen.burst(t, clip, "live", "refused").waitRefused(t, quickTimeout)
	if n := srvOpen.logged(isMsg("publish started", "live", "refused")); len(n) != 0 {
		t.Errorf("fail-open: the receiver answered 403 for live/refused, yet mediad started it: %s", describeLines(n))
	}
	open.waitDelivery(t, quickTimeout+late, "fail-open: on_publish for live/slow", isHook("on_publish", "live", "slow"))
	checkRequests(t, open.deliveries(), eventOf)
}

func idemKeys(ds []hookDelivery) []string {
	var keys []string
	for _, d := range ds {
		if !slices.Contains(keys, d.idemKey) {
			keys = append(keys, d.idemKey)
		}
	}
	return keys
}

// laneEvent is one event expected in a lane (a stream, or the upgrades),
// in the order it happens.
type laneEvent struct {
	identity string
	// unordered: its place relative to the event before it is not fixed
	// (the last segment's on_record_done and on_publish_done both follow
	// the end of the publish).
	unordered bool
}

// checkNotifications checks the notifications the receiver got against
// the lanes expected, each a list of events in the order they happen:
//   - every event was accepted (a 2xx answer) at least once;
//   - every attempt of one event carries one Idempotency-Key, and no two
//     events share one;
//   - no event was attempted before the one before it in its lane was
//     accepted: delivery in order per stream;
//   - nothing else was sent.
func checkNotifications(t *testing.T, ds []hookDelivery, lanes map[string][]laneEvent) {
	t.Helper()
	type seen struct {
		first, accepted time.Time
		keys            []string
		n               int
	}
	byID := map[string]*seen{}
	keyOwner := map[string]string{}
	for _, d := range ds {
		if !strings.HasSuffix(d.event(), "_done") && d.event() != "on_upgrade" {
			continue // a decision
		}
		id := hookIdentity(d)
		s := byID[id]
		if s == nil {
			s = &seen{first: d.at}
			byID[id] = s
		}
		s.n++
		if d.accepted() && s.accepted.IsZero() {
			s.accepted = d.at
		}
		if !slices.Contains(s.keys, d.idemKey) {
			s.keys = append(s.keys, d.idemKey)
		}
		if other, ok := keyOwner[d.idemKey]; ok && other != id {
			t.Errorf("Idempotency-Key %q is on two events: %s and %s", d.idemKey, other, id)
		}
		keyOwner[d.idemKey] = id
	}
	expected := map[string]bool{}
	missing := 0
	for lane, evs := range lanes {
		for i, ev := range evs {
			expected[ev.identity] = true
			s := byID[ev.identity]
			if s == nil || s.accepted.IsZero() {
				missing++
				n := 0
				if s != nil {
					n = s.n
				}
				t.Errorf("lane %s: %s never accepted (%d attempts): lost", lane, ev.identity, n)
				continue
			}
			if len(s.keys) != 1 {
				t.Errorf("lane %s: %s delivered %d times under %d Idempotency-Keys %q: a duplicate must carry its original's key", lane, ev.identity, s.n, len(s.keys), s.keys)
			}
			if i == 0 {
				continue
			}
			// The event this one must follow: the one before it, or for
			// an unordered one, the one before that.
			j := i - 1
			if ev.unordered && j > 0 {
				j--
			}
			prev := byID[evs[j].identity]
			if prev == nil || prev.accepted.IsZero() {
				continue // reported as lost
			}
			if s.first.Before(prev.accepted) {
				t.Errorf("lane %s out of order: %s first sent at %s, before %s was accepted at %s",
					lane, ev.identity, s.first.Format("15:04:05.000"), evs[j].identity, prev.accepted.Format("15:04:05.000"))
			}
			// Of an unordered pair, whichever went first is accepted
			// before the other is sent.
			if other := byID[evs[i-1].identity]; ev.unordered && other != nil && !other.accepted.IsZero() {
				a, b, an, bn := other, s, evs[i-1].identity, ev.identity
				if s.first.Before(other.first) {
					a, b, an, bn = s, other, ev.identity, evs[i-1].identity
				}
				if b.first.Before(a.accepted) {
					t.Errorf("lane %s out of order: %s first sent at %s, before %s, sent first, was accepted at %s",
						lane, bn, b.first.Format("15:04:05.000"), an, a.accepted.Format("15:04:05.000"))
				}
			}
		}
	}
	for id, s := range byID {
		if !expected[id] {
			t.Errorf("unexpected notification %s (%d attempts)", id, s.n)
		}
	}
	if missing > 0 {
		t.Errorf("%d notifications lost", missing)
	}
}

// streamLane is the events of one broadcast with these segments, in
// order: a record_done per segment, then publish_done, which may come
// before or after the last segment's.
func streamLane(app, key string, segs []string) []laneEvent {
	var evs []laneEvent
	for _, s := range segs {
		evs = append(evs, laneEvent{identity: "on_record_done " + app + "/" + key + " " + s})
	}
	last := len(evs) - 1
	evs = append(evs, laneEvent{identity: "on_publish_done " + app + "/" + key})
	if last >= 0 {
		// publish_done and the last record_done: either order.
		evs[last+1].unordered = true
	}
	return evs
}

// checkRecordDone checks the fields of every on_record_done.
func checkRecordDone(t *testing.T, ds []hookDelivery) {
	t.Helper()
	var tally problemTally
	for _, d := range filterHooks(ds, func(d hookDelivery) bool { return d.event() == "on_record_done" }) {
		if _, err := time.Parse(time.RFC3339Nano, d.str("start")); err != nil {
			tally.add(fmt.Sprintf("start %q is not RFC 3339", d.str("start")), d)
		}
		if f, ok := d.fields["duration_s"].(float64); !ok || f <= 0 {
			tally.add(`no positive "duration_s" (the segment's length in seconds)`, d)
		}
		for _, p := range streamFieldProblems(d, d.str("app"), d.str("key")) {
			tally.add(p, d)
		}
	}
	tally.report(t, "on_record_done")
}

// TestE2EWebhookNotificationsAcrossUpgrades: two broadcasts recorded in
// 2 s segments while the receiver answers 503 to every notification and
// mediad is upgraded five times, alternating two builds; the first
// broadcast ends before the last two, so its on_publish_done is pending
// across them too. Then the receiver recovers: every on_record_done,
// on_publish_done and on_upgrade arrives, in order per stream, and a
// duplicate only ever under its original's Idempotency-Key.
func TestE2EWebhookNotificationsAcrossUpgrades(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	bins := upgradeBuilds(t)
	src := source(t)
	short := cutClip(t, src, 8)
	publisherSlots.acquire(t, 2)
	var failing atomic.Bool
	failing.Store(true)
	hooks := newHookReceiver(t, func(d hookDelivery) (int, time.Duration) {
		if d.path == "/on_publish" || !failing.Load() {
			return http.StatusOK, 0
		}
		return http.StatusServiceUnavailable, 0
	})
	// One URL for every notification, as a receiver that orders them
	// would have it.
	notify := hooks.url("notify")
	srv := startUpgradable(t, bins.a, false, "--segment", "2s",
		"--on-publish", hooks.url("on_publish"), "--on-publish-done", notify, "--on-record-done", notify, "--on-upgrade", notify,
		"--webhook-timeout", "1s", "--webhook-secret", hookSecret, "--webhook-retry-for", "1h")

	p1 := srv.publish(t, short, "live", "w1")
	p2 := srv.publish(t, src, "live", "w2")
	srv.waitLog(quickTimeout, "publish started live/w1", isMsg("publish started", "live", "w1"))
	srv.waitLog(quickTimeout, "publish started live/w2", isMsg("publish started", "live", "w2"))

	rng := seededRand(t)
	builds := [2]mediadBuild{bins.b, bins.a}
	const upgrades = 5
	var verdicts []Verdict
	for i := range upgrades {
		if i == 3 {
			// The last two upgrades come after w1 ended: its
			// on_publish_done and last on_record_done are pending.
			p1.waitOK(t, publishTimeout)
			srv.waitLog(quickTimeout, "recording finalised live/w1", isMsg("recording finalised", "live", "w1"))
			failed := filterHooks(hooks.deliveries(), func(d hookDelivery) bool {
				return d.event() == "on_record_done" && d.status == http.StatusServiceUnavailable
			})
			if len(failed) == 0 {
				t.Errorf("no on_record_done was attempted before upgrade %d: nothing was pending across the upgrades", i+1)
			}
		}
		select {
		case <-p2.done:
			t.Fatalf("the publisher of live/w2 ended before upgrade %d of %d: %v", i+1, upgrades, p2.err)
		case <-time.After(randomGap(rng, 1000*time.Millisecond, 2000*time.Millisecond)):
		}
		v := srv.mustUpgrade(t, builds[i%2])
		logVerdict(t, i+1, v)
		verdicts = append(verdicts, v)
		running(t, p2, fmt.Sprintf("after upgrade %d", i+1))
	}
	p2.waitOK(t, publishTimeout)
	segs1 := srv.recording(t, "live", "w1")
	segs2 := srv.recording(t, "live", "w2")
	if len(segs1) < 3 || len(segs2) < 5 {
		t.Errorf("recorded %d and %d segments of 2 s for an 8 s and a 20 s broadcast: too few to show anything", len(segs1), len(segs2))
	}
	if n := len(filterHooks(hooks.deliveries(), func(d hookDelivery) bool { return d.accepted() && d.path == "/notify" })); n != 0 {
		t.Fatalf("%d notifications accepted while the receiver answered only 503", n)
	}

	failing.Store(false)
	recovered := time.Now()
	lanes := map[string][]laneEvent{
		"live/w1": streamLane("live", "w1", segs1),
		"live/w2": streamLane("live", "w2", segs2),
	}
	for _, v := range verdicts {
		lanes["upgrades"] = append(lanes["upgrades"], laneEvent{identity: fmt.Sprintf("on_upgrade pid %d -> %d", v.OldPID, v.NewPID)})
	}
	want := 0
	for _, evs := range lanes {
		want += len(evs)
	}
	ds := hooks.wait(t, notifyTimeout, fmt.Sprintf("%d notifications accepted", want), func(ds []hookDelivery) bool {
		return acceptedIdentities(ds) >= want
	}, func(ds []hookDelivery) string {
		return fmt.Sprintf("%d of %d accepted; requests:\n%s", acceptedIdentities(ds), want, describeDeliveries(ds, 30))
	})
	t.Logf("%d notifications accepted within %v of the receiver's recovery; %d requests in all",
		want, time.Since(recovered).Round(time.Millisecond), len(ds))

	checkRequests(t, ds, func(path string) []string {
		if path == "/notify" {
			return []string{"on_publish_done", "on_record_done", "on_upgrade"}
		}
		return []string{strings.TrimPrefix(path, "/")}
	})
	checkNotifications(t, ds, lanes)
	checkRecordDone(t, ds)
	// An upgrade is no new publish: nobody asks again.
	for _, key := range []string{"w1", "w2"} {
		if got := filterHooks(ds, isHook("on_publish", "live", key)); len(got) != 1 {
			t.Errorf("%d on_publish calls for live/%s across %d upgrades, want 1: a moved session is not authorised again:\n%s",
				len(got), key, upgrades, describeDeliveries(got, 10))
		}
	}
	for _, d := range filterHooks(ds, func(d hookDelivery) bool { return d.event() == "on_upgrade" }) {
		if d.str("outcome") != "success" {
			t.Errorf("%s: outcome %q, want success", d, d.str("outcome"))
		}
	}
}

// acceptedIdentities counts the notifications accepted at least once.
func acceptedIdentities(ds []hookDelivery) int {
	ids := map[string]bool{}
	for _, d := range ds {
		if d.accepted() && d.path == "/notify" {
			ids[hookIdentity(d)] = true
		}
	}
	return len(ids)
}

// TestE2EWebhookReceiverDown: the receiver is down (its port closed) for
// 10 s while two broadcasts are recorded in 2 s segments and end; once it
// is back on the same address it gets every on_record_done and
// on_publish_done, in order per stream.
func TestE2EWebhookReceiverDown(t *testing.T) {
	requireE2E(t, "ffmpeg", "ffprobe")
	t.Parallel()
	clip := cutClip(t, source(t), 8)
	publisherSlots.acquire(t, 1)
	const downFor = 10 * time.Second
	hooks := newHookReceiver(t, func(hookDelivery) (int, time.Duration) { return http.StatusOK, 0 })
	notify := hooks.url("notify")
	addr := hooks.addr
	hooks.down()
	downAt := time.Now()
	srv := startServer(t, "--segment", "2s", "--on-publish-done", notify, "--on-record-done", notify,
		"--webhook-timeout", "1s", "--webhook-secret", hookSecret)

	keys := []string{"d1", "d2"}
	var pubs []*childProc
	for _, key := range keys {
		pubs = append(pubs, srv.burst(t, clip, "live", key))
	}
	lanes := map[string][]laneEvent{}
	for i, key := range keys {
		pubs[i].waitOK(t, publishTimeout)
		segs := srv.recording(t, "live", key)
		if len(segs) < 3 {
			t.Errorf("live/%s: %d segments of 2 s for an 8 s broadcast: too few to show anything", key, len(segs))
		}
		lanes["live/"+key] = streamLane("live", key, segs)
	}
	select {
	case <-srv.proc.done:
		t.Fatalf("mediad exited while the receiver was down: %v", srv.proc.err)
	case <-time.After(time.Until(downAt.Add(downFor))):
	}
	hooks.up(t, addr)
	back := time.Now()

	want := 0
	for _, evs := range lanes {
		want += len(evs)
	}
	ds := hooks.wait(t, notifyTimeout, fmt.Sprintf("%d notifications accepted", want), func(ds []hookDelivery) bool {
		return acceptedIdentities(ds) >= want
	}, func(ds []hookDelivery) string {
		return fmt.Sprintf("%d of %d accepted; requests:\n%s", acceptedIdentities(ds), want, describeDeliveries(ds, 30))
	})
	t.Logf("%d notifications accepted within %v of the receiver's return after %v down", want, time.Since(back).Round(time.Millisecond), back.Sub(downAt).Round(time.Millisecond))
	checkRequests(t, ds, func(string) []string { return []string{"on_publish_done", "on_record_done"} })
	checkNotifications(t, ds, lanes)
	checkRecordDone(t, ds)
}
