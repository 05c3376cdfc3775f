package main

import (
	"encoding/binary"
	"testing"
)

func box(typ string, body ...[]byte) []byte {
	n := 8
	for _, b := range body {
		n += len(b)
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(n))
	out = append(out, typ...)
	for _, b := range body {
		out = append(out, b...)
	}
	return out
}

func u32(v ...uint32) []byte {
	var out []byte
	for _, x := range v {
		out = binary.BigEndian.AppendUint32(out, x)
	}
	return out
}

func TestFirstSync(t *testing.T) {
	init := testInit(t)
	vt, ok := parseInit(init)
	if !ok || vt.id != 1 {
		t.Fatalf("parseInit: %+v %v", vt, ok)
	}
	// trun with first_sample_flags (0x04); tfhd with default flags (0x20).
	trunFirst := func(flags uint32) []byte {
		return box("trun", u32(0x000005, 2, 100, flags))
	}
	tfhd := func(id, flags uint32) []byte { return box("tfhd", u32(0x020020, id, flags)) }
	tests := []struct {
		name string
		part []byte
		want syncState
	}{
		{"mediacommon keyframe part", testPart(t, true, false), syncYes},
		{"mediacommon inter part", testPart(t, false, false), syncNo},
		{"audio traf first", testPart(t, true, true), syncYes},
		{"audio traf first, inter", testPart(t, false, true), syncNo},
		{"first_sample_flags sync", box("moof", box("traf", tfhd(1, sampleIsNonSync), trunFirst(0x02000000))), syncYes},
		{"first_sample_flags non-sync", box("moof", box("traf", tfhd(1, 0), trunFirst(sampleIsNonSync))), syncNo},
		{"tfhd default flags", box("moof", box("traf", tfhd(1, sampleIsNonSync), box("trun", u32(0x000001, 1, 100)))), syncNo},
		{"other track only", box("moof", box("traf", tfhd(2, 0), trunFirst(0))), syncUnknown},
		{"no moof", box("mdat", []byte{1, 2, 3}), syncUnknown},
		{"truncated", testPart(t, true, false)[:30], syncUnknown},
		{"garbage", []byte("not an mp4 at all"), syncUnknown},
		{"empty", nil, syncUnknown},
	}
	for _, tt := range tests {
		if got := firstSync(tt.part, vt); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestParseInitRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":          nil,
		"no moov":        box("ftyp", []byte("isom")),
		"truncated moov": testInit(t)[:40],
		"audio only":     box("moov", box("trak", box("tkhd", u32(0, 0, 0, 2)), box("mdia", box("hdlr", u32(0, 0), []byte("soun"))))),
	} {
		if vt, ok := parseInit(b); ok {
			t.Errorf("%s: found video track %+v", name, vt)
		}
	}
	// A 64-bit size and a version 1 tkhd.
	big := append(u32(1), "moov"...)
	body := box("trak", box("tkhd", []byte{1, 0, 0, 0}, make([]byte, 16), u32(7)), box("mdia", box("hdlr", u32(0, 0), []byte("vide"))))
	big = binary.BigEndian.AppendUint64(big, uint64(16+len(body)))
	big = append(big, body...)
	if vt, ok := parseInit(big); !ok || vt.id != 7 {
		t.Errorf("largesize moov, version 1 tkhd: %+v %v", vt, ok)
	}
}
