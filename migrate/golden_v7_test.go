package migrate

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/mediad/mediad/state"
)

// goldenV7 are the released version-7 blobs: every v6 blob, whose payload
// version 7 left as it was, and two keep-alive connections of the media
// listener: one whose blocking reload was waiting at the park
// (goldenHTTPConnWaiting), one on which no request had come yet
// (goldenHTTPConnFresh).
var goldenV7 = map[string]string{
	"conn-connected.msgpack":        "f57235a2f33ad3b7aa33e15365049fcb5712448c8f7bafc684acfce1edb433e8",
	"conn-handshake.msgpack":        "e4ccd00fbd7bd3ee32c0bb11e6ed75159acde97738e25ebe3c617363d277b644",
	"conn-pending.msgpack":          "b7a6e5f84128f4296ba830a78807afcbb07127f67e55c057a940eae1bb7c7b40",
	"flv-player.msgpack":            "ef1151ab5adce9264a21acd94e5229de966463410f7cfcff34211306a84dfdc8",
	"http-conn-fresh.msgpack":       "1295eb1abd1b521db3049f6e18803d6221e597b66f7e488f6874e63ffe84e56c",
	"http-conn-waiting.msgpack":     "a7688e3eba6dc820198aa998f4b9b82804419b1818f693ab31eb02ab0f43d401",
	"player.msgpack":                "9bdfaed665e22036f9e1f42b2c419bbd93219689a659b1d770e6e49990e871be",
	"process-outbox.msgpack":        "42f977ea27cacc87997b1131f6548f500087280dce4da78555130a61dbfb031d",
	"process.msgpack":               "2c264d9031616fd3b1b9a3d8d9ca2343ba9655a3db4ec1cda94c7b60c1e78b24",
	"publisher-hls-shared.msgpack":  "908f244ee91ad94d03567451f19693e940622ceb4396affb311b6751e6ba4991",
	"publisher-hls.msgpack":         "95ee758ccc30283e103a388b8c8dcfeb550c118bc6583b454fa104153a0c0407",
	"publisher-norecording.msgpack": "295c8261e0e698fe483b61acf7b2d17a3dd28f5dea69622737641c1934bef66e",
	"publisher-query.msgpack":       "916499aa9c7bac1d808ba2127b39bfdd11b3a98b0856839d4def7dca6efc6a2d",
	"publisher.msgpack":             "33c728c4d927412f91500b3a763e81e8fe99b772f2d4fd50cc73abb5bbf8e9f4",
	"relay.msgpack":                 "48564b063ffdb9e3a7fa655351a23b59c53d0bde953c52f0c1b3586747c32ace",
}

// goldenHTTPConn holds what the http-conn blobs of v7 decode to.
var goldenHTTPConn = map[string]state.HTTPConn{
	// A viewer's blocking reload of the playlist, waiting for part 2 of
	// segment 1843 when the park came, written again as the client sent
	// it.
	"http-conn-waiting.msgpack": {ID: 41, Peer: "198.51.100.7:52814",
		Unread: []byte("GET /live/test/index.m3u8?_HLS_msn=1843&_HLS_part=2 HTTP/1.1\r\nHost: media.example:8888\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n")},
	// A connection accepted just before the park, with nothing read.
	"http-conn-fresh.msgpack": {ID: 42, Peer: "198.51.100.9:40022", Fresh: true},
}

func TestGoldenV7HTTPConn(t *testing.T) {
	for name, want := range goldenHTTPConn {
		env := current(t, readGolden(t, "v7", name, goldenV7))
		if env.Kind != state.KindHTTPConn {
			t.Fatalf("%s holds kind %q", name, env.Kind)
		}
		var got state.HTTPConn
		if err := state.Decode(env, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
		}
	}
}

// Down from v7: an HTTP connection has no older form, and the refusal
// names the kind and the version it starts at; everything else goes down
// to the released v6 payload.
func TestGoldenV7Down(t *testing.T) {
	for name := range goldenHTTPConn {
		env := readGolden(t, "v7", name, goldenV7)
		for to := Oldest; to < 7; to++ {
			_, err := Convert(env, to)
			if err == nil {
				t.Errorf("%s went down to v%d, which has no form of it", name, to)
				continue
			}
			for _, want := range []string{string(state.KindHTTPConn), "v7"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s to v%d: error %q does not name %s", name, to, err, want)
				}
			}
		}
	}
	for name := range goldenV7 {
		if _, ok := goldenHTTPConn[name]; ok {
			continue
		}
		down, err := Convert(readGolden(t, "v7", name, goldenV7), 6)
		if err != nil {
			t.Errorf("%s to v6: %v", name, err)
			continue
		}
		v6 := readGolden(t, "v6", name, goldenV6)
		got, err1 := decodeMap(down.Payload)
		want, err2 := decodeMap(v6.Payload)
		if err1 != nil || err2 != nil || down.Kind != v6.Kind || down.Version != 6 || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: v7 down to v6 is not the released v6 payload:\n got %v\nwant %v", name, got, want)
		}
	}
}

// Version 7 changed no existing payload: its blobs for the v6 kinds carry
// the v6 payloads byte for byte, and up from v6 changes nothing but the
// version.
func TestGoldenV7KeepsV6Payloads(t *testing.T) {
	if len(goldenV7) != len(goldenV6)+len(goldenHTTPConn) {
		t.Errorf("%d v7 blobs, want the %d of v6 and %d HTTP connections", len(goldenV7), len(goldenV6), len(goldenHTTPConn))
	}
	for name := range goldenV6 {
		v6 := readGolden(t, "v6", name, goldenV6)
		v7 := readGolden(t, "v7", name, goldenV7)
		if v7.Kind != v6.Kind || !bytes.Equal(v7.Payload, v6.Payload) {
			t.Errorf("%s: v7 %s payload differs from v6 %s", name, v7.Kind, v6.Kind)
		}
		up, err := Convert(v6, 7)
		if err != nil {
			t.Errorf("%s: up to v7: %v", name, err)
			continue
		}
		got, err1 := decodeMap(up.Payload)
		want, err2 := decodeMap(v7.Payload)
		if err1 != nil || err2 != nil || up.Kind != v7.Kind || up.Version != 7 || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: v6 up to v7 is not the released v7 payload:\n got %v\nwant %v", name, got, want)
		}
	}
}
