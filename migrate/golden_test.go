package migrate

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
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

// goldenV3 are the released version-3 blobs: the v2 sessions, whose
// payloads version 3 left as they were, and the process envelope version 3
// added (goldenProcess).
var goldenV3 = map[string]string{
	"conn-connected.msgpack":        "c8fc3636f3df4921ce17ad1f1d449b1cf70b4745ddec98868fdcf3750f63cf9b",
	"conn-handshake.msgpack":        "127522dcece732e283f4a8b3c92e7027467a5e5c1d2db3901c9a239d88c1379e",
	"player.msgpack":                "78f5c430cc32765884bf572d618b6453e3b67f6d8aaaa2e66e4a54ba6dd6a17e",
	"process.msgpack":               "7e9a4f7bc71a6b554c6be0c37d35a84774c6de9ca3ef0d7b6745d01ddd218bc5",
	"publisher-norecording.msgpack": "2d249ab8e2d52b5cd94713df462f9300884e4c6672067ce3e968fa829ba37e75",
	"publisher.msgpack":             "96576afaa9708c222dc0538193548f451c2122a60d9ed04a74ceacd8997a3ba7",
}

// released maps each released state version to its blobs' hashes.
var released = map[string]map[string]string{"v1": goldenV1, "v2": goldenV2, "v3": goldenV3, "v4": goldenV4, "v5": goldenV5, "v6": goldenV6, "v7": goldenV7, "v8": goldenV8}

// goldenProcess is what testdata/state/v3/process.msgpack holds: the fifth
// process of a service, sending its memory to the sixth. Of five upgrades
// three succeeded, one failed before commit and one was refused at hello;
// the history keeps the last three. Histogram counts are cumulative.
func goldenProcess() state.Process {
	return state.Process{
		ServiceStart:     1795000000000000000,
		Generation:       4,
		BytesIn:          7301245118902,
		BytesOut:         21904117356044,
		SessionsAccepted: 58213,
		UpgradeCounts:    map[string]uint64{"success": 3, "failed": 1, "refused": 1},
		SessionsMoved:    34,
		UpgradeSeconds: state.Histogram{
			Bounds: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
			Counts: []uint64{1, 1, 1, 1, 1, 1, 3, 4, 5, 5, 5, 5},
			Count:  5,
			Sum:    2.8572,
		},
		StallSeconds: state.Histogram{
			Bounds: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
			Counts: []uint64{0, 6, 17, 25, 31, 32, 32, 32, 32, 32, 32},
			Count:  32,
			Sum:    0.2417,
		},
		Upgrades: []state.Upgrade{
			{Outcome: "refused", Error: "no common state version: new binary reads v4 to v6, this one v1 to v3",
				Started: 1795086400000000000, DurationMS: 2.1, OldPID: 1388, NewPID: 1422, OldVersion: "v0.10.0", NewVersion: "v0.14.0", StateVersion: 0},
			{Outcome: "failed", Error: "new process exited before commit: exit status 2",
				Started: 1795172800000000000, DurationMS: 1503.2, OldPID: 1388, NewPID: 1431, OldVersion: "v0.10.0", NewVersion: "v0.11.0-rc1", StateVersion: 3},
			{Outcome: "success", Started: 1795259200000000000, DurationMS: 388, OldPID: 1388, NewPID: 1457, OldVersion: "v0.10.0", NewVersion: "v0.11.0",
				StateVersion: 3, SessionsMoved: 14, StallP50MS: 2.7, StallP99MS: 15.2, WorstStallMS: 19.8, Stalls: 13},
		},
		Current: state.Upgrade{Started: 1795345600000000000, OldPID: 1457, NewPID: 1502, OldVersion: "v0.11.0", NewVersion: "v0.11.1", StateVersion: 3, SessionsMoved: 5},
	}
}

func readGolden(t testing.TB, version, name string, hashes map[string]string) state.Envelope {
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

// TestGoldenSessionsDecode reads every released session blob at the
// current version and checks the fields a session cannot lose.
func TestGoldenSessionsDecode(t *testing.T) {
	for v := Oldest; v <= state.Version; v++ {
		t.Run("v"+itoa(v), func(t *testing.T) { checkGoldenSessions(t, v) })
	}
}

func checkGoldenSessions(t *testing.T, v uint32) {
	version := "v" + itoa(v)
	decode := func(name string, val any) {
		t.Helper()
		env, err := Convert(readGolden(t, version, name, released[version]), state.Version)
		if err != nil {
			t.Fatal(err)
		}
		if err := state.Decode(env, val); err != nil {
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
	// The statistics exist from version 2 on; what up derives for a v1
	// blob is TestUpV1Publisher's.
	if v >= 2 && (st.VideoBytes != 900000000 || st.AudioBytes != 87654321 || st.Encoder != "obs-output module (libobs version 30.1.2)" ||
		st.TracksSince != 1795000000000000000 || len(st.RateBuckets) != state.RateWindow || st.RateBuckets[1] != 262144 || st.RateSecond != 1795000300) {
		t.Errorf("publisher statistics: %+v", st)
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

// TestGoldenProcessDecode reads the released process blob at the current
// version.
func TestGoldenProcessDecode(t *testing.T) {
	env, err := Convert(readGolden(t, "v3", "process.msgpack", goldenV3), state.Version)
	if err != nil {
		t.Fatal(err)
	}
	if env.Kind != state.KindProcess {
		t.Fatalf("process.msgpack holds kind %q", env.Kind)
	}
	var p state.Process
	if err := state.Decode(env, &p); err != nil {
		t.Fatal(err)
	}
	if want := goldenProcess(); !reflect.DeepEqual(p, want) {
		t.Fatalf("process.msgpack:\n got %+v\nwant %+v", p, want)
	}
}

// Version 3 changed no session: its session blobs carry the v2 payloads
// byte for byte, and going down gives exactly what v2 and v1 builds wrote.
func TestGoldenV3SessionsAreV2(t *testing.T) {
	for name := range goldenV3 {
		if name == "process.msgpack" {
			continue
		}
		v3 := readGolden(t, "v3", name, goldenV3)
		v2 := readGolden(t, "v2", name, goldenV2)
		if v3.Kind != v2.Kind || !bytes.Equal(v3.Payload, v2.Payload) {
			t.Errorf("%s: v3 %s payload differs from v2 %s", name, v3.Kind, v2.Kind)
		}
		for _, old := range []struct {
			version string
			env     state.Envelope
		}{{"v2", v2}, {"v1", readGolden(t, "v1", name, goldenV1)}} {
			down, err := Convert(v3, old.env.Version)
			if err != nil {
				t.Fatalf("%s to %s: %v", name, old.version, err)
			}
			got, err := decodeMap(down.Payload)
			if err != nil {
				t.Fatal(err)
			}
			want, err := decodeMap(old.env.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if down.Kind != old.env.Kind || down.Version != old.env.Version || !reflect.DeepEqual(got, want) {
				t.Errorf("%s: v3 down to %s differs from the released %s blob:\n got %v\nwant %v", name, old.version, old.version, got, want)
			}
		}
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
