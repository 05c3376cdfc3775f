package migrate

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/mediad/mediad/state"
)

// goldenV8 are the released version-8 blobs: every v7 blob, whose payload
// version 8 left as it was, and the kinds version 8 added: the bases of a
// publisher and a player (the static parts of v7's publisher-query and
// player, sent before the park) and their tails (what the same sessions
// export at the park).
var goldenV8 = map[string]string{
	"base-player.msgpack":           "86fbab9935520b31bcd7b83894830f8d1f5b4284c1f528a08416c594e04d78eb",
	"base-publisher.msgpack":        "dbcea99cbd717afd0c430f9746526319472c12e03f38e2ca2bb907ca095b05de",
	"conn-connected.msgpack":        "d20ce76d96577734ce4e2a1e92bf48dd8aea64cba95fdccd5b6ccbd53a30873a",
	"conn-handshake.msgpack":        "14237a31fc455f69227d0344f9d2adb3950d4c55d7bf29daa1a7f389bf123e6f",
	"conn-pending.msgpack":          "f86600298cd1b920a1cf5c5f772b24a64153ee2d96895d592f3c3f574047cba0",
	"flv-player.msgpack":            "c32386927119ef0c5b4ce6b14940436a4f174d541e9836c482f944110f7f4a96",
	"http-conn-fresh.msgpack":       "12851ab5ad5525bcfb924aa76d59ab5f8f841c58da182e035dec301d7caa1b58",
	"http-conn-waiting.msgpack":     "1f85c4dcdc1fc58817897c68aa4e39b19c7cc9dfbbdc363e960b33f2502345a4",
	"player-tail.msgpack":           "a0808f5ea60d98c93ba0c1e47eac4ef97fd8d01bf694a2dcc264a560e4d48eb7",
	"player.msgpack":                "14992389ae15500c535b5930837876227b4330a51f02f66db6890eae96929cb8",
	"process-outbox.msgpack":        "9a27adb85a26c484d3d889a5cb6e8c97b7a79839407158bcb6afda40c80efef9",
	"process.msgpack":               "0abaf11e28d9ff13da038282523683cd67d6107ab0f26aebfa4cacdda488d2e2",
	"publisher-hls-shared.msgpack":  "b20948d67ec50d51916d5406bd70e5e81d6b47647de3d736df13303befffcc07",
	"publisher-hls.msgpack":         "2c7e989fbc0f7450c2bae8eddcba6945b6ff4bd17ca555962f01fbe5e3ecab42",
	"publisher-norecording.msgpack": "3395436bf9f0e2647d4c6a61d40aee221f1759f99922108e94056fe250eb3d65",
	"publisher-query.msgpack":       "68bd48655e92054042ff2d704d85d3f34a5a41b77792541b1571cf12b5854c71",
	"publisher-tail.msgpack":        "37c378550621af25aa3bcb0f354ab014a17e05c94ddf3e7c118732eb63d7b019",
	"publisher.msgpack":             "2b6189520a62134f44d1d1469146114781b783356efdefa9426722baf41550a4",
	"relay.msgpack":                 "b956c4d15720eaed1eb57845957b2bdad6ed0893f6d51a8a6ccaf7dc1a027b24",
}

// goldenBases pairs each base blob with its tail and with the v7 session
// they make together.
var goldenBases = []struct{ base, tail, whole string }{
	{"base-publisher.msgpack", "publisher-tail.msgpack", "publisher-query.msgpack"},
	{"base-player.msgpack", "player-tail.msgpack", "player.msgpack"},
}

// A base and its tail make the released v7 session again, field for
// field; the tail alone lacks every static field.
func TestGoldenV8BaseAndTail(t *testing.T) {
	for _, g := range goldenBases {
		baseEnv := readGolden(t, "v8", g.base, goldenV8)
		tailEnv := readGolden(t, "v8", g.tail, goldenV8)
		whole := current(t, readGolden(t, "v7", g.whole, goldenV7))
		if baseEnv.Kind != state.KindBase {
			t.Fatalf("%s holds kind %q", g.base, baseEnv.Kind)
		}
		var b state.Base
		if err := state.Decode(baseEnv, &b); err != nil {
			t.Fatalf("%s: %v", g.base, err)
		}
		switch tailEnv.Kind {
		case state.KindPublisherTail:
			var tail, want state.Publisher
			if err := state.Decode(tailEnv, &tail); err != nil {
				t.Fatal(err)
			}
			if err := state.Decode(whole, &want); err != nil {
				t.Fatal(err)
			}
			if tail.Stream.Key != "" || tail.Session.App != "" || len(tail.Stream.Metadata) != 0 || tail.Stream.BytesIn != want.Stream.BytesIn {
				t.Errorf("%s: not a tail of %s: %+v", g.tail, g.whole, tail)
			}
			if err := b.FillPublisher(&tail); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tail, want) {
				t.Errorf("%s + %s:\n got %+v\nwant %+v", g.base, g.tail, tail, want)
			}
		case state.KindPlayerTail:
			var tail, want state.Player
			if err := state.Decode(tailEnv, &tail); err != nil {
				t.Fatal(err)
			}
			if err := state.Decode(whole, &want); err != nil {
				t.Fatal(err)
			}
			if tail.Key != "" || tail.Session.App != "" || len(tail.Queue) != len(want.Queue) {
				t.Errorf("%s: not a tail of %s: %+v", g.tail, g.whole, tail)
			}
			if err := b.FillPlayer(&tail); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tail, want) {
				t.Errorf("%s + %s:\n got %+v\nwant %+v", g.base, g.tail, tail, want)
			}
		default:
			t.Fatalf("%s holds kind %q", g.tail, tailEnv.Kind)
		}
	}
}

// Down from v8: a base or a tail has no older form, and the refusal names
// the kind and the version it starts at; everything else goes down to the
// released v7 payload.
func TestGoldenV8Down(t *testing.T) {
	fresh := map[string]bool{}
	for _, g := range goldenBases {
		fresh[g.base], fresh[g.tail] = true, true
	}
	for name := range fresh {
		env := readGolden(t, "v8", name, goldenV8)
		for to := Oldest; to < 8; to++ {
			_, err := Convert(env, to)
			if err == nil {
				t.Errorf("%s went down to v%d, which has no form of it", name, to)
				continue
			}
			for _, want := range []string{string(env.Kind), "v8"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s to v%d: error %q does not name %s", name, to, err, want)
				}
			}
		}
	}
	if len(goldenV8) != len(goldenV7)+len(fresh) {
		t.Errorf("%d v8 blobs, want the %d of v7 and %d bases and tails", len(goldenV8), len(goldenV7), len(fresh))
	}
	for name := range goldenV7 {
		v8 := readGolden(t, "v8", name, goldenV8)
		v7 := readGolden(t, "v7", name, goldenV7)
		if v8.Kind != v7.Kind || !bytes.Equal(v8.Payload, v7.Payload) {
			t.Errorf("%s: v8 %s payload differs from v7 %s", name, v8.Kind, v7.Kind)
		}
		down, err := Convert(v8, 7)
		if err != nil {
			t.Errorf("%s to v7: %v", name, err)
			continue
		}
		got, err1 := decodeMap(down.Payload)
		want, err2 := decodeMap(v7.Payload)
		if err1 != nil || err2 != nil || down.Kind != v7.Kind || down.Version != 7 || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: v8 down to v7 is not the released v7 payload:\n got %v\nwant %v", name, got, want)
		}
		up, err := Convert(v7, 8)
		if err != nil {
			t.Errorf("%s: up to v8: %v", name, err)
			continue
		}
		if up.Kind != v8.Kind || up.Version != 8 || !reflect.DeepEqual(mustMap(t, up.Payload), mustMap(t, v8.Payload)) {
			t.Errorf("%s: v7 up to v8 is not the released v8 payload", name)
		}
	}
}

func mustMap(t *testing.T, p []byte) map[string]any {
	t.Helper()
	m, err := decodeMap(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
