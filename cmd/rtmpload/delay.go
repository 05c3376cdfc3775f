package main

import (
	"sync/atomic"
	"time"
)

// Delivery delay: how long after its due time at the publisher a media
// message reached a player. A publisher sends the message of media time
// ts at its pacing start plus ts, so a player in the same process knows
// when each message left: arrival − (start + ts). It includes the
// generator's own lateness (max_lag_ms says how much that was) and
// assumes the server keeps the publisher's timestamps, as mediad and
// nginx-rtmp do. It is what a server that holds media back to save
// wake-ups (mediad's read-coalesce) costs a viewer.

// delaySettle leaves out each player's first seconds: what a GOP cache
// sends a joining player is up to a GOP old, which is a head start, not a
// delay.
const delaySettle = 5 * time.Second

// delayBuckets are 1 ms wide; the last holds every later arrival.
const delayBuckets = 2000

// delayHist is the players' delays in one histogram, filled by every
// player's goroutine.
type delayHist struct {
	b   [delayBuckets]atomic.Uint64
	max atomic.Int64 // nanoseconds
}

func (h *delayHist) add(d time.Duration) {
	d = max(d, 0)
	h.b[min(int(d/time.Millisecond), delayBuckets-1)].Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

func (h *delayHist) count() uint64 {
	var n uint64
	for i := range h.b {
		n += h.b[i].Load()
	}
	return n
}

// quantile is the upper edge of the bucket that holds the q-th quantile
// (nearest rank), in ms; -1 when nothing was recorded.
func (h *delayHist) quantile(q float64) float64 {
	n := h.count()
	if n == 0 {
		return -1
	}
	rank := uint64(q * float64(n))
	if float64(rank) < q*float64(n) {
		rank++
	}
	rank = max(rank, 1)
	var seen uint64
	for i := range h.b {
		if seen += h.b[i].Load(); seen >= rank {
			return float64(i + 1)
		}
	}
	return delayBuckets
}

// delivered records a media message of media time ts that a player of
// stream i read just now.
func (r *runner) delivered(i int, playSent time.Time, ts uint32) {
	now := time.Now()
	if now.Sub(playSent) < r.cfg.delaySettle {
		return
	}
	start := r.pubStart[i].Load()
	if start == 0 {
		return
	}
	r.delays.add(now.Sub(time.Unix(0, start)) - time.Duration(ts)*time.Millisecond)
}

// delayStats fills in the delivery delays.
func (t *PlayerTotals) delayStats(h *delayHist) {
	t.DelayCount = h.count()
	t.DelayP50Ms, t.DelayP99Ms = h.quantile(0.50), h.quantile(0.99)
	t.DelayMaxMs = -1
	if t.DelayCount > 0 {
		t.DelayMaxMs = float64(h.max.Load()) / 1e6
	}
}
