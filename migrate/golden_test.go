package migrate

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/mediad/mediad/state"
)

// goldenV1 are the released version-1 blobs: the contract with every
// binary that writes v1. They are never regenerated; a changed or missing
// blob fails here.
var goldenV1 = map[string]string{
	"conn-connected.msgpack":        "0155a27b4776d0205f41d22a98dea3b7a293aafdcef48fbb8b1f0d36f06b7bfa",
	"conn-handshake.msgpack":        "c13f0fbbeb233b3687185778869f71ec6e27b5d5b027d7d5fbae900a639e988c",
	"player.msgpack":                "c7e0f73e57b8fad8ad5e1d54a6a5abeeb4b0ef6065481665f6181c26ca4f1cd5",
	"publisher-norecording.msgpack": "d1af2833fc0b85774a72eca54a1e42de95e5dff1b7ee85d1ced257dc28bdaa8f",
	"publisher.msgpack":             "a0e1dcc8ba826871917a76e7ba2f917e48b1840afac0dab3410be97205334576",
}

// goldenV2 are the released version-2 blobs: the same sessions as v1, with
// the statistics version 2 added.
var goldenV2 = map[string]string{
	"conn-connected.msgpack":        "5e99942e2132c1c5f0d46c4662b24b124a76478b67a6c0042db0ac4a769ec691",
	"conn-handshake.msgpack":        "fb6cd4823f2018ef3298cc5888b6d36ececccd86e14e66a999070abd85c21650",
	"player.msgpack":                "02b4747aa383e68f72ec2ca73c0c980a19f3f560a7f607702d306c2e0bd6f383",
	"publisher-norecording.msgpack": "5e09da037c16cb30aa397244c6a320f106471b35478fd193d37a64f8de3fad83",
	"publisher.msgpack":             "1dd868a61e18655c180e29c87e7c163ba3ebeb7f111552fe9400d7a4cc926dce",
}

// released maps each released state version to its blobs' hashes.
var released = map[string]map[string]string{"v1": goldenV1, "v2": goldenV2}

func readGolden(t *testing.T, version, name string, hashes map[string]string) state.Envelope {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "state", version, name))
	if err != nil {
		t.Fatalf("released blob missing: %v", err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != hashes[name] {
		t.Fatalf("%s/%s changed: sha256 %s, released %s", version, name, got, hashes[name])
	}
	env, err := state.UnmarshalEnvelope(b)
	if err != nil {
		t.Fatalf("%s/%s: %v", version, name, err)
	}
	return env
}

func TestGoldenUnchanged(t *testing.T) {
	for v := Oldest; v <= state.Version; v++ {
		version := "v" + itoa(v)
		hashes, ok := released[version]
		if !ok {
			t.Fatalf("state version %d has no released golden blobs", v)
		}
		entries, err := os.ReadDir(filepath.Join("..", "testdata", "state", version))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(hashes) {
			t.Errorf("testdata/state/%s holds %d blobs, %d released", version, len(entries), len(hashes))
		}
		for name := range hashes {
			env := readGolden(t, version, name, hashes)
			if env.Version != v {
				t.Errorf("%s/%s: version %d", version, name, env.Version)
			}
		}
	}
}

// TestGoldenV1Decode reads every v1 blob at the current version and checks
// the fields a session cannot lose.
func TestGoldenV1Decode(t *testing.T) {
	decode := func(name string, v any) {
		t.Helper()
		env, err := Convert(readGolden(t, "v1", name, goldenV1), state.Version)
		if err != nil {
			t.Fatal(err)
		}
		if err := state.Decode(env, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	var hs state.Session
	decode("conn-handshake.msgpack", &hs)
	if hs.ID != 7 || hs.HandshakePhase != 0 || len(hs.HandshakePartial) != 100 || hs.HandshakePartial[0] != 3 || hs.Reader.ChunkSize != 128 {
		t.Errorf("conn-handshake: %+v", hs)
	}
	var conn state.Session
	decode("conn-connected.msgpack", &conn)
	checkSession(t, "conn-connected", conn, 4)

	var pub state.Publisher
	decode("publisher.msgpack", &pub)
	checkSession(t, "publisher", pub.Session, 1)
	st := pub.Stream
	if pub.Msid != 1 || st.App != "live" || st.Key != "cam1" || st.BytesIn != 987654321 || st.VideoFrames != 540000 ||
		st.AudioFrames != 775000 || st.Keyframes != 9000 || st.Started != 1795000000000000000 || len(st.VideoSeq) != 24 || len(st.AudioSeq) != 4 {
		t.Errorf("publisher stream: %+v", st)
	}
	r := st.Recorder
	if r == nil || !r.HasFile || r.Offset != 734003200 || r.SegmentStartTS != 0xFFFFFF-100 || r.SegmentDuration != 3600e9 ||
		len(r.Segments) != 2 || r.Path != r.Segments[1] || !r.Started || !r.SawVideo {
		t.Errorf("publisher recorder: %+v", r)
	}
	var norec state.Publisher
	decode("publisher-norecording.msgpack", &norec)
	if norec.Stream.Recorder != nil || norec.Stream.Key != "norec" {
		t.Errorf("publisher-norecording: %+v", norec.Stream)
	}

	var pl state.Player
	decode("player.msgpack", &pl)
	checkSession(t, "player", pl.Session, 3)
	if pl.App != "live" || pl.Key != "cam1" || pl.Skips != 1 || pl.WaitKey || len(pl.Queue) != 4 {
		t.Fatalf("player: %+v", pl)
	}
	q := pl.Queue
	if q[0].Type != 20 || q[0].Kind != 2 || q[0].CSID != 3 || q[2].TS != 0xFFFFFF+66 || !q[2].Key || !q[3].Msid0 || q[3].Type != 4 {
		t.Errorf("player queue: %+v", q)
	}
}

func checkSession(t *testing.T, name string, s state.Session, id uint64) {
	t.Helper()
	rd := s.Reader
	if s.ID != id || s.HandshakePhase != 2 || !s.Connected || s.App != "live" || s.NextMsid != 2 || s.AckWindow != 2500000 ||
		s.LastAck != 122500000 || s.LastRead != 1795000000123456789 || s.Writer.ChunkSize != 4096 || len(s.Out) != 3 {
		t.Errorf("%s session: %+v", name, s)
	}
	if rd.ChunkSize != 4096 || rd.BytesRead != 123456789 || len(rd.Header) != 1 || len(rd.Streams) != 3 {
		t.Fatalf("%s reader: %+v", name, rd)
	}
	v := rd.Streams[2]
	if v.CSID != 6 || !v.Active || v.Length != 9000 || len(v.Partial) != 11 || v.Delta != 33 || rd.Streams[1].Extended != true {
		t.Errorf("%s chunk streams: %+v", name, rd.Streams)
	}
}
