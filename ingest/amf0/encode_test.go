package amf0

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEncodeVectors(t *testing.T) {
	for _, tc := range vectors {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendAll(nil, tc.values...)
			if err != nil {
				t.Fatalf("AppendAll: %v", err)
			}
			if !bytes.Equal(got, tc.bytes) {
				t.Fatalf("AppendAll:\n got %x\nwant %x", got, tc.bytes)
			}
			// Append of each value in turn gives the same bytes.
			var one []byte
			for _, v := range tc.values {
				if one, err = Append(one, v); err != nil {
					t.Fatalf("Append: %v", err)
				}
			}
			if !bytes.Equal(one, tc.bytes) {
				t.Fatalf("Append:\n got %x\nwant %x", one, tc.bytes)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range vectors {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := AppendAll(nil, tc.values...)
			if err != nil {
				t.Fatal(err)
			}
			dec, err := DecodeAll(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !equalSlices(dec, tc.values) {
				t.Fatalf("decode(encode(v)):\n got %s\nwant %s", show(dec), show(tc.values))
			}
		})
	}
}

func TestEncodeGoTypes(t *testing.T) {
	one := h("00 3ff0000000000000")
	tests := []struct {
		name  string
		in    any
		bytes []byte
	}{
		{"int", int(1), one},
		{"int8", int8(1), one},
		{"int16", int16(1), one},
		{"int32", int32(1), one},
		{"int64", int64(1), one},
		{"uint", uint(1), one},
		{"uint8", uint8(1), one},
		{"uint16", uint16(1), one},
		{"uint32", uint32(1), one},
		{"uint64", uint64(1), one},
		{"negative int", -2, h("00 c000000000000000")},
		{"float32", float32(1.5), h("00 3ff8000000000000")},
		{"nil Object", Object(nil), h("03 000009")},
		{"nil ECMAArray", ECMAArray(nil), h("08 00000000 000009")},
		{"nil []any", []any(nil), h("0a 00000000")},
		{"nil map", map[string]any(nil), h("03 000009")},
		{
			"map sorted by key",
			map[string]any{"b": 1, "a": "x", "c": map[string]any{"z": true}},
			h("03 000161 02000178 000162 00 3ff0000000000000 000163 03 00017a 0101 000009 000009"),
		},
		{"time.Time as Date", time.UnixMilli(1_700_000_000_000).In(time.FixedZone("X", 3600)), h("0b 4278bcfe56800000 0000")},
		{"object with Go ints", Object{{"n", 2}}, h("03 00016e 00 4000000000000000 000009")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Append(nil, tc.in)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if !bytes.Equal(got, tc.bytes) {
				t.Fatalf("got %x, want %x", got, tc.bytes)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	cyclic := []any{nil}
	cyclic[0] = cyclic
	deep, _ := nestedArrays(MaxDepth + 1)
	deepValue, _, _ := Decode(deep[5:]) // MaxDepth levels, wrapped once more below
	tests := []struct {
		name string
		in   any
		err  error
		msg  string
	}{
		{"unsupported type", struct{}{}, ErrUnsupportedType, "amf0: encode: unsupported type struct {}"},
		{"unsupported in object", Object{{"a", Object{{"b", make(chan int)}}}}, ErrUnsupportedType, `amf0: encode: key "a": key "b": unsupported type chan int`},
		{"unsupported in array", []any{1.0, complex(1, 2)}, ErrUnsupportedType, "amf0: encode: index 1: unsupported type complex128"},
		{"unsupported in map", map[string]any{"k": []string{"x"}}, ErrUnsupportedType, `amf0: encode: key "k": unsupported type []string`},
		{"key too long", Object{{strings.Repeat("k", 65536), nil}}, ErrTooLong, "amf0: encode: key of 65536 bytes: too long"},
		{"too deep", []any{deepValue}, ErrTooDeep, ""},
		{"cycle", cyclic, ErrTooDeep, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte{0xAA}
			got, err := Append(dst, tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("message %q, want %q", err, tc.msg)
			}
			if !bytes.Equal(got, dst) {
				t.Errorf("dst changed to %x on error", got)
			}
		})
	}
}

func TestAppendAllErrorNamesValue(t *testing.T) {
	dst := []byte("keep")
	got, err := AppendAll(dst, "ok", 1.0, make(chan int))
	if !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), "value 2") {
		t.Fatalf("error %v, want unsupported type naming value 2", err)
	}
	if string(got) != "keep" {
		t.Fatalf("dst changed to %q on error", got)
	}
}

func BenchmarkAppendConnect(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 256)
	for b.Loop() {
		var err error
		if buf, err = AppendAll(buf[:0], ffmpegConnectValues...); err != nil {
			b.Fatal(err)
		}
	}
}
