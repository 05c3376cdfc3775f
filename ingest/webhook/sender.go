package webhook

import (
	"container/heap"
	"context"
	"fmt"
	"time"
)

// sender delivers d's notifications, one attempt at a time, until Close.
func (h *Hooks) sender(d *dest) {
	defer h.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		h.mu.Lock()
		it, l, wait := h.take(d, time.Now())
		var id string
		var body []byte
		if it != nil {
			// Copied under the lock; ID and Body never change, but the
			// struct around them does.
			id, body = it.n.ID, it.n.Body
		}
		h.mu.Unlock()
		if it != nil {
			err := h.attempt(d.url, id, body)
			h.mu.Lock()
			h.finish(d, l, it, err, time.Now())
			h.mu.Unlock()
			continue
		}
		var fire <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			fire = timer.C
		}
		select {
		case <-h.ctx.Done():
			timer.Stop()
			return
		case <-d.kick:
		case <-fire:
		}
	}
}

// take hands out the head of d's lane that is due soonest, if it is due,
// and marks it in flight; otherwise it returns how long until it is due, or
// 0 to wait for a kick. h.mu is held.
func (h *Hooks) take(d *dest, now time.Time) (*item, *lane, time.Duration) {
	if h.paused || h.closed || len(d.ready) == 0 {
		return nil, nil, 0
	}
	l := d.ready[0]
	if due := l.due(); due > now.UnixNano() {
		return nil, nil, time.Duration(due - now.UnixNano())
	}
	heap.Pop(&d.ready)
	it := l.q[0]
	l.flying = it
	h.inflight++
	if h.idle == nil {
		h.idle = make(chan struct{})
	}
	if len(d.ready) > 0 && d.ready[0].due() <= now.UnixNano() {
		d.signal()
	}
	return it, l, 0
}

// attempt posts one notification; nil means the receiver acknowledged it.
func (h *Hooks) attempt(url, id string, body []byte) error {
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.Timeout)
	defer cancel()
	req, err := h.request(ctx, url, id, body)
	if err != nil {
		return err
	}
	status, err := h.send(req)
	if err != nil {
		return err
	}
	if !ok(status) {
		return fmt.Errorf("receiver answered %d", status)
	}
	return nil
}

// finish records the outcome of an attempt at it, taken from lane l.
// h.mu is held.
func (h *Hooks) finish(d *dest, l *lane, it *item, err error, now time.Time) {
	l.flying = nil
	h.inflight--
	if h.inflight == 0 {
		close(h.idle)
		h.idle = nil
	}
	switch {
	case it.lane == nil:
		// Pushed out of a full outbox meanwhile: counted as dropped then.
	case err == nil:
		h.delivered++
		h.remove(it)
		if d.failing {
			d.failing = false
			h.log.Info().Str("url", d.url).Msg("webhook: receiver accepting notifications again")
		}
	case h.ctx.Err() != nil:
		// Interrupted by Close: no verdict on the receiver, nothing to
		// count; the notification stays for Export.
	default:
		it.n.Attempts++
		it.lastErr = err.Error()
		if !d.failing {
			d.failing = true
			h.log.Warn().Err(err).Str("url", d.url).Str("event", it.n.Event).Msg("webhook: notification failed, retrying with backoff")
		}
		// The last attempt is made at the bound itself, so that a
		// notification is given all of RetryFor, then dropped.
		bound := time.Unix(0, it.n.Created).Add(h.cfg.RetryFor)
		if !now.Before(bound) {
			h.dropped++
			h.log.Error().Str("event", it.n.Event).Str("lane", it.n.Lane).Str("id", it.n.ID).
				Int("attempts", it.n.Attempts).Str("last_error", it.lastErr).Dur("retry_for", h.cfg.RetryFor).
				Msg("webhook: notification dropped: not delivered within the retry bound")
			h.remove(it)
			break
		}
		next := now.Add(h.backoff(it.n.Attempts))
		if next.After(bound) {
			next = bound
		}
		h.retries++
		it.n.NextAttempt = next.UnixNano()
		h.log.Debug().Err(err).Str("event", it.n.Event).Str("lane", it.n.Lane).Int("attempts", it.n.Attempts).
			Time("next", next).Msg("webhook: attempt failed")
	}
	h.schedule(d, l)
}

// backoff is the delay after the given number of failed attempts:
// backoffUnit, doubling, capped at backoffMax.
func (h *Hooks) backoff(failures int) time.Duration {
	d := h.backoffUnit
	for i := 1; i < failures && d < h.backoffMax; i++ {
		d *= 2
	}
	return min(d, h.backoffMax)
}
