package ingest

import (
	"sync/atomic"
	"unsafe"
)

// The GOP cache lets a player start at once: each stream keeps the messages
// it relayed since its last video keyframe (the current group of pictures),
// and a player that joins gets them, keyframe first, before the live
// frames. Without it a player waits for the next keyframe, half a GOP on
// average.
//
// Memory. The cache holds the very payload slices that the fan-out queues
// for players: the chunk reader allocates each message's payload afresh and
// never touches it once handed out (chunk.Reader.Feed: "its Payload is the
// caller's to keep"), and nothing downstream modifies a payload. So caching
// a message costs one outMsg in a slice that is reused from GOP to GOP, and
// no copy and no allocation once that slice has grown to a GOP's length.
// What the cache costs is that a GOP's payloads stay alive until the next
// keyframe instead of until every player has written them.
//
// Bounds. A stream's cache holds at most Config.GOPCacheBytes, and all
// streams' caches together at most Config.GOPCacheTotalBytes, counting each
// message as its payload plus the slot it takes (gopEntryCost). A GOP that
// would pass either bound is dropped whole, and the stream caches nothing
// until its next keyframe: players joining in between wait for that
// keyframe, as they did before the cache existed. The count is of payload
// bytes, not of the buffers behind them: a message unpacked from an
// aggregate keeps the whole aggregate alive, and a payload above 64 KiB may
// carry about a quarter more of append slack from the chunk reader.
//
// Upgrades. The cache does not cross a live upgrade: it is not part of
// state.Stream, so no state version or migration carries it. After an
// upgrade the new process's caches are empty until each stream's next
// keyframe, and a player that joins a stream in that window (at most one
// GOP) waits for the keyframe.

// gopEntryCost is what one cached message costs besides its payload.
const gopEntryCost = int64(unsafe.Sizeof(outMsg{}))

// gopSlotsKept bounds the slots a cache keeps for reuse after a reset; a
// pathological GOP of many tiny messages gives its array back.
const gopSlotsKept = 4096

// gopBudget is the bound shared by every stream of a registry.
type gopBudget struct {
	perStream int64 // 0: caching disabled
	total     int64
	used      atomic.Int64
}

// take reserves n bytes of the total, or reports that they are not left.
func (b *gopBudget) take(n int64) bool {
	if b.used.Add(n) > b.total {
		b.used.Add(-n)
		return false
	}
	return true
}

// gopCache is one stream's current GOP. Its fields are guarded by the
// stream's mu, the lock under which the fan-out runs, so that a joining
// player gets exactly what was relayed before it joined and the live
// frames exactly from there.
type gopCache struct {
	msgs []outMsg
	// bytes is what the cache charges against its bounds; payload is the
	// media in it, in the unit of a player's queue limit.
	bytes, payload int64
	// valid: msgs starts at a video keyframe and holds every message
	// relayed since.
	valid bool
}

// add appends one relayed message. A keyframe starts a new GOP; a message
// that would pass a bound drops the GOP until the next keyframe.
func (c *gopCache) add(b *gopBudget, m outMsg) {
	if b.perStream <= 0 {
		return
	}
	if m.key {
		c.reset(b)
		c.valid = true
	} else if !c.valid {
		return
	}
	n := int64(m.size()) + gopEntryCost
	if c.bytes+n > b.perStream || !b.take(n) {
		c.reset(b)
		return
	}
	c.msgs = append(c.msgs, m)
	c.bytes += n
	c.payload += int64(m.size())
}

// reset empties the cache and returns its bytes to the budget. The cache
// stays invalid until the next keyframe.
func (c *gopCache) reset(b *gopBudget) {
	if c.bytes != 0 {
		b.used.Add(-c.bytes)
	}
	if cap(c.msgs) > gopSlotsKept {
		c.msgs = nil
	} else {
		clear(c.msgs)
		c.msgs = c.msgs[:0]
	}
	c.bytes, c.payload, c.valid = 0, 0, false
}

// replay queues the cached GOP for a player that has just joined. A GOP
// larger than the player's queue limit is not queued: it would only make
// the player skip ahead at once, so the player waits for the next keyframe
// as it would without the cache.
func (c *gopCache) replay(p *player) {
	if !c.valid || len(c.msgs) == 0 {
		return
	}
	p.enqueueGOP(c.msgs, int(c.payload))
}
