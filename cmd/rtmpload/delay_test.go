package main

import (
	"io"
	"testing"
	"time"

	"github.com/mediad/mediad/ingest"
)

func TestDelayHistQuantiles(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name          string
		add           []time.Duration
		p50, p99, max float64
	}{
		{"nothing", nil, -1, -1, -1},
		{"one", []time.Duration{3 * ms}, 4, 4, 3},
		{"negative is on time", []time.Duration{-5 * ms}, 1, 1, 0},
		{"nearest rank", []time.Duration{0, 1 * ms, 2 * ms, 3 * ms, 40 * ms}, 3, 41, 40},
		{"beyond the last bucket", []time.Duration{time.Hour}, delayBuckets, delayBuckets, 3600000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h delayHist
			for _, d := range tc.add {
				h.add(d)
			}
			var tot PlayerTotals
			tot.delayStats(&h)
			if tot.DelayP50Ms != tc.p50 || tot.DelayP99Ms != tc.p99 || tot.DelayMaxMs != tc.max || tot.DelayCount != uint64(len(tc.add)) {
				t.Fatalf("count %d p50 %v p99 %v max %v; want %d %v %v %v", tot.DelayCount, tot.DelayP50Ms, tot.DelayP99Ms, tot.DelayMaxMs, len(tc.add), tc.p50, tc.p99, tc.max)
			}
		})
	}
}

// TestLoadMeasuresDeliveryDelay: the players' delay shows what a server
// holding media back costs them: mediad reading every message as it
// comes (a few ms on loopback), against mediad coalescing its reads over
// 200 ms.
func TestLoadMeasuresDeliveryDelay(t *testing.T) {
	measure := func(coalesce time.Duration) PlayerTotals {
		_, addr := startServer(t, ingest.Config{ReadCoalesce: coalesce})
		cfg := testConfig(addr, "delay", 3, 1, 4*time.Second)
		cfg.delaySettle = time.Second
		rep, err := run(t.Context(), cfg, testClip(t), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Players.OK != 3 || rep.Players.DelayCount == 0 {
			t.Fatalf("coalesce %s: players %+v", coalesce, rep.Players)
		}
		t.Logf("coalesce %s: %d messages, delay p50 %.0f ms, p99 %.0f ms, max %.1f ms (generator max lag %.0f ms)",
			coalesce, rep.Players.DelayCount, rep.Players.DelayP50Ms, rep.Players.DelayP99Ms, rep.Players.DelayMaxMs, rep.MaxLagMs)
		return rep.Players
	}
	plain := measure(0)
	held := measure(200 * time.Millisecond)
	if plain.DelayP50Ms > 100 {
		t.Errorf("read as it comes, half the messages took over %.0f ms to a player on loopback", plain.DelayP50Ms)
	}
	// Its mark is the stream's rate over 200 ms, at most 4 KiB: about
	// 100 ms of the test clip.
	if held.DelayP99Ms < 50 {
		t.Errorf("coalesced over 200 ms, p99 delay %.0f ms: the measure does not see the wait", held.DelayP99Ms)
	}
}
