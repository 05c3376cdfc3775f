package state

// KindProcess carries what the serving process knows about the service as
// a whole (since version 3): one per handoff, no descriptors. It is what
// lets counters, histograms and the upgrade history continue across
// upgrades instead of starting again with every new process.
const KindProcess Kind = "process"

// Process is the service's memory beyond its sessions.
type Process struct {
	// ServiceStart (Unix ns) is when the first process of this chain of
	// upgrades started.
	ServiceStart int64 `msgpack:"service_start"`
	// Generation counts the processes of the chain: 1 for the first.
	Generation uint64 `msgpack:"generation"`
	// Totals over the service's life: bytes read from and written to RTMP
	// clients, and connections accepted.
	BytesIn          uint64 `msgpack:"bytes_in"`
	BytesOut         uint64 `msgpack:"bytes_out"`
	SessionsAccepted uint64 `msgpack:"sessions_accepted"`
	// UpgradeCounts counts upgrades by outcome ("success", "failed",
	// "refused").
	UpgradeCounts map[string]uint64 `msgpack:"upgrade_counts"`
	// SessionsMoved is the total of sessions moved by successful upgrades.
	SessionsMoved uint64 `msgpack:"sessions_moved"`
	// UpgradeSeconds holds the durations of upgrades, StallSeconds the
	// stall of every moved session that was reading.
	UpgradeSeconds Histogram `msgpack:"upgrade_seconds"`
	StallSeconds   Histogram `msgpack:"stall_seconds"`
	// Upgrades is the recent upgrade history, oldest first.
	Upgrades []Upgrade `msgpack:"upgrades"`
	// Current describes the upgrade carrying this envelope, for the new
	// process to record once it serves.
	Current Upgrade `msgpack:"current"`
	// Outbox holds the webhook notifications not yet delivered (version
	// 5); nil when there are none and no counters.
	Outbox *Outbox `msgpack:"outbox,omitempty"`
}

// Histogram is a cumulative histogram in Prometheus's form: Counts[i]
// observations at most Bounds[i], plus the count and sum of all. Counts is
// as long as Bounds; an observation above the last bound shows in Count
// only, as Prometheus's +Inf bucket.
type Histogram struct {
	Bounds []float64 `msgpack:"bounds"`
	Counts []uint64  `msgpack:"counts"`
	Count  uint64    `msgpack:"count"`
	Sum    float64   `msgpack:"sum"`
}

// Upgrade is one upgrade's verdict.
type Upgrade struct {
	Outcome       string  `msgpack:"outcome"`
	Error         string  `msgpack:"error"`
	Started       int64   `msgpack:"started"` // Unix ns
	DurationMS    float64 `msgpack:"duration_ms"`
	OldPID        int     `msgpack:"old_pid"`
	NewPID        int     `msgpack:"new_pid"`
	OldVersion    string  `msgpack:"old_version"`
	NewVersion    string  `msgpack:"new_version"`
	StateVersion  uint32  `msgpack:"state_version"`
	SessionsMoved int     `msgpack:"sessions_moved"`
	StallP50MS    float64 `msgpack:"stall_p50_ms"`
	StallP99MS    float64 `msgpack:"stall_p99_ms"`
	WorstStallMS  float64 `msgpack:"worst_stall_ms"`
	Stalls        int     `msgpack:"stalls_measured"`
}
