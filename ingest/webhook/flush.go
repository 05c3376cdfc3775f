package webhook

import (
	"context"
	"time"
)

// Configured reports whether ev has a URL, so that a caller skips building
// what it would send.
func (h *Hooks) Configured(ev Event) bool { return h.urls[ev] != "" }

// Flush waits until the outbox is empty or ctx ends: a graceful stop gives
// the notifications it just queued (the ends of its broadcasts) the rest of
// its time. It polls: a stop happens once per process.
func (h *Hooks) Flush(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		h.mu.Lock()
		n, started := h.all.Len(), h.started
		h.mu.Unlock()
		if n == 0 || !started {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
