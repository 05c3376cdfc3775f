package state

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The hand-written encoders of codec.go must write exactly what msgpack's
// reflection writes, which stays the reference: these tests compare the
// two byte for byte on the released v5 blobs, on random values built to
// cross every length and integer boundary msgpack distinguishes, and on
// values a fuzzer builds; and they check field by field that no field of
// these types is left out.

// fastTypes are the types codec.go writes.
var fastTypes = []reflect.Type{
	reflect.TypeFor[Publisher](), reflect.TypeFor[Player](), reflect.TypeFor[Session](),
	reflect.TypeFor[Relay](), reflect.TypeFor[FLVPlayer](), reflect.TypeFor[HTTPConn](), reflect.TypeFor[Stream](),
}

// sameAsReflection fails unless ptr's value encodes to the same bytes both
// ways.
func sameAsReflection(t *testing.T, what string, ptr any) {
	t.Helper()
	want, err := msgpack.Marshal(ptr)
	if err != nil {
		t.Fatalf("%s: msgpack.Marshal: %v", what, err)
	}
	got, ok := encodeFast(ptr)
	if !ok {
		t.Fatalf("%s: %T has no hand-written encoder", what, ptr)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: %d bytes, reflection %d; first difference at %d:\n got …%x\nwant …%x", what, len(got), len(want), i, window(got, i), window(want, i))
	}
	if len(got) != cap(got) {
		t.Fatalf("%s: counted %d bytes, wrote %d", what, cap(got), len(got))
	}
}

func window(b []byte, i int) []byte { return b[max(0, i-16):min(len(b), i+16)] }

// kindTypes maps the kinds with a hand-written encoder to their payload.
var kindTypes = map[Kind]reflect.Type{
	KindConn: reflect.TypeFor[Session](), KindPublisher: reflect.TypeFor[Publisher](), KindPlayer: reflect.TypeFor[Player](),
	KindRelay: reflect.TypeFor[Relay](), KindFLVPlayer: reflect.TypeFor[FLVPlayer](), KindHTTPConn: reflect.TypeFor[HTTPConn](),
}

// TestCodecGolden: every released blob of the current version keeps its
// exact wire form through MarshalEnvelope, and its payload, decoded and
// encoded again by hand, is the released payload byte for byte.
func TestCodecGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "state", fmt.Sprintf("v%d", Version), "*.msgpack"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no v%d blobs: %v", Version, err)
	}
	for _, file := range files {
		blob, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		env, err := UnmarshalEnvelope(blob)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		wire, _ := MarshalEnvelope(env)
		if !bytes.Equal(wire, blob) {
			t.Errorf("%s: MarshalEnvelope changed the blob", file)
		}
		typ, ok := kindTypes[env.Kind]
		if !ok {
			continue // the process envelope goes through reflection
		}
		ptr := reflect.New(typ)
		if err := Decode(env, ptr.Interface()); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		sameAsReflection(t, file, ptr.Interface())
		if got, _ := encodeFast(ptr.Interface()); !bytes.Equal(got, env.Payload) {
			t.Errorf("%s: re-encoded payload differs from the released one", file)
		}
	}
}

func TestCodecSamples(t *testing.T) {
	pub, pl, conn, relay := benchPublisher(), benchPlayer(), benchConn(), benchRelay()
	sameAsReflection(t, "publisher", &pub)
	sameAsReflection(t, "player", &pl)
	sameAsReflection(t, "conn", &conn)
	sameAsReflection(t, "relay", &relay)
	sameAsReflection(t, "stream", &pub.Stream)
	p := samplePublisher()
	sameAsReflection(t, "sample publisher", &p)
	var zero Publisher
	sameAsReflection(t, "zero publisher", &zero)
	var zf FLVPlayer
	sameAsReflection(t, "zero flv player", &zf)
	var zh HTTPConn
	sameAsReflection(t, "zero http conn", &zh)
	hc := sampleHTTPConn()
	sameAsReflection(t, "http conn", &hc)

	// Encode takes the hand-written path for values and pointers alike,
	// and reflection for the rest, with the same bytes.
	for _, tc := range []struct {
		name string
		enc  func() (Envelope, error)
		ref  any
	}{
		{"value", func() (Envelope, error) { return Encode(KindPublisher, pub) }, pub},
		{"pointer", func() (Envelope, error) { return Encode(KindPublisher, &pub) }, pub},
		{"nil pointer", func() (Envelope, error) { return Encode(KindPublisher, (*Publisher)(nil)) }, (*Publisher)(nil)},
		{"interface", func() (Envelope, error) { return Encode[any](KindPlayer, pl) }, pl},
		{"process", func() (Envelope, error) { return Encode(KindProcess, sampleProcess()) }, sampleProcess()},
	} {
		env, err := tc.enc()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want, _ := msgpack.Marshal(tc.ref)
		if tc.name == "process" {
			// A map with several keys comes out in any order: compare
			// what it decodes to instead.
			var got Process
			if err := Decode(env, &got); err != nil || !reflect.DeepEqual(got, sampleProcess()) {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !bytes.Equal(env.Payload, want) {
			t.Errorf("%s: payload differs from reflection's", tc.name)
		}
	}
}

// filler sets every exported field of a value from a source of numbers,
// choosing often the lengths and integers at which msgpack changes form.
type filler struct {
	next func() uint64
	// full sets every field: no nil, no empty, no zero.
	full bool
}

var (
	lengths   = []int{0, 1, 2, 15, 16, 31, 32, 255, 256, 65535, 65536}
	counts    = []int{0, 1, 2, 15, 16}
	intEdges  = []int64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64, -1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
	uintEdges = []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}
)

func (f *filler) pick(n int) int { return int(f.next() % uint64(n)) }

func (f *filler) length(small bool) int {
	var n int
	if small {
		n = counts[f.pick(len(counts))]
		if f.pick(2) == 0 {
			n = f.pick(4)
		}
	} else {
		n = lengths[f.pick(len(lengths))]
		if f.pick(2) == 0 {
			n = f.pick(40)
		}
	}
	if f.full && n == 0 {
		n = 1
	}
	return n
}

func (f *filler) fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				f.fill(v.Field(i))
			}
		}
	case reflect.Pointer:
		if !f.full && f.pick(3) == 0 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		f.fill(v.Elem())
	case reflect.Slice:
		if !f.full && f.pick(4) == 0 {
			return // nil
		}
		byteSlice := v.Type().Elem().Kind() == reflect.Uint8
		n := f.length(!byteSlice)
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		if byteSlice {
			for i := range n {
				v.Index(i).SetUint(f.next())
			}
			return
		}
		for i := range n {
			f.fill(v.Index(i))
		}
	case reflect.Array:
		for i := range v.Len() {
			f.fill(v.Index(i))
		}
	case reflect.String:
		b := make([]byte, f.length(false))
		for i := range b {
			b[i] = byte(f.next())
		}
		v.SetString(string(b))
	case reflect.Bool:
		v.SetBool(f.full || f.pick(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := int64(f.next())
		if f.pick(2) == 0 {
			n = intEdges[f.pick(len(intEdges))]
		}
		v.SetInt(n)
		if f.full && v.Int() == 0 {
			v.SetInt(-1)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n := f.next()
		if f.pick(2) == 0 {
			n = uintEdges[f.pick(len(uintEdges))]
		}
		v.SetUint(n)
		if f.full && v.Uint() == 0 {
			v.SetUint(1)
		}
	default:
		panic("filler: no rule for " + v.Type().String())
	}
}

func TestCodecMatchesReflectionRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 3))
	f := filler{next: r.Uint64}
	n := 2000
	if testing.Short() {
		n = 300
	}
	for i := range n {
		typ := fastTypes[i%len(fastTypes)]
		ptr := reflect.New(typ)
		f.fill(ptr.Elem())
		sameAsReflection(t, typ.Name(), ptr.Interface())
	}
}

// FuzzCodecMatchesReflection builds a value of one of the types from the
// input's bytes and compares the two encoders on it.
func FuzzCodecMatchesReflection(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17})
	f.Add(bytes.Repeat([]byte{0xff, 0x00, 0x7f}, 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		typ := fastTypes[int(b[0])%len(fastTypes)]
		b = b[1:]
		src := func() uint64 {
			var x [8]byte
			n := copy(x[:], b)
			b = b[n:]
			return binary.LittleEndian.Uint64(x[:])
		}
		ptr := reflect.New(typ)
		(&filler{next: src}).fill(ptr.Elem())
		sameAsReflection(t, typ.Name(), ptr.Interface())
	})
}

// TestCodecWritesEveryField: with every field of a value set, what the
// hand-written encoder writes has each field's key at every level, and no
// other. A field added to a type and not to codec.go fails here by name,
// before the byte comparisons above say only that the bytes differ.
func TestCodecWritesEveryField(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	f := filler{next: r.Uint64, full: true}
	for _, typ := range fastTypes {
		ptr := reflect.New(typ)
		f.fill(ptr.Elem())
		b, ok := encodeFast(ptr.Interface())
		if !ok {
			t.Fatalf("%s has no hand-written encoder", typ)
		}
		var decoded any
		if err := msgpack.Unmarshal(b, &decoded); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		checkKeys(t, typ, decoded, typ.Name())
	}
}

func checkKeys(t *testing.T, typ reflect.Type, v any, path string) {
	t.Helper()
	switch typ.Kind() {
	case reflect.Pointer:
		checkKeys(t, typ.Elem(), v, path)
	case reflect.Slice, reflect.Array:
		if typ.Elem().Kind() == reflect.Uint8 {
			return
		}
		elems, ok := v.([]any)
		if !ok || len(elems) == 0 {
			t.Errorf("%s: written as %T, want a non-empty array", path, v)
			return
		}
		for _, e := range elems {
			checkKeys(t, typ.Elem(), e, path+"[]")
		}
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			t.Errorf("%s: written as %T, want a map", path, v)
			return
		}
		want := map[string]bool{}
		for i := range typ.NumField() {
			field := typ.Field(i)
			name, _, _ := strings.Cut(field.Tag.Get("msgpack"), ",")
			if !field.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = field.Name
			}
			want[name] = true
			fv, ok := m[name]
			if !ok {
				t.Errorf("%s.%s (msgpack %q) is not written by codec.go", path, field.Name, name)
				continue
			}
			checkKeys(t, field.Type, fv, path+"."+field.Name)
		}
		for k := range m {
			if !want[k] {
				t.Errorf("%s: codec.go writes %q, which no field of %s is tagged", path, k, typ)
			}
		}
	}
}

// The point of codec.go: one allocation per envelope, the payload,
// whatever the session holds.
func TestEncodeAllocs(t *testing.T) {
	pub, pl, conn, relay, flv := benchPublisher(), benchPlayer(), benchConn(), benchRelay(), FLVPlayer{Queue: benchQueue(3), Out: []byte{1}}
	hc := sampleHTTPConn()
	env, _ := Encode(KindPublisher, pub)
	for name, fn := range map[string]func(){
		"publisher":       func() { _, _ = Encode(KindPublisher, pub) },
		"player":          func() { _, _ = Encode(KindPlayer, pl) },
		"conn":            func() { _, _ = Encode(KindConn, conn) },
		"relay":           func() { _, _ = Encode(KindRelay, relay) },
		"flv player":      func() { _, _ = Encode(KindFLVPlayer, flv) },
		"http conn":       func() { _, _ = Encode(KindHTTPConn, hc) },
		"publisher by *":  func() { _, _ = Encode(KindPublisher, &pub) },
		"MarshalEnvelope": func() { _, _ = MarshalEnvelope(env) },
	} {
		if n := testing.AllocsPerRun(20, fn); n != 1 {
			t.Errorf("%s: %.1f allocations, want 1", name, n)
		}
	}
}
