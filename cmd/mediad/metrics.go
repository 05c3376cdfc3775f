package main

import (
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mediad/mediad/handoff/upgrade"
	"github.com/mediad/mediad/ingest"
	"github.com/mediad/mediad/ingest/webhook"
	"github.com/mediad/mediad/state"
)

// Histogram bounds, in seconds. An upgrade moves every session in tens of
// milliseconds to a few seconds; a stall is one session's pause.
var (
	upgradeBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	stallBounds   = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
)

// historyLen is how many verdicts the ledger keeps.
const historyLen = 50

// ledger is what the service remembers beyond its sessions: its start, its
// upgrades and their figures. It crosses upgrades in the process envelope
// (state version 3), so that counters continue instead of resetting.
type ledger struct {
	mu         sync.Mutex
	start      time.Time // the service's, not this process's
	generation uint64
	history    []Verdict
	counts     map[string]uint64
	moved      uint64
	upgrades   hist
	stalls     hist
}

func newLedger(start time.Time) *ledger {
	return &ledger{
		start: start, generation: 1, counts: make(map[string]uint64),
		upgrades: newHist(upgradeBounds), stalls: newHist(stallBounds),
	}
}

// record adds one upgrade's verdict. Stalls are observed separately, by
// the process that measures them.
func (l *ledger) record(v Verdict) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.history = append(l.history, v)
	if len(l.history) > historyLen {
		l.history = slices.Clone(l.history[len(l.history)-historyLen:])
	}
	l.counts[v.Outcome]++
	// A refused upgrade did nothing: its duration would only drag the
	// distribution towards zero.
	if v.Outcome != "refused" {
		l.upgrades.observe(v.DurationMS / 1000)
	}
	if v.Outcome == "success" {
		l.moved += uint64(v.SessionsMoved)
	}
}

func (l *ledger) observeStalls(stalls []time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range stalls {
		l.stalls.observe(d.Seconds())
	}
}

// History returns past verdicts, oldest first.
func (l *ledger) History() []Verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.history)
}

// Counts returns the number of upgrades by outcome.
func (l *ledger) Counts() map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.counts)
}

func (l *ledger) Start() (time.Time, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.start, l.generation
}

// export is the process envelope's payload; current describes the upgrade
// that carries it.
func (l *ledger) export(t ingest.Totals, current Verdict) state.Process {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := state.Process{
		ServiceStart:     l.start.UnixNano(),
		Generation:       l.generation,
		BytesIn:          t.BytesIn,
		BytesOut:         t.BytesOut,
		SessionsAccepted: t.Sessions,
		UpgradeCounts:    maps.Clone(l.counts),
		SessionsMoved:    l.moved,
		UpgradeSeconds:   l.upgrades.export(),
		StallSeconds:     l.stalls.export(),
		Current:          current.State(),
	}
	for _, v := range l.history {
		p.Upgrades = append(p.Upgrades, v.State())
	}
	return p
}

// restore continues the ledger of the process before this one, which it
// replaces: a new process has recorded nothing of its own yet.
func (l *ledger) restore(p state.Process) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p.ServiceStart > 0 {
		l.start = time.Unix(0, p.ServiceStart)
	}
	l.generation = p.Generation + 1
	l.counts = maps.Clone(p.UpgradeCounts)
	if l.counts == nil {
		l.counts = make(map[string]uint64)
	}
	l.moved = p.SessionsMoved
	l.upgrades = restoreHist(upgradeBounds, p.UpgradeSeconds)
	l.stalls = restoreHist(stallBounds, p.StallSeconds)
	l.history = l.history[:0]
	for _, u := range p.Upgrades {
		l.history = append(l.history, upgrade.VerdictFromState(u))
	}
}

// hist is a fixed-bucket histogram that can be exported and continued,
// which client_golang's own cannot.
type hist struct {
	bounds []float64
	counts []uint64 // per bucket, not cumulative; one more for +Inf
	count  uint64
	sum    float64
}

func newHist(bounds []float64) hist {
	return hist{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *hist) observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v)
	h.counts[i]++
	h.count++
	h.sum += v
}

// cumulative returns the count of observations at most each bound.
func (h *hist) cumulative() map[float64]uint64 {
	m := make(map[float64]uint64, len(h.bounds))
	var c uint64
	for i, b := range h.bounds {
		c += h.counts[i]
		m[b] = c
	}
	return m
}

func (h *hist) export() state.Histogram {
	out := state.Histogram{Bounds: slices.Clone(h.bounds), Count: h.count, Sum: h.sum}
	var c uint64
	for i := range h.bounds {
		c += h.counts[i]
		out.Counts = append(out.Counts, c)
	}
	return out
}

// restoreHist continues a histogram exported by an earlier process. Bounds
// that differ (a release that changed them) are mapped conservatively: each
// of ours takes the cumulative count of the largest old bound not above it.
func restoreHist(bounds []float64, s state.Histogram) hist {
	h := newHist(bounds)
	if len(s.Counts) != len(s.Bounds) {
		return h
	}
	var prev uint64
	for i, b := range bounds {
		var c uint64
		for j, ob := range s.Bounds {
			if ob <= b {
				c = s.Counts[j]
			}
		}
		c = max(c, prev)
		h.counts[i] = c - prev
		prev = c
	}
	h.count = max(s.Count, prev)
	h.counts[len(bounds)] = h.count - prev
	h.sum = s.Sum
	return h
}

// collector exposes the ledger, the server's totals and its streams as
// Prometheus metrics, computed at each scrape.
type collector struct {
	srv    *ingest.Server
	ledger *ledger
	ready  func() bool

	buildInfo, serviceStart, generation, readyDesc         *prometheus.Desc
	connections, streams, players                          *prometheus.Desc
	bytesIn, bytesOut, accepted                            *prometheus.Desc
	upgrades, upgradeSeconds, stallSeconds, moved          *prometheus.Desc
	streamBytes, streamPlayers, streamBitrate, streamStart *prometheus.Desc
	streamVideoFrames, streamAudioFrames, streamKeyframes  *prometheus.Desc
	recordingDesc, gopCache, streamGOPCache                *prometheus.Desc
	relayUp, relayBytes, relayDrops, relayReconnects       *prometheus.Desc
	hookPending, hookDelivered, hookRetries, hookDropped   *prometheus.Desc
	hookDecisions                                          *prometheus.Desc
	// hooks is nil without webhooks.
	hooks *webhook.Hooks
}

func newCollector(srv *ingest.Server, l *ledger, ready func() bool) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("mediad_"+name, help, labels, nil)
	}
	return &collector{
		srv: srv, ledger: l, ready: ready,
		buildInfo:         d("build_info", "The running build, always 1.", "version", "state_version"),
		serviceStart:      d("service_start_time_seconds", "When the first process of this service started, kept across upgrades (Unix seconds)."),
		generation:        d("process_generation", "How many processes the service has run through upgrades: 1 for the first."),
		readyDesc:         d("ready", "1 while this process serves, 0 while it starts, takes over, drains or stops."),
		connections:       d("connections", "RTMP connections being served."),
		streams:           d("streams", "Streams being published."),
		players:           d("players", "Players attached to streams."),
		bytesIn:           d("received_bytes_total", "Bytes read from RTMP clients since the service started, across upgrades."),
		bytesOut:          d("sent_bytes_total", "Bytes written to RTMP clients since the service started, across upgrades."),
		accepted:          d("connections_accepted_total", "RTMP connections accepted since the service started, across upgrades."),
		upgrades:          d("upgrades_total", "Live upgrades by outcome, across upgrades.", "outcome"),
		upgradeSeconds:    d("upgrade_duration_seconds", "Duration of live upgrades that were not refused, from the request to the verdict."),
		stallSeconds:      d("upgrade_stall_seconds", "Per-session stall of each upgrade: from the old process's last read to the new one's first."),
		moved:             d("upgrade_sessions_moved_total", "Sessions moved to a new process by successful upgrades."),
		streamBytes:       d("stream_received_bytes_total", "Bytes received for a stream since its broadcast started.", "stream"),
		streamPlayers:     d("stream_players", "Players attached to a stream.", "stream"),
		streamBitrate:     d("stream_bitrate_bits_per_second", "A stream's media bitrate over the last 10 seconds.", "stream"),
		streamStart:       d("stream_start_time_seconds", "When a stream's broadcast started, kept across upgrades (Unix seconds).", "stream"),
		streamVideoFrames: d("stream_video_frames_total", "Video frames received for a stream since its broadcast started.", "stream"),
		streamAudioFrames: d("stream_audio_frames_total", "Audio frames received for a stream since its broadcast started.", "stream"),
		streamKeyframes:   d("stream_keyframes_total", "Keyframes received for a stream since its broadcast started.", "stream"),
		recordingDesc:     d("stream_recording", "1 while a stream is being recorded.", "stream"),
		gopCache:          d("gop_cache_bytes", "Bytes held by every stream's GOP cache (the frames since the last keyframe, for joining players), in all."),
		streamGOPCache:    d("stream_gop_cache_bytes", "Bytes held by a stream's GOP cache.", "stream"),
		relayUp:           d("relay_connected", "1 while a push relay is connected and publishing, 0 while it connects or waits to reconnect.", "stream", "target", "state"),
		relayBytes:        d("relay_sent_bytes_total", "Bytes a push relay has written to its target, across reconnects and upgrades.", "stream", "target"),
		relayDrops:        d("relay_dropped_gops_total", "GOPs a push relay dropped because its target was too slow.", "stream", "target"),
		relayReconnects:   d("relay_reconnects_total", "Times a push relay lost or could not make its connection and tried again.", "stream", "target"),
		hookPending:       d("webhook_pending", "Webhook notifications waiting to be delivered."),
		hookDelivered:     d("webhook_delivered_total", "Webhook notifications delivered, across upgrades."),
		hookRetries:       d("webhook_retries_total", "Failed webhook notification attempts that were tried again, across upgrades."),
		hookDropped:       d("webhook_dropped_total", "Webhook notifications given up (past the retry bound, outbox full, or event no longer configured)."),
		hookDecisions:     d("webhook_decisions_total", "on_publish and on_play answers by outcome: allowed, refused, error (no answer).", "outcome"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(c.buildInfo, 1, buildVersion(), strconv.Itoa(int(state.Version)))
	gauge(c.readyDesc, b2f(c.ready()))
	t := c.srv.Totals()
	counter(c.bytesIn, float64(t.BytesIn))
	counter(c.bytesOut, float64(t.BytesOut))
	counter(c.accepted, float64(t.Sessions))
	gauge(c.connections, float64(c.srv.SessionCount()))

	var live, players int
	for _, st := range c.srv.Registry().List() {
		players += st.Players
		if !st.Live {
			continue
		}
		live++
		name := st.App + "/" + st.Key
		counter(c.streamBytes, float64(st.Stats.BytesIn), name)
		gauge(c.streamPlayers, float64(st.Players), name)
		gauge(c.streamBitrate, st.Stats.BitrateKbps*1000, name)
		gauge(c.streamStart, float64(st.Started.UnixNano())/1e9, name)
		counter(c.streamVideoFrames, float64(st.Stats.VideoFrames), name)
		counter(c.streamAudioFrames, float64(st.Stats.AudioFrames), name)
		counter(c.streamKeyframes, float64(st.Stats.Keyframes), name)
		gauge(c.recordingDesc, b2f(st.Recording != ""), name)
		gauge(c.streamGOPCache, float64(st.Stats.GOPCacheBytes), name)
		for _, r := range st.Relays {
			gauge(c.relayUp, b2f(r.State == "connected"), name, r.URL, r.State)
			counter(c.relayBytes, float64(r.BytesOut), name, r.URL)
			counter(c.relayDrops, float64(r.Drops), name, r.URL)
			counter(c.relayReconnects, float64(r.Reconnects), name, r.URL)
		}
	}
	if c.hooks != nil {
		hs := c.hooks.Stats()
		gauge(c.hookPending, float64(hs.Pending))
		counter(c.hookDelivered, float64(hs.Delivered))
		counter(c.hookRetries, float64(hs.Retries))
		counter(c.hookDropped, float64(hs.Dropped))
		counter(c.hookDecisions, float64(hs.DecideAllowed), "allowed")
		counter(c.hookDecisions, float64(hs.DecideRefused), "refused")
		counter(c.hookDecisions, float64(hs.DecideErrors), "error")
	}
	gauge(c.streams, float64(live))
	gauge(c.players, float64(players))
	gauge(c.gopCache, float64(c.srv.Registry().GOPCacheBytes()))

	l := c.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	gauge(c.serviceStart, float64(l.start.UnixNano())/1e9)
	gauge(c.generation, float64(l.generation))
	for _, o := range []string{"success", "failed", "refused"} {
		counter(c.upgrades, float64(l.counts[o]), o)
	}
	counter(c.moved, float64(l.moved))
	ch <- prometheus.MustNewConstHistogram(c.upgradeSeconds, l.upgrades.count, l.upgrades.sum, l.upgrades.cumulative())
	ch <- prometheus.MustNewConstHistogram(c.stallSeconds, l.stalls.count, l.stalls.sum, l.stalls.cumulative())
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsHandler serves /metrics: mediad's own metrics with Go's and the
// process's. A process still taking over answers 503: its counters do not
// hold the old process's totals yet, and a scrape that saw them would read
// as a counter reset.
func metricsHandler(c *collector, tookOver func() bool) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{PidFn: func() (int, error) { return os.Getpid(), nil }}))
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !tookOver() {
			http.Error(w, "taking over from the old process", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}
