package amf0

import (
	"encoding/hex"
	"math"
	"strings"
)

// vector is one canonical encoding: bytes decode (with DecodeAll) to values,
// and values encode (with AppendAll) to exactly bytes. The same table seeds
// FuzzDecode and its committed corpus.
type vector struct {
	name   string
	values []any
	bytes  []byte
	// large keeps a vector out of the fuzz seeds: the fuzzer spends its
	// time minimising mutations of 64 KiB inputs instead of exploring.
	large bool
}

// h decodes hex, ignoring spaces and newlines. It panics on a malformed
// literal, which can only be a typo in this file.
func h(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic("bad hex literal in test: " + err.Error())
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func s(text string) []byte { return []byte(text) }

// ffmpegConnect is the body of the connect command ffmpeg 5.1 (Lavf59.27.100)
// sends when publishing to rtmp://127.0.0.1:1935/live/key, captured from
// the wire and de-chunked.
var ffmpegConnect = h(`
	020007636f6e6e656374 003ff0000000000000
	03 0003617070 0200046c697665
	   000474797065 02000a6e6f6e70726976617465
	   0008666c61736856657202 0024464d4c452f332e302028636f6d70617469626c653b204c61766635392e32372e31303029
	   0005746355726c 02001a72746d703a2f2f3132372e302e302e313a313933352f6c697665
	000009`)

var ffmpegConnectValues = []any{
	"connect", 1.0, Object{
		{"app", "live"},
		{"type", "nonprivate"},
		{"flashVer", "FMLE/3.0 (compatible; Lavf59.27.100)"},
		{"tcUrl", "rtmp://127.0.0.1:1935/live"},
	},
}

// ffmpegMetadata is the script data ffmpeg 5.1 writes for a 1 s 320x240
// H.264/AAC FLV (the onMetaData payload it also sends over RTMP), prefixed
// with "@setDataFrame" as in an RTMP data message.
var ffmpegMetadata = cat(h("02000d"), s("@setDataFrame"), h(`
	02000a6f6e4d65746144617461
	08 0000000d
	0008 6475726174696f6e 00 3ff147ae147ae148
	0005 7769647468 00 4074000000000000
	0006 686569676874 00 406e000000000000
	000d 766964656f6461746172617465 00 0000000000000000
	0009 6672616d6572617465 00 4039000000000000
	000c 766964656f636f6465636964 00 401c000000000000
	000d 617564696f6461746172617465 00 4050d88000000000
	000f 617564696f73616d706c6572617465 00 40e5888000000000
	000f 617564696f73616d706c6573697a65 00 4030000000000000
	0006 73746572656f 01 00
	000c 617564696f636f6465636964 00 4024000000000000
	0007 656e636f646572 02 000d4c61766635392e32372e313030
	0008 66696c6573697a65 00 40d1e70000000000
	000009`))

var ffmpegMetadataValues = []any{
	"@setDataFrame", "onMetaData", ECMAArray{
		{"duration", 1.08},
		{"width", 320.0},
		{"height", 240.0},
		{"videodatarate", 0.0},
		{"framerate", 25.0},
		{"videocodecid", 7.0},
		{"audiodatarate", 67.3828125},
		{"audiosamplerate", 44100.0},
		{"audiosamplesize", 16.0},
		{"stereo", false},
		{"audiocodecid", 10.0},
		{"encoder", "Lavf59.27.100"},
		{"filesize", 18332.0},
	},
}

var vectors = []vector{
	{name: "number zero", values: []any{0.0}, bytes: h("00 0000000000000000")},
	{name: "number negative zero", values: []any{math.Copysign(0, -1)}, bytes: h("00 8000000000000000")},
	{name: "number 1.5", values: []any{1.5}, bytes: h("00 3ff8000000000000")},
	{name: "number minus 1.5", values: []any{-1.5}, bytes: h("00 bff8000000000000")},
	{name: "number 255", values: []any{255.0}, bytes: h("00 406fe00000000000")},
	{name: "number 256", values: []any{256.0}, bytes: h("00 4070000000000000")},
	{name: "number 1e300", values: []any{1e300}, bytes: h("00 7e37e43c8800759c")},
	{name: "number plus inf", values: []any{math.Inf(1)}, bytes: h("00 7ff0000000000000")},
	{name: "number nan", values: []any{math.Float64frombits(0x7ff8000000000001)}, bytes: h("00 7ff8000000000001")},
	{name: "boolean true", values: []any{true}, bytes: h("01 01")},
	{name: "boolean false", values: []any{false}, bytes: h("01 00")},
	{name: "string empty", values: []any{""}, bytes: h("02 0000")},
	{name: "string ascii", values: []any{"hello"}, bytes: cat(h("02 0005"), s("hello"))},
	{name: "string utf8", values: []any{"héllo"}, bytes: cat(h("02 0006"), s("héllo"))},
	{name: "string invalid utf8 kept", values: []any{"\xff\x00"}, bytes: h("02 0002 ff00")},
	{
		name: "string 65535 bytes", large: true,
		values: []any{strings.Repeat("a", 65535)},
		bytes:  cat(h("02 ffff"), s(strings.Repeat("a", 65535))),
	},
	{
		name: "long string 65536 bytes", large: true,
		values: []any{strings.Repeat("b", 65536)},
		bytes:  cat(h("0c 00010000"), s(strings.Repeat("b", 65536))),
	},
	{name: "null", values: []any{nil}, bytes: h("05")},
	{name: "undefined", values: []any{Undefined{}}, bytes: h("06")},
	{name: "object empty", values: []any{Object{}}, bytes: h("03 000009")},
	{name: "object empty key", values: []any{Object{{"", nil}}}, bytes: h("03 0000 05 000009")},
	{name: "object duplicate keys", values: []any{Object{{"a", 1.0}, {"a", 2.0}}}, bytes: h("03 000161 00 3ff0000000000000 000161 00 4000000000000000 000009")},
	{
		name: "object nested",
		values: []any{Object{
			{"a", 1.0},
			{"o", Object{{"b", true}}},
			{"arr", []any{"x", nil, Undefined{}}},
		}},
		bytes: h(`03
			0001 61 00 3ff0000000000000
			0001 6f 03 0001 62 0101 000009
			0003 617272 0a 00000003 02000178 05 06
			000009`),
	},
	{name: "ecma array empty", values: []any{ECMAArray{}}, bytes: h("08 00000000 000009")},
	{
		name:   "ecma array",
		values: []any{ECMAArray{{"width", 1280.0}, {"stereo", true}}},
		bytes:  h("08 00000002 0005 7769647468 00 4094000000000000 0006 73746572656f 0101 000009"),
	},
	{name: "strict array empty", values: []any{[]any{}}, bytes: h("0a 00000000")},
	{
		name:   "strict array nested",
		values: []any{[]any{1.0, []any{"a"}, ECMAArray{}}},
		bytes:  h("0a 00000003 00 3ff0000000000000 0a 00000001 02000161 08 00000000 000009"),
	},
	{name: "date", values: []any{Date{Millis: 1.7e12}}, bytes: h("0b 4278bcfe56800000 0000")},
	{name: "date with time zone", values: []any{Date{Millis: -1.5, TimeZone: -60}}, bytes: h("0b bff8000000000000 ffc4")},
	{name: "sequence of scalars", values: []any{"a", 2.0, nil, false}, bytes: h("02000161 00 4000000000000000 05 0100")},
	{name: "ffmpeg connect", values: ffmpegConnectValues, bytes: ffmpegConnect},
	{name: "ffmpeg setDataFrame onMetaData", values: ffmpegMetadataValues, bytes: ffmpegMetadata},
	{
		name: "connect _result",
		values: []any{
			"_result", 1.0,
			Object{{"fmsVer", "FMS/3,0,1,123"}, {"capabilities", 31.0}},
			Object{
				{"level", "status"},
				{"code", "NetConnection.Connect.Success"},
				{"description", "Connection succeeded."},
				{"objectEncoding", 0.0},
			},
		},
		bytes: cat(
			h("020007"), s("_result"), h("00 3ff0000000000000"),
			h("03 0006"), s("fmsVer"), h("02 000d"), s("FMS/3,0,1,123"),
			h("000c"), s("capabilities"), h("00 403f000000000000 000009"),
			h("03 0005"), s("level"), h("02 0006"), s("status"),
			h("0004"), s("code"), h("02 001d"), s("NetConnection.Connect.Success"),
			h("000b"), s("description"), h("02 0015"), s("Connection succeeded."),
			h("000e"), s("objectEncoding"), h("00 0000000000000000 000009"),
		),
	},
	{
		name:   "createStream _result",
		values: []any{"_result", 4.0, nil, 1.0},
		bytes:  cat(h("020007"), s("_result"), h("00 4010000000000000 05 00 3ff0000000000000")),
	},
	{
		name:   "publish",
		values: []any{"publish", 5.0, nil, "key", "live"},
		bytes:  cat(h("020007"), s("publish"), h("00 4014000000000000 05 020003"), s("key"), h("020004"), s("live")),
	},
}
