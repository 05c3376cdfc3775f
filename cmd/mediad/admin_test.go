package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/mediad/mediad/ingest"
	"github.com/mediad/mediad/state"
)

// testAdmin is an admin handler over a server with no sessions, with its
// readiness and take-over under the test's control.
type testAdmin struct {
	h                       http.Handler
	ready, draining, taking atomic.Bool
	ledger                  *ledger
}

func newTestAdmin(t *testing.T) *testAdmin {
	t.Helper()
	srv := ingest.NewServer(ingest.Config{})
	t.Cleanup(func() { srv.Close() })
	ta := &testAdmin{ledger: newLedger(time.Now())}
	ta.h = adminHandler(adminState{
		srv: srv, upgrader: newUpgrader(nil, srv, ta.ledger, zerolog.Nop(), time.Second), ledger: ta.ledger, started: time.Now(),
		ready:    func() bool { return ta.ready.Load() && !ta.draining.Load() },
		serving:  ta.ready.Load,
		tookOver: func() bool { return !ta.taking.Load() },
		drain:    func() { ta.draining.Store(true) },
	})
	return ta
}

func (ta *testAdmin) do(method, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	ta.h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func TestReadyz(t *testing.T) {
	ta := newTestAdmin(t)
	for _, tc := range []struct {
		ready, taking bool
		method, path  string
		want          int
	}{
		{false, false, "GET", "/readyz", http.StatusServiceUnavailable},
		{true, false, "GET", "/readyz", http.StatusOK},
		{false, false, "GET", "/healthz", http.StatusOK},
		{false, false, "GET", "/api/status", http.StatusOK},
		{false, false, "GET", "/metrics", http.StatusOK},
		// A new process still taking over has not got the old one's
		// counters: a scrape must not see them reset.
		{false, true, "GET", "/metrics", http.StatusServiceUnavailable},
		{true, false, "POST", "/api/drain", http.StatusOK},
		{true, false, "GET", "/readyz", http.StatusServiceUnavailable},
		{true, false, "GET", "/healthz", http.StatusOK},
	} {
		ta.ready.Store(tc.ready)
		ta.taking.Store(tc.taking)
		rec := ta.do(tc.method, tc.path)
		if rec.Code != tc.want {
			t.Errorf("%s %s with ready=%v taking=%v: %d, want %d", tc.method, tc.path, tc.ready, tc.taking, rec.Code, tc.want)
		}
	}
	if body := ta.do("GET", "/readyz").Body.String(); !strings.Contains(body, "draining") {
		t.Errorf("readyz while draining says %q", body)
	}
}

// scrape parses /metrics with Prometheus's own text-format parser.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: HTTP %d", rec.Code)
	}
	return parseMetrics(t, rec.Body)
}

// parseMetrics parses a /metrics answer with Prometheus's own text-format
// parser.
func parseMetrics(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// metricValue is the value of family name's sample whose labels include
// labels (name=value pairs); histograms give their sample count.
func metricValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s missing", name)
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
			}
			if !found {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("metric %s%v missing", name, labels)
	return 0
}

func TestMetricsParse(t *testing.T) {
	ta := newTestAdmin(t)
	ta.ready.Store(true)
	ta.ledger.record(Verdict{Outcome: "failed", DurationMS: 40})
	ta.ledger.record(Verdict{Outcome: "success", DurationMS: 12, SessionsMoved: 7})
	ta.ledger.observeStalls([]time.Duration{3 * time.Millisecond, 20 * time.Millisecond})
	fams := scrape(t, ta.h)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"mediad_upgrades_total", []string{"outcome", "success"}, 1},
		{"mediad_upgrades_total", []string{"outcome", "failed"}, 1},
		{"mediad_upgrades_total", []string{"outcome", "refused"}, 0},
		{"mediad_upgrade_sessions_moved_total", nil, 7},
		{"mediad_upgrade_duration_seconds", nil, 2},
		{"mediad_upgrade_stall_seconds", nil, 2},
		{"mediad_ready", nil, 1},
		{"mediad_process_generation", nil, 1},
		{"mediad_streams", nil, 0},
		{"mediad_received_bytes_total", nil, 0},
		{"mediad_build_info", []string{"state_version", strconv.Itoa(int(state.Version))}, 1},
	} {
		if got := metricValue(t, fams, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds", "mediad_sent_bytes_total", "mediad_connections_accepted_total", "mediad_players"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("metric %s missing", name)
		}
	}
}

// TestLedgerContinues hands a ledger over the way an upgrade does, through
// the process envelope, and checks that nothing restarts from zero.
func TestLedgerContinues(t *testing.T) {
	start := time.Unix(1795000000, 0)
	old := newLedger(start)
	old.record(Verdict{Outcome: "refused"})
	old.record(Verdict{Outcome: "success", DurationMS: 30, SessionsMoved: 4})
	old.observeStalls([]time.Duration{2 * time.Millisecond, 300 * time.Millisecond, 5 * time.Second})
	cur := Verdict{Started: time.Now().UTC(), OldPID: 10, OldVersion: "a", StateVersion: state.Version, SessionsMoved: 4}
	env, err := state.Encode(state.KindProcess, old.export(ingest.Totals{BytesIn: 1 << 40, BytesOut: 3 << 40, Sessions: 99}, cur))
	if err != nil {
		t.Fatal(err)
	}
	var p state.Process
	if err := state.Decode(env, &p); err != nil {
		t.Fatal(err)
	}
	if p.BytesIn != 1<<40 || p.BytesOut != 3<<40 || p.SessionsAccepted != 99 || p.Current.OldPID != 10 {
		t.Errorf("process envelope: %+v", p)
	}
	next := newLedger(time.Now())
	next.restore(p)
	next.record(Verdict{Outcome: "success", DurationMS: 20, SessionsMoved: 4})
	s, gen := next.Start()
	if !s.Equal(start) || gen != 2 {
		t.Errorf("service start %v generation %d, want %v and 2", s, gen, start)
	}
	if c := next.Counts(); c["success"] != 2 || c["refused"] != 1 {
		t.Errorf("counts %v", c)
	}
	if h := next.History(); len(h) != 3 || h[0].Outcome != "refused" || h[2].DurationMS != 20 {
		t.Errorf("history %+v", h)
	}
	if next.moved != 8 || next.upgrades.count != 2 || next.stalls.count != 3 || next.stalls.sum < 5.3 {
		t.Errorf("moved %d, upgrade histogram %+v, stall histogram %+v", next.moved, next.upgrades, next.stalls)
	}
	if got, want := next.stalls.cumulative(), old.stalls.cumulative(); len(got) != len(want) || got[0.0025] != 1 || got[0.5] != 2 || got[2.5] != 2 {
		t.Errorf("stall buckets %v, want %v", got, want)
	}
}

func TestRestoreHistOtherBounds(t *testing.T) {
	// A release with coarser bounds: every count lands at or below where it
	// was, and the totals stay.
	old := state.Histogram{Bounds: []float64{0.01, 1}, Counts: []uint64{3, 5}, Count: 6, Sum: 9}
	h := restoreHist(stallBounds, old)
	c := h.cumulative()
	if c[0.001] != 0 || c[0.01] != 3 || c[0.5] != 3 || c[1] != 5 || c[2.5] != 5 || h.count != 6 || h.sum != 9 {
		t.Errorf("restored %v count %d sum %v", c, h.count, h.sum)
	}
	if bad := restoreHist(stallBounds, state.Histogram{Bounds: []float64{1}, Counts: nil, Count: 4}); bad.count != 0 {
		t.Errorf("malformed histogram restored as %+v", bad)
	}
}
