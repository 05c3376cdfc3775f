package migrate

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/mediad/mediad/state"
)

// goldenV5 are the released version-5 blobs: the v4 kinds, whose payloads
// version 5 left as they were, a connected push relay (goldenRelay), a
// process whose webhook outbox holds two notifications
// (goldenProcessOutbox), a connection whose publish waits for its
// on_publish webhook (goldenConnPending) and a publisher whose stream keeps
// its query and address for the webhooks.
var goldenV5 = map[string]string{
	"conn-connected.msgpack":        "5524c61e3aadae5f72840737fa756640c6cc0e0af2c40ea17f58adf6f4991d16",
	"conn-handshake.msgpack":        "17c754561904e98077a9d449b72f9e8086926da49d692879df0898fae91aa0ad",
	"conn-pending.msgpack":          "d3cc3093df1d74235735193a19e37da7703928cd446438700e7fd2f5a13856be",
	"flv-player.msgpack":            "b1764ba171e5656e31e37f3779ba0a7e9ba09b7a9e98edc6d8ad68ee209f7c05",
	"player.msgpack":                "d8ea72925f63f7c735e14c97f54df89ddb87a54358da1c30aada1dfdaf235b09",
	"process-outbox.msgpack":        "3894fd0740c32b8d47200595efd5819ceb243088c24787b5ae021a47fb36b32b",
	"process.msgpack":               "c312cfba7994dd014b128c35b61b281814be15e65201d19e99beb0e121c33700",
	"publisher-hls.msgpack":         "839a629b207de9d20ec1bb0c56c3c899c66088386df62297a33eaea7f870bba4",
	"publisher-norecording.msgpack": "18e66d138cee128b96c180e7b5fa4f2bcf4964816bc02f5a279fed8b44f85fc3",
	"publisher-query.msgpack":       "199e6e848180332f731ed83ef6ce5e449a617d6a37462a60b8f1063d8185a34b",
	"publisher.msgpack":             "449b3476d5a4bd6781a74a61991f4407d208248b8d8f242f8f9f46bbb58227a0",
	"relay.msgpack":                 "0fe7da071dbd4eb655b91df2d1dacf5298f8471ee34562765c8d76d5d9b17ffe",
}

// refusedBelow holds the blobs whose state has no form in older versions
// although their kind does: going below the version is refused, naming
// why.
var refusedBelow = map[string]uint32{
	"process-outbox.msgpack":       5,
	"conn-pending.msgpack":         5,
	"publisher-hls-shared.msgpack": 6,
}

// goldenRelay is testdata/state/v5/relay.msgpack: a relay to a downstream
// nginx, with the tail of a video chunk unwritten, three messages queued,
// and a life of two reconnects.
func goldenRelay() state.Relay {
	return state.Relay{
		Session: state.Session{
			ID: 21, Peer: "192.0.2.10:1935", HandshakePhase: 2,
			Reader:    state.ChunkReader{ChunkSize: 4096, BytesRead: 3532},
			Writer:    state.ChunkWriter{ChunkSize: 4096},
			Out:       []byte{0x46, 0, 0, 0, 0x17, 1},
			Connected: true, App: "live", TCURL: "rtmp://192.0.2.10:1935/live", NextMsid: 1,
			AckWindow: 5000000, LastAck: 0,
		},
		App: "live", Key: "cam1", URL: "rtmp://192.0.2.10:1935/live/cam1?token=x", Msid: 1,
		Queue: []state.QueuedMessage{
			{Type: 9, Kind: 0, Key: true, TS: 0xFFFFFF + 200, Payload: []byte{0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88}},
			{Type: 8, Kind: 0, TS: 0xFFFFFF + 210, Payload: []byte{0xaf, 1, 0x21}},
			{Type: 18, Kind: 1, Payload: []byte{2, 0, 10, 'o', 'n', 'M', 'e', 't', 'a', 'D', 'a', 't', 'a'}},
		},
		BytesOut: 7340032123, Drops: 3, Reconnects: 2, LastError: "connection closed by peer",
		Connected: 1795000100000000000,
	}
}

// goldenProcessOutbox is testdata/state/v5/process-outbox.msgpack: the v3
// process with two notifications owed, one of them retried twice.
func goldenProcessOutbox() state.Process {
	p := goldenProcess()
	p.Outbox = &state.Outbox{
		Pending: []state.Notification{
			{ID: "6f1c0a9e2b7d4e31a8c5f0d2b9e47a16", Event: "on_record_done", Lane: "live/cam1",
				Body:    []byte(`{"event":"on_record_done","app":"live","key":"cam1","path":"/var/lib/mediad/recordings/live/cam1/20261205T120000Z.flv"}`),
				Created: 1795000200000000000, Attempts: 2, NextAttempt: 1795000204000000000},
			{ID: "0d4b8e2f7a1c4c6b9e3f5a7d1b2c8e90", Event: "on_publish_done", Lane: "live/cam1",
				Body: []byte(`{"event":"on_publish_done","app":"live","key":"cam1"}`), Created: 1795000201000000000},
		},
		Counts: state.WebhookCounts{Delivered: 1042, Retries: 17, Dropped: 1, DecideAllowed: 311, DecideRefused: 4, DecideErrors: 2},
	}
	return p
}

// goldenConnPending is testdata/state/v5/conn-pending.msgpack: a connected
// client whose publish waits for the on_publish webhook.
func goldenConnPending() state.Session {
	return state.Session{
		ID: 33, Peer: "203.0.113.50:41000", HandshakePhase: 2,
		Reader: state.ChunkReader{ChunkSize: 4096, BytesRead: 3800}, Writer: state.ChunkWriter{ChunkSize: 4096},
		Connected: true, App: "live", TCURL: "rtmp://example.net/live", FlashVer: "FMLE/3.0 (compatible; FMSc/1.0)",
		NextMsid: 2, AckWindow: 2500000,
		Pending: &state.PendingCommand{Msid: 1, Name: "cam9?token=abc"},
	}
}

func TestGoldenV5NewState(t *testing.T) {
	var rs state.Relay
	if err := state.Decode(current(t, readGolden(t, "v5", "relay.msgpack", goldenV5)), &rs); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rs, goldenRelay()) {
		t.Errorf("relay: %+v", rs)
	}
	var p state.Process
	if err := state.Decode(current(t, readGolden(t, "v5", "process-outbox.msgpack", goldenV5)), &p); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, goldenProcessOutbox()) {
		t.Errorf("process with outbox: %+v", p)
	}
	var c state.Session
	if err := state.Decode(current(t, readGolden(t, "v5", "conn-pending.msgpack", goldenV5)), &c); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, goldenConnPending()) {
		t.Errorf("pending conn: %+v", c)
	}
	var pub state.Publisher
	if err := state.Decode(current(t, readGolden(t, "v5", "publisher-query.msgpack", goldenV5)), &pub); err != nil {
		t.Fatal(err)
	}
	if pub.Stream.Query != "token=s3cret&room=7" || pub.Stream.PublisherAddr != "198.51.100.23:50123" || pub.Stream.Key != "cam1" {
		t.Errorf("publisher query: %+v", pub.Stream)
	}
}

// Down from v5: a relay has no older form; an owed notification or a
// pending publish refuses the downgrade, saying why; a publisher loses its
// query and address and is the released v4 publisher again; an empty
// outbox goes.
func TestGoldenV5Down(t *testing.T) {
	relay := readGolden(t, "v5", "relay.msgpack", goldenV5)
	for to := Oldest; to < 5; to++ {
		if _, err := Convert(relay, to); err == nil || !strings.Contains(err.Error(), "relay") {
			t.Errorf("relay to v%d: %v", to, err)
		}
	}
	for name, want := range map[string]string{"process-outbox.msgpack": "webhook notifications", "conn-pending.msgpack": "waiting for its webhook"} {
		if _, err := Convert(readGolden(t, "v5", name, goldenV5), 4); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s to v4: %v, want an error naming %q", name, err, want)
		}
	}
	down, err := Convert(readGolden(t, "v5", "publisher-query.msgpack", goldenV5), 4)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := decodeMap(down.Payload)
	want, _ := decodeMap(readGolden(t, "v4", "publisher.msgpack", goldenV4).Payload)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("v5 publisher with query down to v4:\n got %v\nwant %v", got, want)
	}
	p := goldenProcess()
	p.Outbox = &state.Outbox{Counts: state.WebhookCounts{Delivered: 5}}
	env, _ := state.Encode(state.KindProcess, p)
	down, err = Convert(env, 4)
	if err != nil {
		t.Fatalf("process with an empty outbox to v4: %v", err)
	}
	got, _ = decodeMap(down.Payload)
	if _, ok := got["outbox"]; ok {
		t.Errorf("empty outbox kept in v4: %v", got["outbox"])
	}
}

// Version 5 changed no existing payload: its blobs for the v4 kinds carry
// the v4 payloads byte for byte.
func TestGoldenV5KeepsV4Payloads(t *testing.T) {
	for name := range goldenV4 {
		v5 := readGolden(t, "v5", name, goldenV5)
		v4 := readGolden(t, "v4", name, goldenV4)
		if v5.Kind != v4.Kind || !bytes.Equal(v5.Payload, v4.Payload) {
			t.Errorf("%s: v5 %s payload differs from v4 %s", name, v5.Kind, v4.Kind)
		}
	}
}
