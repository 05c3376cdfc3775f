package migrate

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/mediad/mediad/state"
)

// roundTrip takes a blob of version from to version to and back, and
// checks that the payload comes back key for key.
func roundTrip(t *testing.T, env state.Envelope, to uint32) state.Envelope {
	t.Helper()
	there, err := Convert(env, to)
	if err != nil {
		t.Fatalf("%s v%d→v%d: %v", env.Kind, env.Version, to, err)
	}
	if there.Version != to || there.Kind != env.Kind {
		t.Fatalf("%s v%d→v%d gave %s v%d", env.Kind, env.Version, to, there.Kind, there.Version)
	}
	back, err := Convert(there, env.Version)
	if err != nil {
		t.Fatalf("%s v%d→v%d: %v", env.Kind, to, env.Version, err)
	}
	want, err := decodeMap(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeMap(back.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s v%d→v%d→v%d changed the payload:\n got %v\nwant %v", env.Kind, env.Version, to, env.Version, got, want)
	}
	return there
}

// Every released blob of every kind goes to every other version. Up then
// down gives back exactly what it started from; down loses what the older
// version has no place for, so down then up is checked on the older
// version's view: going down again gives the same payload.
func TestGoldenEveryStepBothWays(t *testing.T) {
	for version, hashes := range released {
		for name := range hashes {
			env := readGolden(t, version, name, hashes)
			for to := Oldest; to <= state.Version; to++ {
				if to < introduced[env.Kind] {
					if _, err := Convert(env, to); err == nil {
						t.Errorf("%s/%s went down to v%d, before its kind existed", version, name, to)
					}
					continue
				}
				if to < refusedBelow[name] && env.Version >= refusedBelow[name] {
					if _, err := Convert(env, to); err == nil {
						t.Errorf("%s/%s went down to v%d, which has no form of its state", version, name, to)
					}
					continue
				}
				if to >= env.Version {
					roundTrip(t, env, to)
					continue
				}
				down, err := Convert(env, to)
				if err != nil {
					t.Fatalf("%s/%s to v%d: %v", version, name, to, err)
				}
				roundTrip(t, down, env.Version)
			}
		}
	}
}

// v1 → v2: what up derives and defaults, field by field, read at the
// current version as a build reads it.
func TestUpV1Publisher(t *testing.T) {
	env, err := Convert(readGolden(t, "v1", "publisher.msgpack", goldenV1), state.Version)
	if err != nil {
		t.Fatal(err)
	}
	var p state.Publisher
	if err := state.Decode(env, &p); err != nil {
		t.Fatal(err)
	}
	st := p.Stream
	// Carried over.
	if st.BytesIn != 987654321 || st.VideoFrames != 540000 || st.AudioFrames != 775000 || st.Keyframes != 9000 || st.Recorder == nil || st.Recorder.Offset != 734003200 {
		t.Errorf("v1 fields lost: %+v", st)
	}
	// Derived: counting per track starts at the old process's last read;
	// the golden metadata names no encoder.
	if st.TracksSince != 1795000000123456789 || st.Encoder != "" {
		t.Errorf("derived: tracks_since %d, encoder %q", st.TracksSince, st.Encoder)
	}
	// Defaulted.
	if st.VideoBytes != 0 || st.AudioBytes != 0 || len(st.RateBuckets) != 0 || st.RateSecond != 0 {
		t.Errorf("defaults: %+v", st)
	}
}

// The encoder is derived from onMetaData when v1 metadata names one.
func TestUpV1DerivesEncoder(t *testing.T) {
	md := []byte{0x02, 0x00, 0x0a, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a',
		0x08, 0, 0, 0, 1, 0, 7, 'e', 'n', 'c', 'o', 'd', 'e', 'r', 0x02, 0, 3, 'o', 'b', 's', 0, 0, 9}
	m := map[string]any{"session": map[string]any{"last_read": int64(5)}, "stream": map[string]any{"metadata": md, "started": int64(1)}}
	if err := upPublisher1(m); err != nil {
		t.Fatal(err)
	}
	st := m["stream"].(map[string]any)
	if st["encoder"] != "obs" || st["tracks_since"] != int64(5) {
		t.Fatalf("up: %v", st)
	}
	// Without a last read, counting starts with the broadcast.
	m = map[string]any{"stream": map[string]any{"started": int64(42)}}
	if err := upPublisher1(m); err != nil {
		t.Fatal(err)
	}
	if got := m["stream"].(map[string]any)["tracks_since"]; got != int64(42) {
		t.Fatalf("tracks_since %v, want 42", got)
	}
}

// v2 → v1: down drops the statistics and keeps everything else.
func TestDownV2Publisher(t *testing.T) {
	env, err := Convert(readGolden(t, "v2", "publisher.msgpack", goldenV2), 1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeMap(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	st := m["stream"].(map[string]any)
	for _, k := range v2StreamKeys {
		if _, ok := st[k]; ok {
			t.Errorf("v1 payload still has %q", k)
		}
	}
	if toInt64(st["bytes_in"]) != 987654321 || toInt64(st["keyframes"]) != 9000 || st["key"] != "cam1" {
		t.Errorf("v1 payload lost shared fields: %v", st)
	}
	// And it is what a v1 build reads: the same keys as a released v1 blob.
	v1, err := decodeMap(readGolden(t, "v1", "publisher.msgpack", goldenV1).Payload)
	if err != nil {
		t.Fatal(err)
	}
	if !sameKeys(m, v1) {
		t.Errorf("down to v1 gives keys %v, released v1 has %v", keys(st), keys(v1["stream"].(map[string]any)))
	}
}

func sameKeys(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok {
			return false
		}
		ma, okA := va.(map[string]any)
		mb, okB := vb.(map[string]any)
		if okA != okB || okA && !sameKeys(ma, mb) {
			return false
		}
	}
	return true
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestConvertRefusesUnknownVersions(t *testing.T) {
	for _, tc := range []struct{ from, to uint32 }{{0, 1}, {1, 0}, {state.Version + 1, 1}, {1, state.Version + 1}} {
		_, err := Convert(state.Envelope{Kind: state.KindConn, Version: tc.from, Payload: []byte{0x80}}, tc.to)
		if err == nil {
			t.Errorf("Convert v%d→v%d succeeded", tc.from, tc.to)
		}
	}
}

// The process kind exists from version 3 on: Convert refuses to take one
// below, or to read one that claims an older version, naming the kind and
// where it starts, instead of writing a blob an older build would reject.
func TestProcessNotBeforeV3(t *testing.T) {
	env := readGolden(t, "v3", "process.msgpack", goldenV3)
	for to := Oldest; to < 3; to++ {
		_, err := Convert(env, to)
		if err == nil {
			t.Fatalf("process v3→v%d succeeded", to)
		}
		for _, want := range []string{"process", "v" + itoa(to), "v3"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("process v3→v%d error %q does not name %s", to, err, want)
			}
		}
	}
	for from := Oldest; from < 3; from++ {
		for to := Oldest; to <= state.Version; to++ {
			old := state.Envelope{Kind: state.KindProcess, Version: from, Payload: env.Payload}
			if _, err := Convert(old, to); err == nil {
				t.Errorf("process claiming v%d converted to v%d", from, to)
			}
		}
	}
	same, err := Convert(env, 3)
	if err != nil || !bytes.Equal(same.Payload, env.Payload) {
		t.Fatalf("process v3→v3 = %v, %v", same, err)
	}
}

// steps is indexed by version: one step per version from Oldest, in order,
// so that a bump of state.Version without its step fails here rather than
// as an index out of range in Convert.
func TestStepsCoverEveryVersion(t *testing.T) {
	if got, want := len(steps), int(state.Version-Oldest); got != want {
		t.Fatalf("%d steps for v%d to v%d, want %d", got, Oldest, state.Version, want)
	}
	for i, s := range steps {
		if s.from != Oldest+uint32(i) {
			t.Errorf("steps[%d] is from v%d, want v%d", i, s.from, Oldest+uint32(i))
		}
	}
}
