package handoff

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/mediad/mediad/state"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// vectors drive the encode test, the decode test and the fuzz seeds: one
// table of {message, descriptors, wire bytes}, the wire bytes written out
// by hand from the msgpack spec.
var vectors = []struct {
	name string
	msg  message
	fds  int
	wire string
}{
	{"hello", Hello{Build: "v1.2", ReadsMin: 1, ReadsMax: 2, PID: 4242, NoFileLimit: 20000, OpenFDs: 9},
		0, "4d44484f 01 01 0000 0000003d 86" +
			"a5 6275696c64 a4 76312e32" + // build: "v1.2"
			"a9 72656164735f6d696e 01" + // reads_min: 1
			"a9 72656164735f6d6178 02" + // reads_max: 2
			"a3 706964 cd 1092" + // pid: 4242
			"a6 6e6f66696c65 cd 4e20" + // nofile: 20000
			"a8 6f70656e5f666473 09"}, // open_fds: 9
	{"hello taking an open plan", Hello{Build: "v1.2", ReadsMin: 1, ReadsMax: 2, PID: 4242, NoFileLimit: 20000, OpenFDs: 9, OpenPlan: true},
		0, "4d44484f 01 01 0000 00000048 87" +
			"a5 6275696c64 a4 76312e32" +
			"a9 72656164735f6d696e 01" +
			"a9 72656164735f6d6178 02" +
			"a3 706964 cd 1092" +
			"a6 6e6f66696c65 cd 4e20" +
			"a8 6f70656e5f666473 09" +
			"a9 6f70656e5f706c616e c3"}, // open_plan: true
	{"open plan", Plan{Version: 3, Items: 2, FDs: 4, Open: true},
		0, "4d44484f 01 02 0000 0000001c 84 a7 76657273696f6e 03 a5 6974656d73 02 a3 666473 04 a4 6f70656e c3"},
	{"end of an open plan", endMsg{open: true, items: 3, fds: 4},
		0, "4d44484f 01 05 0000 0000000d 82 a5 6974656d73 03 a3 666473 04"},
	{"plan", Plan{Version: 3, Items: 2, FDs: 4},
		0, "4d44484f 01 02 0000 00000016 83 a7 76657273696f6e 03 a5 6974656d73 02 a3 666473 04"},
	{"refuse", refuseMsg{"too old"},
		0, "4d44484f 01 03 0000 00000010 81 a6 726561736f6e a7 746f6f206f6c64"},
	{"batch", batchMsg{[]wireItem{{env: state.Envelope{Kind: "conn", Version: 1, Payload: []byte("ab")}, nfiles: 2}}},
		2, "4d44484f 01 04 0002 0000002f 81 a5 6974656d73 91 82" +
			"a3 656e76 83 a4 6b696e64 a4 636f6e6e a1 76 01 a7 7061796c6f6164 c4 02 6162" +
			"a6 6e66696c6573 02"},
	{"end", endMsg{}, 0, "4d44484f 01 05 0000 00000001 80"},
	{"prepared", preparedMsg{5}, 0, "4d44484f 01 06 0000 00000008 81 a5 6974656d73 05"},
	{"reject", rejectMsg{"bad"}, 0, "4d44484f 01 07 0000 0000000c 81 a6 726561736f6e a3 626164"},
	{"commit", commitMsg{}, 0, "4d44484f 01 08 0000 00000001 80"},
	{"abort", abortMsg{"x"}, 0, "4d44484f 01 09 0000 0000000a 81 a6 726561736f6e a1 78"},
}

// encodeBatch appends the body of a Batch carrying items to buf, as
// sendBatch sends it in parts.
func encodeBatch(buf *bytes.Buffer, items []Item) error {
	var framing bytes.Buffer
	parts, err := encodeBatchParts(&framing, items, nil)
	for _, p := range parts {
		buf.Write(p)
	}
	return err
}

// encodeFrame is the sending path minus the socket: header plus body.
func encodeFrame(t testing.TB, m message, nfds int) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	if b, ok := m.(batchMsg); ok {
		items := make([]Item, len(b.items))
		for i, w := range b.items {
			items[i] = Item{Envelope: w.env, Files: make([]*os.File, w.nfiles)}
		}
		err = encodeBatch(&buf, items)
	} else {
		err = encodeBody(&buf, m)
	}
	if err != nil {
		t.Fatal(err)
	}
	return append(appendHeader(nil, header{typ: m.msgType(), nfds: nfds, length: buf.Len()}), buf.Bytes()...)
}

func TestVectorsEncode(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			got := encodeFrame(t, v.msg, v.fds)
			if want := unhex(v.wire); !bytes.Equal(got, want) {
				t.Errorf("encoded\n got %x\nwant %x", got, want)
			}
		})
	}
}

func TestVectorsDecode(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			wire := unhex(v.wire)
			h, err := parseHeader(wire)
			if err != nil {
				t.Fatal(err)
			}
			if h.typ != v.msg.msgType() || h.nfds != v.fds || h.length != len(wire)-headerLen {
				t.Fatalf("header %+v for a %d-byte frame of %s with %d fds", h, len(wire), v.msg.msgType(), v.fds)
			}
			m, err := decodeBody(h.typ, wire[headerLen:], h.nfds)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m, v.msg) {
				t.Errorf("decoded %#v, want %#v", m, v.msg)
			}
		})
	}
}

// The bodies are plain msgpack: the library reads them as maps.
func TestBodiesAreMsgpack(t *testing.T) {
	for _, v := range vectors {
		var m map[string]any
		if err := msgpack.Unmarshal(unhex(v.wire)[headerLen:], &m); err != nil {
			t.Errorf("%s: %v", v.name, err)
		}
	}
}

// packets replays bytes as a packet stream: each packet is a 2-byte
// big-endian length minus one, then that many bytes (so that a full
// MaxPacket fits). It never carries descriptors.
type packets struct{ b []byte }

func (p *packets) readPacket(dst []byte) (int, []int, error) {
	if len(p.b) < 3 {
		return 0, nil, fmt.Errorf("end of stream: %w", ErrPeerClosed)
	}
	n := min(int(binary.BigEndian.Uint16(p.b))+1, len(p.b)-2)
	p.b = p.b[2:]
	if n > len(dst) {
		return 0, nil, fmt.Errorf("%d-byte packet, room for %d", n, len(dst))
	}
	copy(dst, p.b[:n])
	p.b = p.b[n:]
	return n, nil, nil
}

// packetize splits a frame's bytes into packets of at most size bytes.
func packetize(frame []byte, size int) []byte {
	var out []byte
	for len(frame) > 0 {
		n := min(size, len(frame))
		out = binary.BigEndian.AppendUint16(out, uint16(n-1))
		out = append(out, frame[:n]...)
		frame = frame[n:]
	}
	return out
}

// collect is a packetWriter that records packets.
type collect struct {
	pkts     [][]byte
	maxParts int
}

func (c *collect) writePacket(parts [][]byte, fds []int) error {
	if len(fds) > 0 && len(c.pkts) > 0 {
		return errors.New("descriptors after the first packet")
	}
	var pkt []byte
	for _, p := range parts {
		if len(p) == 0 {
			return errors.New("an empty part")
		}
		pkt = append(pkt, p...)
	}
	c.pkts = append(c.pkts, pkt)
	c.maxParts = max(c.maxParts, len(parts))
	return nil
}

// A frame sent in parts is the same frame, byte for byte, however the
// body is cut: large parts split across packets, many small ones (a batch
// of small envelopes) spread over packets of at most maxParts parts, empty
// ones skipped.
func TestFramePartsAreTheFrame(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name  string
		sizes func() []int
	}{
		{"empty", func() []int { return nil }},
		{"one empty part", func() []int { return []int{0} }},
		{"one large", func() []int { return []int{3*MaxPacket + 17} }},
		{"exactly a packet", func() []int { return []int{MaxPacket - headerLen, MaxPacket} }},
		{"many tiny", func() []int {
			s := make([]int, 5000)
			for i := range s {
				s[i] = 1 + i%3
			}
			return s
		}},
		{"random", func() []int {
			s := make([]int, 300)
			for i := range s {
				s[i] = rng.IntN(5000)
			}
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var parts [][]byte
			var body []byte
			for _, n := range tc.sizes() {
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				parts = append(parts, p)
				body = append(body, p...)
			}
			var whole, split collect
			if err := writeFrame(&whole, make([]byte, headerLen), typeBatch, body, nil); err != nil {
				t.Fatal(err)
			}
			if err := writeFrameParts(&split, make([]byte, headerLen), typeBatch, parts, nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(bytes.Join(whole.pkts, nil), bytes.Join(split.pkts, nil)) {
				t.Fatal("the frame in parts differs from the frame")
			}
			if split.maxParts > maxParts {
				t.Errorf("a packet of %d parts", split.maxParts)
			}
			var stream []byte
			for i, p := range split.pkts {
				if len(p) > MaxPacket {
					t.Errorf("packet %d is %d bytes", i, len(p))
				}
				stream = append(stream, packetize(p, MaxPacket)...)
			}
			fr, err := readFrame(&packets{stream}, make([]byte, MaxPacket))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(fr.body, body) {
				t.Fatalf("read back %d bytes of %d", len(fr.body), len(body))
			}
		})
	}
}

// A frame larger than a packet is split, and read back whole, whatever
// size the continuation packets have.
func TestFrameSplitAndJoin(t *testing.T) {
	body := make([]byte, 3*MaxPacket+1234)
	for i := range body {
		body[i] = byte(i * 7)
	}
	var w collect
	if err := writeFrame(&w, make([]byte, headerLen), typeBatch, body, nil); err != nil {
		t.Fatal(err)
	}
	if len(w.pkts) != 4 {
		t.Fatalf("%d packets, want 4", len(w.pkts))
	}
	for i, p := range w.pkts {
		if len(p) > MaxPacket {
			t.Errorf("packet %d is %d bytes", i, len(p))
		}
	}
	var stream []byte
	for _, p := range w.pkts {
		stream = append(stream, packetize(p, MaxPacket)...)
	}
	fr, err := readFrame(&packets{stream}, make([]byte, MaxPacket))
	if err != nil {
		t.Fatal(err)
	}
	if fr.typ != typeBatch || !bytes.Equal(fr.body, body) {
		t.Fatalf("read back %s of %d bytes", fr.typ, len(fr.body))
	}
	// The same frame with small continuation packets: the reader takes
	// any split after the first packet.
	small := packetize(w.pkts[0], MaxPacket)
	small = append(small, packetize(bytes.Join(w.pkts[1:], nil), 1000)...)
	fr, err = readFrame(&packets{small}, make([]byte, MaxPacket))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fr.body, body) {
		t.Fatal("body differs when read from 1000-byte continuation packets")
	}
}

func TestReadFrameErrors(t *testing.T) {
	hdr := func(typ msgType, nfds, length int) []byte {
		return appendHeader(nil, header{typ: typ, nfds: nfds, length: length})
	}
	raw := func(b ...[]byte) []byte { return bytes.Join(b, nil) }
	tests := []struct {
		name   string
		stream []byte
		want   string
	}{
		{"empty", nil, "peer closed"},
		{"short header", packetize([]byte("MDHO\x01"), 100), "shorter than a header"},
		{"bad magic", packetize(raw([]byte("MDHX"), hdr(typeEnd, 0, 1)[4:], []byte{0x80}), 100), "bad magic"},
		{"other version", packetize(raw([]byte("MDHO\x02"), hdr(typeEnd, 0, 1)[5:], []byte{0x80}), 100), "protocol 2"},
		{"unknown type", packetize(raw(hdr(msgType(42), 0, 1), []byte{0x80}), 100), "unknown message"},
		{"type zero", packetize(raw(hdr(msgType(0), 0, 1), []byte{0x80}), 100), "unknown message"},
		{"too many fds", packetize(hdr(typeBatch, MaxFDsPerFrame+1, 0), 100), "251 descriptors"},
		{"fds on non-batch", packetize(hdr(typeEnd, 1, 0), 100), "End carries 1 descriptors"},
		{"fds announced, none came", packetize(raw(hdr(typeBatch, 2, 1), []byte{0x80}), 100), "announces 2 descriptors, 0 arrived"},
		{"oversize", packetize(hdr(typeBatch, 0, MaxFrameSize+1), 100), "limit"},
		{"bytes past body", packetize(raw(hdr(typeEnd, 0, 1), []byte{0x80, 0x80}), 100), "past its 1-byte body"},
		{"cut short", packetize(raw(hdr(typeBatch, 0, 100), make([]byte, 10)), 100), "cut short at 10 of 100"},
		{"continuation too long", raw(packetize(raw(hdr(typeBatch, 0, 20), make([]byte, 10)), 100), packetize(make([]byte, 11), 100)), "room for 10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readFrame(&packets{tc.stream}, make([]byte, MaxPacket))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestDecodeBodyErrors(t *testing.T) {
	item := func(extra string) string {
		return "82 a3 656e76 83 a4 6b696e64 a4 636f6e6e a1 76 01 a7 7061796c6f6164 c4 02 6162 a6 6e66696c6573 " + extra
	}
	deep := strings.Repeat("91", 100000) + "c0"
	tests := []struct {
		name string
		typ  msgType
		body string
		nfds int
		want string
	}{
		{"not a map", typeEnd, "90", 0, "where a map was expected"},
		{"trailing bytes", typeEnd, "80 80", 0, "1 bytes after the body"},
		{"empty body", typeCommit, "", 0, "truncated"},
		{"huge map claim", typePlan, "df ffffffff", 0, "map of 4294967295 entries"},
		{"huge array claim", typeBatch, "81 a5 6974656d73 dd ffffffff", 0, "array of 4294967295 elements"},
		{"huge bin claim", typeBatch, "81 a5 6974656d73 91 81 a3 656e76 81 a7 7061796c6f6164 c6 ffffffff", 0, "4294967295-byte value"},
		{"huge str claim", typeHello, "81 a5 6275696c64 db 7fffffff", 0, "2147483647-byte value"},
		{"negative count", typePlan, "81 a5 6974656d73 ff", 0, "count -1"},
		{"count too large", typePrepared, "81 a5 6974656d73 cf ffffffffffffffff", 0, "out of range"},
		{"version beyond 32 bits", typePlan, "81 a7 76657273696f6e cf 0000000100000000", 0, "32 bits"},
		{"nfiles over the frame limit", typeBatch, "81 a5 6974656d73 91 " + item("cc fb"), 251, "count 251"},
		{"files do not match fds", typeBatch, "81 a5 6974656d73 91 " + item("02"), 3, "account for 2 descriptors, 3 arrived"},
		{"fds beyond the items", typeBatch, "81 a5 6974656d73 91 " + item("02"), 1, "account for 2 descriptors, 1 arrived"},
		{"item without kind", typeBatch, "81 a5 6974656d73 91 81 a6 6e66696c6573 00", 0, "without a kind"},
		{"repeated items", typeBatch, "82 a5 6974656d73 90 a5 6974656d73 90", 0, "repeated"},
		{"fds on a plan", typePlan, "80", 1, "1 descriptors attached"},
		{"invalid code", typeEnd, "81 a1 78 c1", 0, "invalid code"},
		{"deep unknown value", typeEnd, "81 a1 78 " + deep, 0, ""},
		{"deep value cut short", typeEnd, "81 a1 78 " + strings.Repeat("91", 1000), 0, "values pending"},
		{"key not a string", typeEnd, "81 01 01", 0, "where a string was expected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeBody(tc.typ, unhex(tc.body), tc.nfds)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// Fields a later build adds are skipped, whatever their type.
func TestDecodeSkipsUnknownFields(t *testing.T) {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	for _, err := range []error{
		e.EncodeMapLen(4),
		e.EncodeString("future"), e.Encode(map[string]any{"a": []any{1, "x", 2.5, true, nil, []byte{1, 2}, int64(-1 << 40)}}),
		e.EncodeString("items"), e.EncodeInt(7),
		e.EncodeString("ext"), e.Encode(msgpack.RawMessage{0xd6, 0x01, 1, 2, 3, 4}),
		e.EncodeString("big"), e.EncodeUint(1 << 60),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	m, err := decodeBody(typePrepared, buf.Bytes(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if m != (preparedMsg{7}) {
		t.Fatalf("decoded %#v", m)
	}
}

// mpReader reads every integer encoding the library writes.
func TestIntegerEncodings(t *testing.T) {
	values := []int64{0, 1, 127, 128, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1<<63 - 1,
		-1, -32, -33, -128, -129, -32768, -32769, -1 << 31, -1<<31 - 1, -1 << 63}
	for _, v := range values {
		for _, enc := range []func(*msgpack.Encoder) error{
			func(e *msgpack.Encoder) error { return e.EncodeInt(v) },
			func(e *msgpack.Encoder) error { return e.EncodeInt64(v) },
		} {
			var buf bytes.Buffer
			if err := enc(msgpack.NewEncoder(&buf)); err != nil {
				t.Fatal(err)
			}
			r := &mpReader{b: buf.Bytes()}
			got, err := r.int64()
			if err != nil || got != v || r.left() != 0 {
				t.Errorf("%d encoded as %x read back as %d, %v", v, buf.Bytes(), got, err)
			}
			r = &mpReader{b: buf.Bytes()}
			if err := r.skip(); err != nil || r.left() != 0 {
				t.Errorf("skip %x: %v, %d left", buf.Bytes(), err, r.left())
			}
		}
	}
	var buf bytes.Buffer
	if err := msgpack.NewEncoder(&buf).EncodeUint(1<<64 - 1); err != nil {
		t.Fatal(err)
	}
	r := &mpReader{b: buf.Bytes()}
	if got, err := r.uint64(); err != nil || got != 1<<64-1 {
		t.Errorf("max uint64 read back as %d, %v", got, err)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	for _, v := range vectors {
		f.Add(packetize(unhex(v.wire), MaxPacket))
		f.Add(packetize(unhex(v.wire), 7))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := &packets{data}
		pkt := make([]byte, MaxPacket)
		for {
			fr, err := readFrame(src, pkt)
			if err != nil {
				return
			}
			if len(fr.fds) != 0 {
				t.Fatalf("descriptors out of a source that has none")
			}
			m, err := decodeBody(fr.typ, fr.body, 0)
			if err != nil {
				continue
			}
			// What decodes re-encodes to something that decodes the same.
			again := encodeFrame(t, m, 0)
			m2, err := decodeBody(fr.typ, again[headerLen:], 0)
			if err != nil {
				t.Fatalf("re-encoded %#v does not decode: %v", m, err)
			}
			if !sameMessage(m, m2) {
				t.Fatalf("round trip changed %#v into %#v", m, m2)
			}
		}
	})
}

// sameMessage compares messages, taking a nil payload as an empty one and
// reasons as the sender truncates them.
func sameMessage(a, b message) bool {
	norm := func(m message) message {
		switch m := m.(type) {
		case batchMsg:
			items := make([]wireItem, len(m.items))
			for i, it := range m.items {
				if it.env.Payload == nil {
					it.env.Payload = []byte{}
				}
				items[i] = it
			}
			return batchMsg{items}
		case refuseMsg:
			return refuseMsg{truncReason(m.reason)}
		case rejectMsg:
			return rejectMsg{truncReason(m.reason)}
		case abortMsg:
			return abortMsg{truncReason(m.reason)}
		}
		return m
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func truncReason(s string) string { return s[:min(len(s), maxReason)] }
