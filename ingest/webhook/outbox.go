package webhook

import (
	"container/heap"
	"container/list"
	"context"
	"crypto/rand"
	"slices"
	"time"

	"github.com/mediad/mediad/state"
)

// upgradeLane is EventUpgrade's lane; it cannot be a stream's, which always
// has a "/".
const upgradeLane = "upgrade"

// dest is one notification URL: its lanes and the schedule its senders
// work from. All of it is guarded by Hooks.mu, except kick.
type dest struct {
	url   string
	lanes map[string]*lane
	// ready holds the lanes that have a notification and none in flight,
	// the one whose head may be tried soonest first.
	ready laneHeap
	// kick wakes one idle sender; a sender that takes work while more is
	// due kicks the next, so a burst wakes as many as it needs.
	kick chan struct{}
	// failing is set from a failed attempt to the next success, so that a
	// receiver going down and coming back logs two lines, not one per
	// attempt.
	failing bool
}

func (d *dest) signal() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// lane is one stream's (or the upgrade verdicts') notifications to one
// URL, delivered in order: only its head is ever tried.
type lane struct {
	name string
	dest *dest
	q    []*item
	// flying is the notification in flight, nil when none. It is q[0]
	// unless something removed it meanwhile.
	flying *item
	idx    int // in dest.ready; -1 when not there
}

func (l *lane) due() int64 { return l.q[0].n.NextAttempt }

type item struct {
	n    state.Notification
	dest *dest
	lane *lane // nil once removed
	elem *list.Element
	// lastErr is why the last attempt failed, for the line that drops it.
	lastErr string
}

type laneHeap []*lane

func (q laneHeap) Len() int           { return len(q) }
func (q laneHeap) Less(i, j int) bool { return q[i].due() < q[j].due() }
func (q laneHeap) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx, q[j].idx = i, j
}
func (q *laneHeap) Push(x any) {
	l := x.(*lane)
	l.idx = len(*q)
	*q = append(*q, l)
}
func (q *laneHeap) Pop() any {
	old := *q
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	l.idx = -1
	return l
}

// Notify queues ev about s, with the event's own fields merged into the
// body at top level (a field named like a common one is overridden by
// it). It never waits for a receiver, and does nothing when ev has no URL.
// Notifications of one stream to one URL are delivered in the order of
// Notify; EventUpgrade's are ordered among themselves.
func (h *Hooks) Notify(ev Event, s Subject, fields map[string]any) {
	if !ev.notification() {
		h.log.Error().Str("event", string(ev)).Msg("webhook: Notify of an event that is not a notification")
		return
	}
	u := h.urls[ev]
	if u == "" {
		return
	}
	name := s.App + "/" + s.Key
	if ev == EventUpgrade {
		name = upgradeLane
	}
	now := time.Now()
	id := rand.Text()
	body, err := h.body(ev, id, s, now, fields)
	if err != nil {
		h.log.Error().Err(err).Str("lane", name).Msg("webhook: notification dropped")
		h.mu.Lock()
		h.dropped++
		h.mu.Unlock()
		return
	}
	it := &item{n: state.Notification{ID: id, Event: string(ev), Lane: name, Body: body, Created: now.UnixNano()}}
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.dests[u]
	l := h.lane(d, name)
	h.add(it, d, l, -1, nil)
	h.schedule(d, l)
	h.trim(now)
}

// Pause stops new attempts; one in flight finishes, and if it succeeds its
// notification leaves the outbox then. Notify still queues.
func (h *Hooks) Pause() {
	h.mu.Lock()
	h.paused = true
	h.mu.Unlock()
}

// Resume undoes Pause, for an upgrade rolled back.
func (h *Hooks) Resume() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.paused = false
	for _, d := range h.dests {
		d.signal()
	}
}

// WaitIdle waits, after Pause, until no attempt is in flight or ctx is
// done, and returns ctx's error in the latter case. An Export after it
// holds only notifications that no receiver has acknowledged, so the next
// process sends none twice.
func (h *Hooks) WaitIdle(ctx context.Context) error {
	h.mu.Lock()
	idle := h.idle
	h.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Export copies the outbox, oldest first, and the counters, for the next
// process; it takes only the time of the copy. Notifications in flight are
// included: the next process resends them under the same Idempotency-Key
// unless they complete before Export. Body slices are shared with the
// outbox and must not be changed.
func (h *Hooks) Export() state.Outbox {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := state.Outbox{
		Pending: make([]state.Notification, 0, h.all.Len()),
		Counts: state.WebhookCounts{
			Delivered: h.delivered, Retries: h.retries, Dropped: h.dropped,
			DecideAllowed: h.allowed.Load(), DecideRefused: h.refused.Load(), DecideErrors: h.decideErrs.Load(),
		},
	}
	for e := h.all.Front(); e != nil; e = e.Next() {
		o.Pending = append(o.Pending, e.Value.(*item).n)
	}
	return o
}

// Restore takes over the outbox a previous process exported, once. Its
// notifications count as older than any queued here and go to the URL
// configured now for their event; those whose event has no URL any more,
// or that are past RetryFor already, are dropped and logged. Its counters
// are added to ours. It may come after Start, but a lane's order across
// the upgrade holds only for what this process has not sent yet: call it
// before Start, or before the first Notify.
func (h *Hooks) Restore(o state.Outbox) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.delivered += o.Counts.Delivered
	h.retries += o.Counts.Retries
	h.dropped += o.Counts.Dropped
	h.allowed.Add(o.Counts.DecideAllowed)
	h.refused.Add(o.Counts.DecideRefused)
	h.decideErrs.Add(o.Counts.DecideErrors)

	unconfigured := make(map[string]int)
	var expired, invalid int
	// The outbox goes, in its order, before everything queued in this
	// process: in the global order and in each lane, after a notification
	// already in flight.
	first := h.all.Front()
	at := make(map[*lane]int)
	for _, n := range o.Pending {
		ev := Event(n.Event)
		switch {
		case n.ID == "" || n.Lane == "" || len(n.Body) == 0 || !ev.notification():
			invalid++
			continue
		case h.byID[n.ID] != nil:
			continue // restored already
		case h.urls[ev] == "":
			unconfigured[n.Event]++
			continue
		case now.Sub(time.Unix(0, n.Created)) > h.cfg.RetryFor:
			expired++
			continue
		}
		d := h.dests[h.urls[ev]]
		l := h.lane(d, n.Lane)
		pos, seen := at[l]
		if !seen && l.flying != nil && len(l.q) > 0 && l.q[0] == l.flying {
			pos = 1
		}
		at[l] = pos + 1
		// A clock that stepped, or a corrupt value, must not park a
		// notification beyond any bound: it is retried no later than one
		// full backoff from now.
		n.NextAttempt = min(n.NextAttempt, now.Add(h.backoffMax).UnixNano())
		it := &item{n: n}
		h.add(it, d, l, pos, first)
	}
	for l := range at {
		h.schedule(l.dest, l)
	}
	for ev, n := range unconfigured {
		h.dropped += uint64(n)
		h.log.Error().Str("event", ev).Int("dropped", n).Msg("webhook: notifications from the previous process dropped: event no longer configured")
	}
	if expired > 0 {
		h.dropped += uint64(expired)
		h.log.Error().Int("dropped", expired).Dur("retry_for", h.cfg.RetryFor).Msg("webhook: notifications from the previous process dropped: past the retry bound")
	}
	if invalid > 0 {
		h.dropped += uint64(invalid)
		h.log.Error().Int("dropped", invalid).Msg("webhook: notifications from the previous process dropped: invalid")
	}
	h.trim(now)
}

func (h *Hooks) lane(d *dest, name string) *lane {
	l := d.lanes[name]
	if l == nil {
		l = &lane{name: name, dest: d, idx: -1}
		d.lanes[name] = l
	}
	return l
}

// add puts it at position pos of lane l and before mark in the outbox;
// pos -1 and a nil mark mean at the end. h.mu is held.
func (h *Hooks) add(it *item, d *dest, l *lane, pos int, mark *list.Element) {
	it.dest, it.lane = d, l
	if pos < 0 {
		l.q = append(l.q, it)
	} else {
		l.q = slices.Insert(l.q, pos, it)
	}
	if mark != nil {
		it.elem = h.all.InsertBefore(it, mark)
	} else {
		it.elem = h.all.PushBack(it)
	}
	h.byID[it.n.ID] = it
}

// remove takes it out of the outbox. If it is in flight its lane stays
// out of the schedule until the attempt finishes. h.mu is held.
func (h *Hooks) remove(it *item) {
	l, d := it.lane, it.dest
	if l == nil {
		return
	}
	it.lane = nil
	h.all.Remove(it.elem)
	delete(h.byID, it.n.ID)
	if i := slices.Index(l.q, it); i >= 0 {
		l.q = slices.Delete(l.q, i, i+1)
	}
	h.schedule(d, l)
}

// schedule puts l where its state says: in the ready heap when it has a
// notification and none in flight, out of it otherwise, and out of its
// dest once empty. h.mu is held.
func (h *Hooks) schedule(d *dest, l *lane) {
	switch {
	case l.flying != nil:
		// A lane in flight is never in the heap: its sender took it out.
	case len(l.q) == 0:
		if l.idx >= 0 {
			heap.Remove(&d.ready, l.idx)
		}
		delete(d.lanes, l.name)
	case l.idx >= 0:
		heap.Fix(&d.ready, l.idx)
		d.signal()
	default:
		heap.Push(&d.ready, l)
		d.signal()
	}
}

// trim drops the oldest notifications past MaxPending. h.mu is held.
func (h *Hooks) trim(now time.Time) {
	for h.all.Len() > h.cfg.MaxPending {
		it := h.all.Front().Value.(*item)
		h.remove(it)
		h.dropped++
		h.overflowQuiet++
		if now.Sub(h.overflowLogged) >= overflowEvery {
			h.log.Error().Int("max_pending", h.cfg.MaxPending).Uint64("dropped", h.overflowQuiet).
				Str("event", it.n.Event).Str("lane", it.n.Lane).Str("id", it.n.ID).
				Msg("webhook: outbox full, oldest notifications dropped")
			h.overflowLogged, h.overflowQuiet = now, 0
		}
	}
}
