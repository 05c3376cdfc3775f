package state

import (
	"errors"
	"reflect"
	"testing"
)

func TestCheckMsgpack(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		n    int
		bad  bool
	}{
		{"positive fixint", []byte{0x05}, 1, false},
		{"fixstr", []byte{0xa3, 'a', 'b', 'c'}, 4, false},
		{"fixstr short", []byte{0xa3, 'a'}, 0, true},
		{"fixmap", []byte{0x81, 0xa1, 'k', 0x01}, 4, false},
		{"fixarray nested", []byte{0x92, 0x91, 0xc0, 0xc3}, 4, false},
		{"bin32 claiming 4 GiB", []byte{0xc6, 0xff, 0xff, 0xff, 0x00, 1, 2, 3}, 0, true},
		{"array32 claiming 2^32 elements", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0}, 0, true},
		{"map16 claiming more pairs than bytes", []byte{0xde, 0x00, 0x10, 0xc0, 0xc0}, 0, true},
		{"float64", []byte{0xcb, 0, 0, 0, 0, 0, 0, 0, 0}, 9, false},
		{"float64 short", []byte{0xcb, 0, 0}, 0, true},
		{"ext8", []byte{0xc7, 0x02, 0x05, 1, 2}, 5, false},
		{"fixext4", []byte{0xd6, 0x01, 1, 2, 3, 4}, 6, false},
		{"never used 0xc1", []byte{0xc1}, 0, true},
		{"empty", nil, 0, true},
	}
	for _, tc := range cases {
		n, err := CheckMsgpack(tc.in)
		if tc.bad != (err != nil) || n != tc.n {
			t.Errorf("%s: CheckMsgpack = %d, %v", tc.name, n, err)
		}
	}
	deep := make([]byte, 0, 100)
	for range 40 {
		deep = append(deep, 0x91)
	}
	deep = append(deep, 0xc0)
	if _, err := CheckMsgpack(deep); err == nil {
		t.Error("40 levels of nesting accepted")
	}
}

func samplePublisher() Publisher {
	return Publisher{
		Session: Session{ID: 9, Peer: "127.0.0.1:1", HandshakePhase: 2, Connected: true, App: "live",
			Reader: ChunkReader{ChunkSize: 4096, Streams: []ChunkStream{{CSID: 6, Length: 10, Active: true, Partial: []byte{1, 2}}}},
			Writer: ChunkWriter{ChunkSize: 4096}, Out: []byte{9}},
		Msid: 1,
		Stream: Stream{App: "live", Key: "k", Metadata: []byte{2}, VideoBytes: 5, Encoder: "obs", RateBuckets: []uint64{1, 2, 3}, RateSecond: 77,
			Recorder: &Recorder{Path: "/r/x.flv", Offset: 13, HasFile: true, Segments: []string{"/r/x.flv"}}},
	}
}

// roundTrip takes v of kind through Encode, the wire form and Decode.
func roundTrip[T any](t *testing.T, kind Kind, v T) Envelope {
	t.Helper()
	env, err := Encode(kind, v)
	if err != nil {
		t.Fatal(err)
	}
	if env.Kind != kind || env.Version != Version {
		t.Fatalf("Encode gave %s v%d", env.Kind, env.Version)
	}
	wire, err := MarshalEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	env2, err := UnmarshalEnvelope(wire)
	if err != nil {
		t.Fatal(err)
	}
	var got T
	if err := Decode(env2, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, v)
	}
	return env2
}

func TestEnvelopeRoundTrip(t *testing.T) {
	env := roundTrip(t, KindPublisher, samplePublisher())
	env.Version = Version + 1
	var got Publisher
	if err := Decode(env, &got); !errors.Is(err, ErrVersion) {
		t.Fatalf("Decode of a future version: %v", err)
	}
}

func sampleProcess() Process {
	return Process{
		ServiceStart: 1795000000000000000, Generation: 3, BytesIn: 1 << 40, BytesOut: 3 << 40, SessionsAccepted: 12345,
		UpgradeCounts: map[string]uint64{"success": 2, "refused": 1}, SessionsMoved: 40,
		UpgradeSeconds: Histogram{Bounds: []float64{0.1, 1}, Counts: []uint64{1, 2}, Count: 3, Sum: 12.5},
		StallSeconds:   Histogram{Bounds: []float64{0.001, 0.01}, Counts: []uint64{30, 39}, Count: 40, Sum: 0.21},
		Upgrades: []Upgrade{{Outcome: "success", Started: 1795000100000000000, DurationMS: 812.5, OldPID: 10, NewPID: 11,
			OldVersion: "a", NewVersion: "b", StateVersion: 3, SessionsMoved: 20, StallP50MS: 2.5, StallP99MS: 9, WorstStallMS: 11, Stalls: 18}},
		Current: Upgrade{Outcome: "refused", Error: "no common state version", OldPID: 11, NewPID: 12, StateVersion: 3},
	}
}

func TestProcessRoundTrip(t *testing.T) {
	roundTrip(t, KindProcess, sampleProcess())
}

// sampleHTTPConn is a keep-alive connection parked with a blocking reload
// waiting and the start of the client's next request behind it.
func sampleHTTPConn() HTTPConn {
	return HTTPConn{ID: 41, Peer: "198.51.100.7:52814",
		Unread: []byte("GET /live/cam1/index.m3u8?_HLS_msn=12&_HLS_part=3 HTTP/1.1\r\nHost: h\r\n\r\nGET /live/cam1/seg12.")}
}

func TestHTTPConnRoundTrip(t *testing.T) {
	roundTrip(t, KindHTTPConn, sampleHTTPConn())
	// A fresh connection has read nothing: nil, not an empty slice, comes
	// back.
	roundTrip(t, KindHTTPConn, HTTPConn{ID: 42, Peer: "198.51.100.9:40022", Fresh: true})
}

// FuzzUnmarshalEnvelope: arbitrary bytes never panic, and whatever decodes
// decodes into every kind without panicking either.
func FuzzUnmarshalEnvelope(f *testing.F) {
	p := samplePublisher()
	env, _ := Encode(KindPublisher, p)
	wire, _ := MarshalEnvelope(env)
	f.Add(wire)
	f.Add(env.Payload)
	penv, _ := Encode(KindProcess, sampleProcess())
	pwire, _ := MarshalEnvelope(penv)
	f.Add(pwire)
	f.Add(penv.Payload)
	henv, _ := Encode(KindHTTPConn, sampleHTTPConn())
	hwire, _ := MarshalEnvelope(henv)
	f.Add(hwire)
	f.Add(henv.Payload)
	benv, _ := Encode(KindBase, PublisherBase(&p))
	f.Add(benv.Payload)
	f.Add([]byte{0xc6, 0xff, 0xff, 0xff, 0x00})
	f.Add([]byte{0x83, 0xa4, 'k', 'i', 'n', 'd', 0xa4, 'c', 'o', 'n', 'n'})
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, err := UnmarshalEnvelope(b); err == nil {
			if _, err := MarshalEnvelope(e); err != nil {
				t.Fatalf("re-marshal: %v", err)
			}
		}
		e := Envelope{Kind: KindPublisher, Version: Version, Payload: b}
		var pub Publisher
		_ = Decode(e, &pub)
		var pl Player
		_ = Decode(e, &pl)
		var s Session
		_ = Decode(e, &s)
		var proc Process
		_ = Decode(e, &proc)
		var hc HTTPConn
		_ = Decode(e, &hc)
		var base Base
		if Decode(e, &base) == nil {
			// Whatever a base decodes to fills a tail or says why not.
			_ = base.FillPublisher(&Publisher{})
			_ = base.FillPlayer(&Player{})
		}
	})
}
