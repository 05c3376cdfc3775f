package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Players joining at random moments (-join-after, -join-within): each
// player of a stream connects at its own moment, drawn uniformly from
// [join-after, join-after + join-within) after its publisher went live, so
// that players land anywhere in a GOP, as viewers do. What a player then
// measures is the time from its play command to the first video keyframe
// (PlayerReport.FirstKeyframeMs): the wait before it can decode anything.

// joinDelay is when a player joins after its publisher went live.
func (r *runner) joinDelay() time.Duration {
	d := r.cfg.joinAfter
	if r.cfg.joinWithin > 0 {
		d += rand.N(r.cfg.joinWithin)
	}
	return d
}

// waitJoin sleeps until a player's moment, and reports false if the run
// stopped first: the player is then left skipped. The moment counts from
// now, or from the join trigger when there is one (trigger.go).
func (r *runner) waitJoin() bool {
	from, ok := r.joinFrom()
	if !ok {
		return false
	}
	d := time.Until(from.Add(r.joinDelay()))
	if d <= 0 {
		return r.stop.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.stop.Done():
		return false
	}
}

// percentile is the p-th percentile (0-100, nearest rank) of sorted, or
// -1 when there is nothing to rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return -1
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// firstKeyframeStats fills in the distribution of the players' time to
// their first keyframe.
func (t *PlayerTotals) firstKeyframeStats(players []PlayerReport) {
	var ms []float64
	for _, p := range players {
		if p.FirstKeyframeMs >= 0 {
			ms = append(ms, p.FirstKeyframeMs)
		}
	}
	slices.Sort(ms)
	t.FirstKeyframeP50Ms = percentile(ms, 50)
	t.FirstKeyframeP99Ms = percentile(ms, 99)
	t.FirstKeyframeMaxMs = percentile(ms, 100)
}
