package amf0

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"
)

func TestDecodeVectors(t *testing.T) {
	for _, tc := range vectors {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeAll(tc.bytes)
			if err != nil {
				t.Fatalf("DecodeAll: %v", err)
			}
			if !equalSlices(got, tc.values) {
				t.Fatalf("DecodeAll:\n got %s\nwant %s", show(got), show(tc.values))
			}
			// Decode reads exactly the first value and reports its size.
			v, n, err := Decode(tc.bytes)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !equal(v, tc.values[0]) {
				t.Fatalf("Decode: got %s, want %s", show(v), show(tc.values[0]))
			}
			first, err := Append(nil, tc.values[0])
			if err != nil {
				t.Fatalf("Append first value: %v", err)
			}
			if n != len(first) {
				t.Fatalf("Decode consumed %d bytes, first value is %d bytes", n, len(first))
			}
		})
	}
}

// nonCanonical are inputs that decode but re-encode differently.
var nonCanonical = []struct {
	name  string
	bytes []byte
	want  any
}{
	{"long string under 64 KiB", cat(h("0c 00000005"), s("hello")), "hello"},
	{"boolean nonzero byte", h("01 7f"), true},
	{"typed object drops class name", cat(h("10 0005"), s("Point"), h("0001 78 00 3ff0000000000000 000009")), Object{{"x", 1.0}}},
	{"ecma array count larger than content", h("08 ffffffff 0001 61 05 000009"), ECMAArray{{"a", nil}}},
	{"ecma array count smaller than content", h("08 00000000 0001 61 05 0001 62 06 000009"), ECMAArray{{"a", nil}, {"b", Undefined{}}}},
	{"trailing bytes ignored by Decode", h("05 ffff"), nil},
}

func TestDecodeNonCanonical(t *testing.T) {
	for _, tc := range nonCanonical {
		t.Run(tc.name, func(t *testing.T) {
			v, _, err := Decode(tc.bytes)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !equal(v, tc.want) {
				t.Fatalf("got %s, want %s", show(v), show(tc.want))
			}
		})
	}
}

var decodeErrors = []struct {
	name   string
	bytes  []byte
	err    error
	offset int
}{
	{"empty input", nil, ErrTruncated, 0},
	{"number truncated", h("00 3ff0"), ErrTruncated, 1},
	{"boolean truncated", h("01"), ErrTruncated, 1},
	{"string length truncated", h("02 00"), ErrTruncated, 1},
	{"string body truncated", h("02 0005 6869"), ErrTruncated, 3},
	{"long string huge length", h("0c ffffffff 00"), ErrTruncated, 5},
	{"object key truncated", h("03 00"), ErrTruncated, 1},
	{"object missing end", h("03 000161 05"), ErrTruncated, 5},
	{"object empty key at end of input", h("03 0000"), ErrTruncated, 3},
	{"object value truncated", h("03 000161"), ErrTruncated, 4},
	{"object end marker outside object", h("09"), ErrMalformed, 0},
	{"object end marker as property value", h("03 000161 09"), ErrMalformed, 4},
	{"ecma array count truncated", h("08 0000"), ErrTruncated, 1},
	{"ecma array huge count, no properties", h("08 7fffffff"), ErrTruncated, 5},
	{"strict array count truncated", h("0a 00"), ErrTruncated, 1},
	{"strict array count exceeds input", h("0a ffffffff 05 05"), ErrTruncated, 0},
	{"strict array element truncated", h("0a 00000002 05 02"), ErrTruncated, 7},
	{"date truncated", h("0b 0000000000000000 00"), ErrTruncated, 9},
	{"reference", h("07 0001"), ErrUnsupportedMarker, 0},
	{"movieclip", h("04"), ErrUnsupportedMarker, 0},
	{"unsupported marker", h("0d"), ErrUnsupportedMarker, 0},
	{"recordset", h("0e"), ErrUnsupportedMarker, 0},
	{"xml document", h("0f 00000000"), ErrUnsupportedMarker, 0},
	{"amf3 switch", h("11 02"), ErrAMF3, 0},
	{"amf3 inside object", h("03 000161 11 02 000009"), ErrAMF3, 4},
	{"unknown marker", h("12"), ErrUnknownMarker, 0},
	{"unknown marker 0xff in array", h("0a 00000002 05 ff"), ErrUnknownMarker, 6},
	{"typed object class truncated", h("10 0005 61"), ErrTruncated, 3},
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range decodeErrors {
		t.Run(tc.name, func(t *testing.T) {
			v, n, err := Decode(tc.bytes)
			if err == nil {
				t.Fatalf("Decode succeeded with %s (%d bytes)", show(v), n)
			}
			if v != nil || n != 0 {
				t.Errorf("Decode returned value %s, n %d alongside error", show(v), n)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("error %q does not match %q", err, tc.err)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DecodeError", err)
			}
			if de.Offset != tc.offset {
				t.Errorf("offset %d, want %d (%v)", de.Offset, tc.offset, err)
			}
			if len(tc.bytes) == 0 {
				return // DecodeAll accepts an empty body
			}
			if _, err := DecodeAll(tc.bytes); !errors.Is(err, tc.err) {
				t.Errorf("DecodeAll error %v, want %v", err, tc.err)
			}
		})
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	_, _, err := Decode(h("03 000161 11"))
	const want = "amf0: decode at offset 4: AMF3 not supported: marker 0x11 (avmplus-object)"
	if err == nil || err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	_, _, err = Decode(h("02 0005 6869"))
	const want2 = "amf0: decode at offset 3: truncated input: string needs 5 bytes, 2 remain"
	if err == nil || err.Error() != want2 {
		t.Fatalf("error %q, want %q", err, want2)
	}
}

func TestDecodeAllOffsetsSpanValues(t *testing.T) {
	// The error offset is relative to the whole body, not to the value.
	body := cat(h("020007"), s("connect"), h("00 3ff0000000000000 04"))
	_, err := DecodeAll(body)
	var de *DecodeError
	if !errors.As(err, &de) || !errors.Is(err, ErrUnsupportedMarker) || de.Offset != 19 {
		t.Fatalf("error %v, want unsupported marker at offset 19", err)
	}
}

func TestDecodeAllEmpty(t *testing.T) {
	vs, err := DecodeAll(nil)
	if err != nil || len(vs) != 0 {
		t.Fatalf("DecodeAll(nil) = %v, %v; want no values, no error", vs, err)
	}
}

// nestedArrays returns depth strict arrays, each holding the next, and the
// innermost empty.
func nestedArrays(depth int) ([]byte, any) {
	var b []byte
	for range depth - 1 {
		b = append(b, h("0a 00000001")...)
	}
	b = append(b, h("0a 00000000")...)
	var v any = []any{}
	for range depth - 1 {
		v = []any{v}
	}
	return b, v
}

func TestDecodeDepthLimit(t *testing.T) {
	b, want := nestedArrays(MaxDepth)
	got, n, err := Decode(b)
	if err != nil || n != len(b) || !equal(got, want) {
		t.Fatalf("depth %d: got %s, %d, %v", MaxDepth, show(got), n, err)
	}

	b, _ = nestedArrays(MaxDepth + 1)
	_, _, err = Decode(b)
	var de *DecodeError
	if !errors.Is(err, ErrTooDeep) || !errors.As(err, &de) || de.Offset != 5*MaxDepth {
		t.Fatalf("depth %d: error %v, want ErrTooDeep at offset %d", MaxDepth+1, err, 5*MaxDepth)
	}

	// Objects and ECMA arrays count towards the same limit.
	var mixed []byte
	for i := range MaxDepth + 1 {
		if i%2 == 0 {
			mixed = append(mixed, h("03 000161")...)
		} else {
			mixed = append(mixed, h("08 00000001 000161")...)
		}
	}
	if _, _, err := Decode(mixed); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("mixed nesting: error %v, want ErrTooDeep", err)
	}
}

func TestDecodeDoesNotAliasInput(t *testing.T) {
	b := cat(h("03 0003"), s("xyz"), h("02 0003"), s("abc"), h("000009"))
	v, _, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	want := Object{{"xyz", "abc"}}
	if !equal(v, want) {
		t.Fatalf("after clobbering input: got %s, want %s", show(v), show(want))
	}
}

func TestPropertyGetters(t *testing.T) {
	o := Object{
		{"app", "live"},
		{"n", 2.5},
		{"ok", true},
		{"dup", 1.0},
		{"dup", "second"},
	}
	if v, ok := o.Get("app"); !ok || v != "live" {
		t.Errorf("Get(app) = %v, %v", v, ok)
	}
	if _, ok := o.Get("missing"); ok {
		t.Error("Get(missing) found a value")
	}
	if v, ok := o.GetString("app"); !ok || v != "live" {
		t.Errorf("GetString(app) = %q, %v", v, ok)
	}
	if _, ok := o.GetString("n"); ok {
		t.Error("GetString on a Number succeeded")
	}
	if v, ok := o.GetNumber("n"); !ok || v != 2.5 {
		t.Errorf("GetNumber(n) = %v, %v", v, ok)
	}
	if v, ok := o.GetBool("ok"); !ok || !v {
		t.Errorf("GetBool(ok) = %v, %v", v, ok)
	}
	// The first duplicate wins, even when a later one has the asked type.
	if _, ok := o.GetString("dup"); ok {
		t.Error("GetString(dup) skipped the first property")
	}
	if v, ok := o.GetNumber("dup"); !ok || v != 1 {
		t.Errorf("GetNumber(dup) = %v, %v", v, ok)
	}

	a := ECMAArray(o)
	if v, ok := a.GetString("app"); !ok || v != "live" {
		t.Errorf("ECMAArray.GetString(app) = %q, %v", v, ok)
	}
	if v, ok := a.GetNumber("n"); !ok || v != 2.5 {
		t.Errorf("ECMAArray.GetNumber(n) = %v, %v", v, ok)
	}
	if v, ok := a.GetBool("ok"); !ok || !v {
		t.Errorf("ECMAArray.GetBool(ok) = %v, %v", v, ok)
	}
	if v, ok := a.Get("dup"); !ok || v != 1.0 {
		t.Errorf("ECMAArray.Get(dup) = %v, %v", v, ok)
	}
}

func TestConnectFields(t *testing.T) {
	vs, err := DecodeAll(ffmpegConnect)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 3 || vs[0] != "connect" {
		t.Fatalf("unexpected body %s", show(vs))
	}
	obj, ok := vs[2].(Object)
	if !ok {
		t.Fatalf("command object is %T", vs[2])
	}
	if app, _ := obj.GetString("app"); app != "live" {
		t.Errorf("app %q", app)
	}
	if tc, _ := obj.GetString("tcUrl"); tc != "rtmp://127.0.0.1:1935/live" {
		t.Errorf("tcUrl %q", tc)
	}
}

func TestDateTime(t *testing.T) {
	d := Date{Millis: 1.7e12}
	if got, want := d.Time(), time.UnixMilli(1_700_000_000_000).UTC(); !got.Equal(want) {
		t.Errorf("Time() = %v, want %v", got, want)
	}
	if got := (Date{Millis: math.NaN()}).Time(); !got.IsZero() {
		t.Errorf("NaN date gave %v, want zero time", got)
	}
}

func TestDecodeCapturedConnectIsVerbatim(t *testing.T) {
	// Guard against a typo in the hex literal: the capture is 139 bytes
	// and ends with the object-end marker.
	if len(ffmpegConnect) != 139 || !bytes.HasSuffix(ffmpegConnect, h("000009")) {
		t.Fatalf("connect vector is %d bytes", len(ffmpegConnect))
	}
}

func BenchmarkDecodeConnect(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(ffmpegConnect)))
	for b.Loop() {
		if _, err := DecodeAll(ffmpegConnect); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeMetadata(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(ffmpegMetadata)))
	for b.Loop() {
		if _, err := DecodeAll(ffmpegMetadata); err != nil {
			b.Fatal(err)
		}
	}
}
