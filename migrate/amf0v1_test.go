package migrate

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// amf builds a body from hex (spaces ignored) and quoted text: amf(`02 0003`,
// "obs") is the string "obs".
func amf(parts ...string) []byte {
	var b []byte
	for i, p := range parts {
		if i%2 == 1 {
			b = append(b, p...)
			continue
		}
		x, err := hex.DecodeString(strings.ReplaceAll(p, " ", ""))
		if err != nil {
			panic(err)
		}
		b = append(b, x...)
	}
	return b
}

// nested wraps a property "k" holding null in depth containers of marker m,
// inside an object whose encoder is "x".
func nested(m byte, depth int) []byte {
	b := amf(`03 0007`, "encoder", `02 0001`, "x", `0001`, "k")
	for range depth - 1 {
		switch m {
		case amfECMAArray:
			b = append(b, amfECMAArray, 0, 0, 0, 0, 0, 1, 'k')
		case amfStrictArray:
			b = append(b, amfStrictArray, 0, 0, 0, 1)
		default:
			b = append(b, amfObject, 0, 1, 'k')
		}
	}
	b = append(b, amfNull)
	for range depth - 1 {
		if m != amfStrictArray {
			b = append(b, 0, 0, amfObjectEnd)
		}
	}
	return append(b, 0, 0, amfObjectEnd)
}

var onMetaData = amf(`02 000a`, "onMetaData", `08 00000002 0005`, "width", `00 4094000000000000 0007`, "encoder", `02 0003`, "obs", `000009`)

var encoderCases = []struct {
	name string
	body []byte
	want string
}{
	{"onMetaData", onMetaData, "obs"},
	{"@setDataFrame before onMetaData", append(amf(`02 000d`, "@setDataFrame"), onMetaData...), "obs"},
	{"object", amf(`03 0007`, "encoder", `02 0002`, "hw", `000009`), "hw"},
	{"typed object", amf(`10 0004`, "Meta", `0007`, "encoder", `02 0001`, "t", `000009`), "t"},
	{"long string value", amf(`08 00000001 0007`, "encoder", `0c 00000003`, "x26", `000009`), "x26"},
	{"empty encoder", amf(`08 00000001 0007`, "encoder", `02 0000 000009`), ""},
	{"every skipped kind before it", amf(`00 3ff0000000000000 01 01 05 06 0b 0000000000000000 0000 0a 00000002 05 06 02 0001`, "s",
		`03 0001`, "n", `03 000009 0000 05 0007`, "encoder", `02 0001`, "e", `000009`), "e"},
	{"count says zero", amf(`08 00000000 0007`, "encoder", `02 0001`, "z", `000009`), "z"},
	{"empty key is a property", amf(`03 0000 05 0007`, "encoder", `02 0001`, "k", `000009`), "k"},
	{"first of two named encoder", amf(`03 0007`, "encoder", `02 0001`, "a", `0007`, "encoder", `02 0001`, "b", `000009`), "a"},
	{"first named encoder is a number", amf(`03 0007`, "encoder", `00 0000000000000000 0007`, "encoder", `02 0001`, "b", `000009`), ""},
	{"first container has none", amf(`03 0001`, "a", `05 000009 08 00000001 0007`, "encoder", `02 0001`, "c", `000009`), "c"},
	{"first container's is a number", amf(`03 0007`, "encoder", `05 000009 03 0007`, "encoder", `02 0001`, "d", `000009`), "d"},
	{"first container wins", amf(`03 0007`, "encoder", `02 0001`, "1", `000009 03 0007`, "encoder", `02 0001`, "2", `000009`), "1"},
	{"nested only", amf(`03 0001`, "m", `03 0007`, "encoder", `02 0001`, "n", `000009 000009`), ""},
	{"inside a strict array", amf(`0a 00000001 03 0007`, "encoder", `02 0001`, "n", `000009`), ""},
	{"key is not encoder", amf(`03 0008`, "encoders", `02 0001`, "n", `000009`), ""},
	{"depth 32", nested(amfObject, 32), "x"},
	{"depth 32 in ECMA arrays", nested(amfECMAArray, 32), "x"},
	{"depth 32 in strict arrays", nested(amfStrictArray, 32), "x"},

	// A body that does not decode as a whole names no encoder, even one
	// found before the fault.
	{"empty", nil, ""},
	{"depth 33", nested(amfObject, 33), ""},
	{"depth 33 in strict arrays", nested(amfStrictArray, 33), ""},
	{"unknown marker after", append(onMetaData[:len(onMetaData):len(onMetaData)], 0x12), ""},
	{"AMF3 after", append(onMetaData[:len(onMetaData):len(onMetaData)], 0x11, 0x02), ""},
	{"reference", amf(`07 0001`), ""},
	{"movieclip", amf(`04`), ""},
	{"object end outside an object", amf(`09`), ""},
	{"object end as a value", amf(`03 0007`, "encoder", `09`), ""},
	{"missing end marker", amf(`03 0007`, "encoder", `02 0001`, "x"), ""},
	{"empty key at end of input", amf(`03 0007`, "encoder", `02 0001`, "x", `0000`), ""},
	{"string cut short", amf(`03 0007`, "encoder", `02 0005`, "ab"), ""},
	{"long string of 4 GiB", amf(`03 0007`, "encoder", `0c ffffffff`, "ab"), ""},
	{"key cut short", amf(`03 00`), ""},
	{"ECMA count cut short", amf(`08 0000`), ""},
	{"strict array count beyond the body", amf(`0a ffffffff 05 05`), ""},
	{"date cut short", amf(`0b 0000000000000000 00`), ""},
	{"number cut short", amf(`00 3ff0`), ""},
	{"boolean cut short", amf(`01`), ""},
	{"typed object class cut short", amf(`10 0005`, "a"), ""},
}

func TestEncoderOf(t *testing.T) {
	for _, tc := range encoderCases {
		if got := encoderOf(tc.body); got != tc.want {
			t.Errorf("%s: encoderOf(%x) = %q, want %q", tc.name, tc.body, got, tc.want)
		}
	}
	// Every prefix of a good body ends before the array that names the
	// encoder does: none names one, none panics.
	for i := range len(onMetaData) {
		if got := encoderOf(onMetaData[:i]); got != "" {
			t.Errorf("prefix of %d bytes: %q", i, got)
		}
	}
}

// The walk builds nothing: the string it returns is its one allocation,
// whatever the body.
func TestEncoderOfAllocs(t *testing.T) {
	for _, tc := range encoderCases {
		allowed := 0.0
		if tc.want != "" {
			allowed = 1
		}
		if n := testing.AllocsPerRun(10, func() { encoderOf(tc.body) }); n > allowed {
			t.Errorf("%s: %.0f allocations", tc.name, n)
		}
	}
}

// FuzzEncoderOf: any body gives an answer without a panic, and the answer
// is a string the body holds.
func FuzzEncoderOf(f *testing.F) {
	for _, tc := range encoderCases {
		f.Add(tc.body)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := encoderOf(b)
		if got != "" && !bytes.Contains(b, []byte(got)) {
			t.Fatalf("encoderOf(%x) = %q, not in the body", b, got)
		}
	})
}
