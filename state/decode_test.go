package state

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The hand-written decoders of decode.go must give what msgpack's
// reflection gives, which stays the reference: the same value for every
// payload it accepts, an error for every payload it refuses. These tests
// compare the two on payloads written by msgpack, re-encoded the way
// package migrate re-encodes them, written in every other form msgpack
// reads (keys in any order, names and strings as str or bin, integers in
// any width, structs as arrays), on hostile variants of those (names
// twice, unknown names, nil, values out of range or of the wrong type,
// non-zero destinations), and on a fuzzer's bytes. decode_golden_test.go
// adds every released blob, migrated to this version.

// decodeBoth decodes b into fresh values of typ, by hand and by
// reflection, and fails unless both succeed or fail together and, if they
// succeed, agree. It returns the value and whether decoding succeeded.
func decodeBoth(t *testing.T, what string, typ reflect.Type, b []byte) (any, bool) {
	t.Helper()
	return decodeBothInto(t, what, reflect.New(typ).Interface(), reflect.New(typ).Interface(), b)
}

// decodeBothInto is decodeBoth into given destinations, which must not
// share memory.
func decodeBothInto(t *testing.T, what string, fast, slow any, b []byte) (any, bool) {
	t.Helper()
	ok, err := decodeInner(b, fast)
	if !ok {
		t.Fatalf("%s: %T has no hand-written decoder", what, fast)
	}
	rerr := msgpack.Unmarshal(b, slow)
	switch {
	case err != nil && rerr != nil:
		return nil, false
	case err != nil:
		t.Fatalf("%s: hand-written decoder failed where reflection did not: %v\npayload %x", what, err, b)
	case rerr != nil:
		t.Fatalf("%s: hand-written decoder accepted what reflection refuses (%v)\npayload %x", what, rerr, b)
	}
	if _, err := CheckMsgpack(b); err != nil {
		t.Fatalf("%s: hand-written decoder accepted what CheckMsgpack refuses (%v)\npayload %x", what, err, b)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%s: decoders disagree\n hand %+v\n  ref %+v\npayload %x", what, fast, slow, b)
	}
	return fast, true
}

// decodeInner is decodeFast for the types within sessions too, which
// Decode is never asked for but the edge cases are clearest on.
func decodeInner(b []byte, v any) (bool, error) {
	d := dec{b: b}
	switch x := v.(type) {
	case *ChunkStream:
		return true, d.chunkStream(x)
	case *ChunkReader:
		return true, d.chunkReader(x)
	case *PendingCommand:
		return true, d.pendingCommand(x)
	case *Recorder:
		return true, d.recorder(x)
	case *HLS:
		return true, d.hls(x)
	case *HLSSample:
		return true, d.hlsSample(x)
	case *HLSPart:
		return true, d.hlsPart(x)
	}
	return decodeFast(b, v)
}

// writer writes a value in any of the forms msgpack reads as it,
// choosing at random; with hostile set it also writes what may read as
// something else or not at all.
type writer struct {
	r       *rand.Rand
	b       []byte
	hostile bool
	// arrays writes structs as arrays sometimes; every writes them as
	// arrays always.
	arrays, every bool
}

func (w *writer) chance(n int) bool { return w.r.IntN(n) == 0 }

func (w *writer) head(c byte, width int, n uint64) {
	w.b = append(w.b, c)
	switch width {
	case 1:
		w.b = append(w.b, byte(n))
	case 2:
		w.b = binary.BigEndian.AppendUint16(w.b, uint16(n))
	case 4:
		w.b = binary.BigEndian.AppendUint32(w.b, uint32(n))
	case 8:
		w.b = binary.BigEndian.AppendUint64(w.b, n)
	}
}

// container writes an array or map header of n entries in a random form
// that holds n.
func (w *writer) container(n int, fix, c16, c32 byte) {
	switch {
	case n < 16 && w.chance(2):
		w.b = append(w.b, fix|byte(n))
	case n <= math.MaxUint16 && w.chance(2):
		w.head(c16, 2, uint64(n))
	default:
		w.head(c32, 4, uint64(n))
	}
}

// bytes writes p as a str or a bin of a random width.
func (w *writer) bytes(p []byte) {
	n := uint64(len(p))
	var forms []func()
	if n < 32 {
		forms = append(forms, func() { w.b = append(w.b, 0xa0|byte(n)) })
	}
	for i, width := range []int{1, 2, 4} {
		if n < 1<<(8*width) {
			forms = append(forms, func() { w.head(0xd9+byte(i), width, n) }, func() { w.head(0xc4+byte(i), width, n) })
		}
	}
	forms[w.r.IntN(len(forms))]()
	w.b = append(w.b, p...)
}

// integer writes x, read as signed or not, in a random form that
// msgpack reads as the same number.
func (w *writer) integer(x uint64, signed bool) {
	neg := signed && int64(x) < 0
	var forms []func()
	if x == 0 {
		forms = append(forms, func() { w.b = append(w.b, 0xc0) })
	}
	if (!neg && x <= 127) || (neg && int64(x) >= -32) {
		forms = append(forms, func() { w.b = append(w.b, byte(x)) })
	}
	for i, width := range []int{1, 2, 4, 8} {
		bits := 8 * width
		if !neg && (bits == 64 || x < 1<<bits) {
			forms = append(forms, func() { w.head(0xcc+byte(i), width, x) })
		}
		lo, hi := int64(-1)<<(bits-1), int64(uint64(1)<<(bits-1)-1)
		if v := int64(x); (neg || x <= math.MaxInt64) && v >= lo && v <= hi {
			forms = append(forms, func() { w.head(0xd0+byte(i), width, x) })
		}
	}
	forms[w.r.IntN(len(forms))]()
}

// junk writes a random value of any kind.
func (w *writer) junk(depth int) {
	switch k := w.r.IntN(12); {
	case k == 0 && depth < 3:
		n := w.r.IntN(3)
		w.container(n, 0x90, 0xdc, 0xdd)
		for range n {
			w.junk(depth + 1)
		}
	case k == 1 && depth < 3:
		n := w.r.IntN(3)
		w.container(n, 0x80, 0xde, 0xdf)
		for range n {
			w.junk(depth + 1)
			w.junk(depth + 1)
		}
	case k == 2:
		w.head(0xcb, 8, math.Float64bits(w.r.NormFloat64()))
	case k == 3:
		w.head(0xca, 4, uint64(math.Float32bits(float32(w.r.NormFloat64()))))
	case k == 4:
		w.b = append(w.b, 0xd6, byte(w.r.IntN(256)), 1, 2, 3, 4) // fixext4
	case k == 5:
		w.b = append(w.b, 0xc7, 2, byte(w.r.IntN(256)), 5, 6) // ext8
	case k == 6:
		w.bytes([]byte("junk"))
	case k == 7:
		w.b = append(w.b, []byte{0xc0, 0xc2, 0xc3}[w.r.IntN(3)])
	default:
		w.integer(w.r.Uint64(), w.chance(2))
	}
}

// other returns a random value of typ, for a name written twice.
func (w *writer) other(typ reflect.Type) reflect.Value {
	v := reflect.New(typ).Elem()
	(&filler{next: w.r.Uint64}).fill(v)
	return v
}

func (w *writer) value(v reflect.Value) {
	if w.hostile && w.chance(40) {
		if w.chance(2) {
			w.b = append(w.b, 0xc0)
		} else {
			w.junk(0)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		w.structure(v)
	case reflect.Pointer:
		if v.IsNil() {
			w.b = append(w.b, 0xc0)
			return
		}
		w.value(v.Elem())
	case reflect.Slice:
		if v.IsNil() {
			w.b = append(w.b, 0xc0)
			return
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			w.bytes(v.Bytes())
			return
		}
		fallthrough
	case reflect.Array:
		n := v.Len()
		if w.hostile && v.Kind() == reflect.Array && w.chance(20) {
			n = w.r.IntN(v.Len() + 2)
		}
		w.container(n, 0x90, 0xdc, 0xdd)
		for i := range n {
			if i < v.Len() {
				w.value(v.Index(i))
			} else {
				w.value(w.other(v.Type().Elem()))
			}
		}
	case reflect.String:
		w.bytes([]byte(v.String()))
	case reflect.Bool:
		switch {
		case !v.Bool() && w.chance(4):
			w.b = append(w.b, 0xc0)
		case v.Bool():
			w.b = append(w.b, 0xc3)
		default:
			w.b = append(w.b, 0xc2)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		x := uint64(v.Int())
		if w.hostile && w.chance(20) {
			x = w.r.Uint64() // out of the field's range, often
		}
		w.integer(x, true)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		x, signed := v.Uint(), false
		if w.hostile && w.chance(20) {
			x, signed = w.r.Uint64(), w.chance(2)
		}
		w.integer(x, signed)
	default:
		panic("writer: no rule for " + v.Type().String())
	}
}

type namedField struct {
	name  string
	value reflect.Value
}

func (w *writer) structure(v reflect.Value) {
	var fs []namedField
	for i := range v.NumField() {
		if f := v.Type().Field(i); f.IsExported() {
			fs = append(fs, namedField{msgpackName(f), v.Field(i)})
		}
	}
	if w.every || (w.arrays && w.chance(8)) {
		n := len(fs)
		if w.hostile && w.chance(10) {
			n = w.r.IntN(n + 2)
		}
		w.container(n, 0x90, 0xdc, 0xdd)
		for i := range n {
			if i < len(fs) {
				w.value(fs[i].value)
			} else {
				w.junk(0)
			}
		}
		return
	}
	// A zero field may be left out: the destination is zero already.
	var out []namedField
	for _, f := range fs {
		if f.value.IsZero() && w.chance(3) {
			continue
		}
		if w.hostile && w.chance(15) {
			out = append(out, namedField{f.name, w.other(f.value.Type())}) // overwritten by the next, or merged into
		}
		out = append(out, f)
	}
	if w.hostile && w.chance(5) {
		out = append(out, namedField{"unknown", reflect.Value{}})
	}
	w.r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	w.container(len(out), 0x80, 0xde, 0xdf)
	for _, f := range out {
		if w.hostile && w.chance(60) {
			w.b = append(w.b, 0xc0) // a nil name: skipped
		} else {
			w.bytes([]byte(f.name))
		}
		if !f.value.IsValid() {
			w.junk(0)
			continue
		}
		w.value(f.value)
	}
}

func msgpackName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("msgpack"), ",")
	if name == "" {
		name = f.Name
	}
	return name
}

// remap re-encodes b the way package migrate does: through a generic
// map, its keys in the order Go's map iteration gives, integers in their
// fewest bytes.
func remap(t *testing.T, b []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := msgpack.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	e.UseCompactInts(true)
	if err := e.Encode(m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecodeMatchesReflectionRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 4))
	f := filler{next: r.Uint64}
	n := 3000
	if testing.Short() {
		n = 400
	}
	var accepted, hostile int
	for i := range n {
		typ := fastTypes[i%len(fastTypes)]
		orig := reflect.New(typ)
		f.fill(orig.Elem())
		want := orig.Interface()

		// As msgpack writes it, as migrate rewrites it, and in other
		// forms that read as the same value.
		b, err := msgpack.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		for _, form := range []struct {
			name string
			b    []byte
		}{
			{"marshal", b},
			{"remap", remap(t, b)},
			{"rewritten", func() []byte { w := writer{r: r, arrays: true}; w.value(orig.Elem()); return w.b }()},
			{"as arrays", func() []byte { w := writer{r: r, every: true}; w.value(orig.Elem()); return w.b }()},
		} {
			got, ok := decodeBoth(t, typ.Name()+" "+form.name, typ, form.b)
			if !ok || !reflect.DeepEqual(got, want) {
				t.Fatalf("%s %s: decodes as %+v (ok %v), want %+v", typ.Name(), form.name, got, ok, want)
			}
		}

		// Hostile forms, into zero and into non-zero destinations.
		w := writer{r: r, hostile: true, arrays: true}
		w.value(orig.Elem())
		if _, ok := decodeBoth(t, typ.Name()+" hostile", typ, w.b); ok {
			accepted++
		}
		hostile++
		prev := reflect.New(typ)
		f.fill(prev.Elem())
		pb, _ := msgpack.Marshal(prev.Interface())
		fast, slow := reflect.New(typ).Interface(), reflect.New(typ).Interface()
		if err := msgpack.Unmarshal(pb, fast); err != nil {
			t.Fatal(err)
		}
		if err := msgpack.Unmarshal(pb, slow); err != nil {
			t.Fatal(err)
		}
		decodeBothInto(t, typ.Name()+" hostile into non-zero", fast, slow, w.b)
	}
	// Hostile payloads must mostly decode, or they test only failure.
	if accepted < hostile/4 {
		t.Errorf("only %d of %d hostile payloads decoded", accepted, hostile)
	}
	t.Logf("%d of %d hostile payloads decoded", accepted, hostile)
}

// TestDecodeEdges: the cases where msgpack's reflection has a behaviour
// of its own, one by one, with what it gives.
func TestDecodeEdges(t *testing.T) {
	m := func(kv ...any) []byte {
		// A map of the names and raw values given.
		b := []byte{0x80 | byte(len(kv)/2)}
		for i := 0; i < len(kv); i += 2 {
			k := kv[i].(string)
			b = append(append(b, 0xa0|byte(len(k))), k...)
			b = append(b, kv[i+1].([]byte)...)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		typ  reflect.Type
		in   []byte
		want any // nil: compare the decoders only
		bad  bool
	}{
		{"uint8 field from uint16 cut", reflect.TypeFor[ChunkStream](), m("type", []byte{0xcd, 0x01, 0xff}), &ChunkStream{TypeID: 0xff}, false},
		{"uint32 field from -1", reflect.TypeFor[ChunkStream](), m("csid", []byte{0xff}), &ChunkStream{CSID: math.MaxUint32}, false},
		{"int32 field from uint64 cut", reflect.TypeFor[HLSSample](), m("cts", []byte{0xcf, 0, 0, 0, 1, 0x80, 0, 0, 0}), &HLSSample{CTS: math.MinInt32}, false},
		{"int64 field from uint64 wraps", reflect.TypeFor[HLSPart](), m("size", []byte{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}), &HLSPart{Size: -2}, false},
		{"int from nil", reflect.TypeFor[Player](), m("skips", []byte{0xc0}), &Player{}, false},
		{"float for an int", reflect.TypeFor[ChunkStream](), m("csid", []byte{0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}), nil, true},
		{"bool from nil", reflect.TypeFor[ChunkStream](), m("ext", []byte{0xc0}), &ChunkStream{}, false},
		{"bool from 1", reflect.TypeFor[ChunkStream](), m("ext", []byte{0x01}), nil, true},
		{"bytes from str", reflect.TypeFor[ChunkStream](), m("partial", []byte{0xa2, 'h', 'i'}), &ChunkStream{Partial: []byte("hi")}, false},
		{"empty bytes", reflect.TypeFor[ChunkStream](), m("partial", []byte{0xc4, 0}), &ChunkStream{Partial: []byte{}}, false},
		{"string from bin", reflect.TypeFor[PendingCommand](), m("name", []byte{0xc4, 2, 'h', 'i'}), &PendingCommand{Name: "hi"}, false},
		{"name as bin", reflect.TypeFor[PendingCommand](), []byte{0x81, 0xc4, 4, 'n', 'a', 'm', 'e', 0xa1, 'x'}, &PendingCommand{Name: "x"}, false},
		{"name as an int", reflect.TypeFor[PendingCommand](), []byte{0x81, 0x01, 0xa1, 'x'}, nil, true},
		{"empty slice", reflect.TypeFor[Stream](), m("rate_buckets", []byte{0x90}), &Stream{RateBuckets: []uint64{}}, false},
		{"empty strings", reflect.TypeFor[Recorder](), m("segments", []byte{0x90}), &Recorder{Segments: []string{}}, false},
		{"strings: nil keeps them", reflect.TypeFor[Recorder](), m("segments", []byte{0x91, 0xa1, 'a'}, "segments", []byte{0xc0}), &Recorder{Segments: []string{"a"}}, false},
		{"slice: nil clears it", reflect.TypeFor[Stream](), m("rate_buckets", []byte{0x91, 0x01}, "rate_buckets", []byte{0xc0}), &Stream{}, false},
		{"struct: nil zeroes it", reflect.TypeFor[Session](), m("writer", []byte{0x81, 0xaa, 'c', 'h', 'u', 'n', 'k', '_', 's', 'i', 'z', 'e', 0x05}, "writer", []byte{0xc0}), &Session{}, false},
		{"struct: empty array zeroes it", reflect.TypeFor[Session](), m("writer", []byte{0x81, 0xaa, 'c', 'h', 'u', 'n', 'k', '_', 's', 'i', 'z', 'e', 0x05}, "writer", []byte{0x90}), &Session{}, false},
		{"struct as array", reflect.TypeFor[PendingCommand](), []byte{0x93, 0xc3, 0x07, 0xa1, 'k'}, &PendingCommand{Play: true, Msid: 7, Name: "k"}, false},
		{"struct as a short array", reflect.TypeFor[PendingCommand](), []byte{0x92, 0xc3, 0x07}, nil, true},
		{"struct as an int", reflect.TypeFor[PendingCommand](), []byte{0x07}, nil, true},
		{"pointer: nil", reflect.TypeFor[Session](), m("pending", []byte{0xc0}), &Session{}, false},
		{"pointer: empty map", reflect.TypeFor[Session](), m("pending", []byte{0x80}), &Session{Pending: &PendingCommand{}}, false},
		{"pointer: decoded twice merges", reflect.TypeFor[Session](), m("pending", []byte{0x81, 0xa4, 'm', 's', 'i', 'd', 0x03}, "pending", []byte{0x81, 0xa4, 'p', 'l', 'a', 'y', 0xc3}), &Session{Pending: &PendingCommand{Play: true, Msid: 3}}, false},
		{"tracks: one", reflect.TypeFor[HLS](), m("tracks", []byte{0x91, 0x81, 0xa4, 's', 'e', 'e', 'n', 0xc3}), &HLS{Tracks: [2]HLSTrack{{Seen: true}}}, false},
		{"tracks: three", reflect.TypeFor[HLS](), m("tracks", []byte{0x93, 0x80, 0x80, 0x80}), nil, true},
		{"tracks: nil", reflect.TypeFor[HLS](), m("tracks", []byte{0xc0}), &HLS{}, false},
		{"unknown name skipped", reflect.TypeFor[PendingCommand](), m("later", []byte{0x92, 0xd6, 1, 1, 2, 3, 4, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0}, "msid", []byte{0x02}), &PendingCommand{Msid: 2}, false},
		{"slice elements merged", reflect.TypeFor[ChunkReader](),
			m("streams", []byte{0x91, 0x82, 0xa4, 'c', 's', 'i', 'd', 0x01, 0xa2, 't', 's', 0x02}, "streams", []byte{0x91, 0x81, 0xa4, 'c', 's', 'i', 'd', 0x03}),
			&ChunkReader{Streams: []ChunkStream{{CSID: 3, Timestamp: 2}}}, false},
		{"truncated", reflect.TypeFor[PendingCommand](), []byte{0x81, 0xa4, 'n', 'a', 'm', 'e', 0xa5, 'x'}, nil, true},
		{"bin longer than the payload", reflect.TypeFor[ChunkStream](), m("partial", []byte{0xc6, 0, 0, 0, 0x10, 1, 2}), nil, true},
		{"array longer than the payload", reflect.TypeFor[Stream](), m("rate_buckets", []byte{0xdd, 0, 0, 0, 0x10, 1, 2}), nil, true},
		{"empty", reflect.TypeFor[Publisher](), nil, nil, true},
		{"nil", reflect.TypeFor[Publisher](), []byte{0xc0}, &Publisher{}, false},
	} {
		got, ok := decodeBoth(t, tc.name, tc.typ, tc.in)
		if ok == tc.bad {
			t.Errorf("%s: decoded %v, want %v", tc.name, ok, !tc.bad)
		}
		if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// The fuzz seeds: every released blob of this version, the benchmarks'
// values, and random values in the writer's forms.
func decodeSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "state", "v*", "*.msgpack"))
	for _, file := range files {
		blob, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if env, err := UnmarshalEnvelope(blob); err == nil {
			seeds = append(seeds, env.Payload)
		}
	}
	// Small seeds: the fuzzer spends its time minimizing what it finds
	// interesting, in proportion to its size.
	pub, pl, conn, relay := benchPublisher(), benchPlayer(), benchConn(), benchRelay()
	hc := sampleHTTPConn()
	for _, v := range []any{&pub, &pl, &conn, &relay, &pub.Stream, &FLVPlayer{Queue: benchQueue(2), Out: []byte{1}}, &hc} {
		shrink(reflect.ValueOf(v).Elem())
		b, _ := msgpack.Marshal(v)
		seeds = append(seeds, b)
	}
	r := rand.New(rand.NewPCG(5, 6))
	for i, typ := range fastTypes {
		v := reflect.New(typ)
		(&filler{next: r.Uint64}).fill(v.Elem())
		shrink(v.Elem())
		w := writer{r: r, hostile: i%2 == 0, arrays: true}
		w.value(v.Elem())
		seeds = append(seeds, w.b)
	}
	return seeds
}

// shrink cuts every string, byte slice and slice in v to a few elements.
func shrink(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				shrink(v.Field(i))
			}
		}
	case reflect.Pointer:
		if !v.IsNil() {
			shrink(v.Elem())
		}
	case reflect.String:
		if v.Len() > 8 {
			v.SetString(v.String()[:8])
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Len() > 3 {
			v.Set(v.Slice(0, 3))
		}
		for i := range v.Len() {
			shrink(v.Index(i))
		}
	}
}

// FuzzDecodeMatchesReflection decodes arbitrary bytes as each of the
// types both ways. Reflection runs only after CheckMsgpack, so the two
// must agree on whatever passes it; what fails it the hand-written
// decoders, which Decode runs without it, must refuse, without panicking
// or allocating beyond the input's size on the way.
func FuzzDecodeMatchesReflection(f *testing.F) {
	for _, s := range decodeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, cerr := CheckMsgpack(b)
		for _, typ := range fastTypes {
			if cerr == nil {
				decodeBoth(t, typ.Name(), typ, b)
				continue
			}
			if _, err := decodeFast(b, reflect.New(typ).Interface()); err == nil {
				t.Fatalf("%s: decoded what CheckMsgpack refuses (%v)\npayload %x", typ.Name(), cerr, b)
			}
		}
	})
}

// TestDecodeRefusesWhatCheckRefuses: Decode leaves CheckMsgpack to the
// hand-written decoders, which must refuse what it refuses even where
// reflection would not, in a value they skip.
func TestDecodeRefusesWhatCheckRefuses(t *testing.T) {
	deep := []byte{0x81, 0xa7, 'u', 'n', 'k', 'n', 'o', 'w', 'n'}
	for range 40 {
		deep = append(deep, 0x91)
	}
	deep = append(deep, 0xc0)
	for name, b := range map[string][]byte{
		"nested 40 deep": deep,
		"0xc1":           {0x81, 0xa1, 'x', 0xc1},
		"truncated":      {0x82, 0xa1, 'x', 0xc0},
		"lying length":   {0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff},
	} {
		if _, err := CheckMsgpack(b); err == nil {
			t.Fatalf("%s: CheckMsgpack accepts it", name)
		}
		for _, typ := range fastTypes {
			e := Envelope{Kind: KindPublisher, Version: Version, Payload: b}
			if err := Decode(e, reflect.New(typ).Interface()); err == nil {
				t.Errorf("%s: decoded as %s", name, typ.Name())
			}
		}
	}
}

// decodeKeys holds the field names each decoder of decode.go knows, for
// every struct type those decoders reach.
var decodeKeys = map[reflect.Type][]string{
	reflect.TypeFor[Session]():        sessionKeys,
	reflect.TypeFor[PendingCommand](): pendingCommandKeys,
	reflect.TypeFor[ChunkReader]():    chunkReaderKeys,
	reflect.TypeFor[ChunkStream]():    chunkStreamKeys,
	reflect.TypeFor[ChunkWriter]():    chunkWriterKeys,
	reflect.TypeFor[Publisher]():      publisherKeys,
	reflect.TypeFor[Stream]():         streamKeys,
	reflect.TypeFor[Recorder]():       recorderKeys,
	reflect.TypeFor[HLS]():            hlsKeys,
	reflect.TypeFor[HLSSegment]():     hlsSegmentKeys,
	reflect.TypeFor[HLSPart]():        hlsPartKeys,
	reflect.TypeFor[HLSGone]():        hlsGoneKeys,
	reflect.TypeFor[HLSSample]():      hlsSampleKeys,
	reflect.TypeFor[HLSTrack]():       hlsTrackKeys,
	reflect.TypeFor[Player]():         playerKeys,
	reflect.TypeFor[QueuedMessage]():  queuedMessageKeys,
	reflect.TypeFor[Relay]():          relayKeys,
	reflect.TypeFor[FLVPlayer]():      flvPlayerKeys,
	reflect.TypeFor[HTTPConn]():       httpConnKeys,
}

// TestDecodeKnowsEveryField: every struct the decoders reach has its
// names listed in decode.go, all of them, in declaration order (an array
// holds a struct's values in that order); and with every field of a value
// set, in map form and in array form, no field comes out zero. A field
// added to a type and not to decode.go fails here by name.
func TestDecodeKnowsEveryField(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(typ reflect.Type)
	walk = func(typ reflect.Type) {
		switch typ.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array:
			walk(typ.Elem())
			return
		case reflect.Struct:
		default:
			return
		}
		if seen[typ] {
			return
		}
		seen[typ] = true
		var want []string
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !f.IsExported() || msgpackName(f) == "-" {
				continue
			}
			want = append(want, msgpackName(f))
			walk(f.Type)
		}
		got, ok := decodeKeys[typ]
		if !ok {
			t.Errorf("%s has no decoder in decode.go (or decodeKeys misses it)", typ)
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decode.go knows fields %q, the type has %q", typ, got, want)
		}
	}
	for _, typ := range fastTypes {
		walk(typ)
	}
	for typ := range decodeKeys {
		if !seen[typ] {
			t.Errorf("decodeKeys lists %s, which no decoded type holds", typ)
		}
	}

	r := rand.New(rand.NewPCG(1, 2))
	f := filler{next: r.Uint64, full: true}
	for _, typ := range fastTypes {
		v := reflect.New(typ)
		f.fill(v.Elem())
		b, err := msgpack.Marshal(v.Interface())
		if err != nil {
			t.Fatal(err)
		}
		w := writer{r: r, every: true}
		w.value(v.Elem())
		for form, p := range map[string][]byte{"map": b, "array": w.b} {
			got := reflect.New(typ)
			if _, err := decodeFast(p, got.Interface()); err != nil {
				t.Fatalf("%s as %s: %v", typ, form, err)
			}
			checkFields(t, typ.Name()+" as "+form, got.Elem(), v.Elem())
		}
	}
}

// checkFields names the first field at which got and want differ.
func checkFields(t *testing.T, path string, got, want reflect.Value) {
	t.Helper()
	switch want.Kind() {
	case reflect.Struct:
		for i := range want.NumField() {
			if want.Type().Field(i).IsExported() {
				checkFields(t, path+"."+want.Type().Field(i).Name, got.Field(i), want.Field(i))
			}
		}
	case reflect.Pointer:
		if got.IsNil() {
			t.Errorf("%s: not decoded", path)
			return
		}
		checkFields(t, path, got.Elem(), want.Elem())
	case reflect.Slice, reflect.Array:
		if got.Len() != want.Len() {
			t.Errorf("%s: %d elements decoded, want %d", path, got.Len(), want.Len())
			return
		}
		for i := range want.Len() {
			checkFields(t, path+"[]", got.Index(i), want.Index(i))
		}
	default:
		if !reflect.DeepEqual(got.Interface(), want.Interface()) {
			t.Errorf("%s: decoded %v, want %v", path, got, want)
		}
	}
}

// The point of decode.go beyond speed: what a session costs to decode in
// allocations is what it holds, no more.
func TestDecodeAllocs(t *testing.T) {
	pub := benchPublisher()
	env, _ := Encode(KindPublisher, pub)
	fast := testing.AllocsPerRun(20, func() {
		var p Publisher
		_ = Decode(env, &p)
	})
	slow := testing.AllocsPerRun(20, func() {
		var p Publisher
		_ = msgpack.Unmarshal(env.Payload, &p)
	})
	if fast >= slow {
		t.Errorf("hand-written: %.0f allocations, reflection %.0f", fast, slow)
	}
}
