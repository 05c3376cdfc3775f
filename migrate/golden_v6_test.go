package migrate

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mediad/mediad/state"
)

// goldenV6 are the released version-6 blobs: every v5 blob, whose payload
// version 6 left as it was, and a publisher whose LL-HLS samples held back
// at the park wait in the file the whole park shared
// (publisher-hls-shared).
var goldenV6 = map[string]string{
	"conn-connected.msgpack":        "cf59d30371d431a07764f89c848ac49f8846dafce676b8508d3aee3d6f50dd54",
	"conn-handshake.msgpack":        "5ca8e4f82eb582bd4df80c07122b5fd7b6cee5639e49e9f0ddc6b84a46029a87",
	"conn-pending.msgpack":          "4d2462200ab81868f3162cfe1de752f3df2ff3a42a643d28dc765380818a1f04",
	"flv-player.msgpack":            "c50ce767c77b36b413c5eecfc23308885528ef592e4a9465a92963bbc6d7b29b",
	"player.msgpack":                "c91596502315ceb63facf441196d18ba07b779157d3fc338de409708890e88ac",
	"process-outbox.msgpack":        "edf53b42cfdc0a6aaeeddef06d4047dad101b02e4e73e35ec7b57d7b66109e81",
	"process.msgpack":               "28de07ff7d49c4cf8eaccfa301bd96155d858070f869e79e2fea08a381744c82",
	"publisher-hls-shared.msgpack":  "0d8716b4d790201c4253524fe1c181f3bd9ad59c1dddabf0d4f2260ee083210f",
	"publisher-hls.msgpack":         "8639d4909c1180fa99e2b8653dacb59aaa4e0e22c8c64dd66c36ac9c088ac25a",
	"publisher-norecording.msgpack": "ec3b931fd9c9dad4e636173fab8fa9474734c27567e2de152f6b91c0ec3195ee",
	"publisher-query.msgpack":       "ddb1f3be7f794e18a9859eefcb9cb72f20e77cfc1820a95479dda84b556806ef",
	"publisher.msgpack":             "7293009593d01051af6e8ebccf39f66fd2c9ecb98754d4356682723e91d94e59",
	"relay.msgpack":                 "3409492d5bc6828fdc6507d78386e7aac219d5fa75867fcc54170bcd710b7af9",
}

// current takes a released blob to this build's version, as a new process
// does before decoding it.
func current(t *testing.T, env state.Envelope) state.Envelope {
	t.Helper()
	cur, err := Convert(env, state.Version)
	if err != nil {
		t.Fatalf("%s v%d to v%d: %v", env.Kind, env.Version, state.Version, err)
	}
	return cur
}

// The shared file and its offset decode as written; the publisher is the
// released v6 LL-HLS publisher otherwise.
func TestGoldenV6SharedPending(t *testing.T) {
	var shared, own state.Publisher
	if err := state.Decode(current(t, readGolden(t, "v6", "publisher-hls-shared.msgpack", goldenV6)), &shared); err != nil {
		t.Fatal(err)
	}
	if err := state.Decode(current(t, readGolden(t, "v6", "publisher-hls.msgpack", goldenV6)), &own); err != nil {
		t.Fatal(err)
	}
	h := shared.Stream.HLS
	if h == nil || h.PendingFile != "/run/mediad/hls/1457/handoff-3.pending" || h.PendingOffset != 1843200 || len(h.Pending) == 0 {
		t.Fatalf("shared pending: %+v", h)
	}
	h.PendingFile, h.PendingOffset = "", 0
	if !reflect.DeepEqual(shared, own) {
		t.Errorf("apart from the shared file:\n got %+v\nwant %+v", shared, own)
	}
}

// Down from v6: samples in a shared file have no v5 form, and the
// refusal says so; everything else goes down to the released v5 payload.
func TestGoldenV6Down(t *testing.T) {
	shared := readGolden(t, "v6", "publisher-hls-shared.msgpack", goldenV6)
	for to := Oldest; to < 6; to++ {
		if _, err := Convert(shared, to); err == nil || !strings.Contains(err.Error(), "shared file") {
			t.Errorf("shared pending to v%d: %v, want a refusal naming the shared file", to, err)
		}
	}
	for name := range goldenV5 {
		down, err := Convert(readGolden(t, "v6", name, goldenV6), 5)
		if err != nil {
			t.Errorf("%s to v5: %v", name, err)
			continue
		}
		v5 := readGolden(t, "v5", name, goldenV5)
		got, err1 := decodeMap(down.Payload)
		want, err2 := decodeMap(v5.Payload)
		if err1 != nil || err2 != nil || down.Kind != v5.Kind || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: v6 down to v5 is not the released v5 payload:\n got %v\nwant %v", name, got, want)
		}
	}
}

// Up from v5 drops a stray key that only version 6 gives a meaning to: a
// v5 payload must not come out naming a shared file.
func TestUpV5DropsStrayPendingFile(t *testing.T) {
	env := readGolden(t, "v5", "publisher-hls.msgpack", goldenV5)
	m, err := decodeMap(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	h := m["stream"].(map[string]any)["hls"].(map[string]any)
	h["pending_file"], h["pending_offset"] = "/tmp/x", int64(5)
	env.Payload, err = encodeMap(m)
	if err != nil {
		t.Fatal(err)
	}
	var p state.Publisher
	if err := state.Decode(current(t, env), &p); err != nil {
		t.Fatal(err)
	}
	if p.Stream.HLS.PendingFile != "" || p.Stream.HLS.PendingOffset != 0 {
		t.Errorf("stray keys survived: %q at %d", p.Stream.HLS.PendingFile, p.Stream.HLS.PendingOffset)
	}
}
