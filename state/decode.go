package state

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Hand-written msgpack decoding for what the new process restores by the
// thousand, serially, before each session serves again: the session kinds
// and the stream (issue 13 §3). msgpack.Unmarshal finds its way through
// these types by reflection, at a cost of 100 µs and more per publisher
// with an LL-HLS index; these decoders read the same bytes directly.
//
// They give what msgpack/v5's reflection gives, for every input it
// accepts, and fail where it fails; decode_test.go holds them to that on
// the released blobs, on random values written in every form msgpack
// allows, and on a fuzzer's bytes. The payload may come from another
// build, or from package migrate, which writes its maps with the keys in
// another order and integers in their fewest bytes; so, as reflection
// does:
//
//   - a struct is a map from field names to values, in any order, names as
//     str or bin; an unknown name's value is skipped; a name seen twice is
//     decoded twice, into the same field. A struct may also be an array of
//     every field's value in declaration order, and nil, or an empty
//     array, zeroes it.
//   - an integer field takes any msgpack integer (or nil, for zero),
//     whatever the field's width, cut to the field's width as a Go
//     conversion would; a float is refused.
//   - a string or []byte takes str or bin alike; nil gives "" and a nil
//     slice, an empty str or bin an empty, non-nil slice.
//   - a slice takes an array or nil; an empty array gives an empty,
//     non-nil slice. But nil leaves a []string as it was.
//   - a pointer takes nil (a nil pointer) or its value, decoded into what
//     it already points to if anything.
//   - everything is decoded into the value already there: slices reuse
//     their backing arrays as reflection does, so that a value decoded
//     into a non-zero destination, or a payload naming a field twice,
//     comes out as it would through reflection.
//
// They never trust a length: each is checked against the bytes left before
// anything is allocated, so an allocation is bounded by the payload's
// size, and a value skipped is walked as CheckMsgpack walks it, depth
// bounded.
//
// A field added to one of these types must be added here too; the tests
// fail until it is.

// dec reads msgpack from b at off. depth is the nesting of the values
// being read, counted as CheckMsgpack counts it.
type dec struct {
	b     []byte
	off   int
	depth int
}

// decodeFast decodes b into v if v points to a type decoded here; ok is
// false for any other type, and for a nil pointer, whose error reflection
// words.
func decodeFast(b []byte, v any) (ok bool, err error) {
	d := dec{b: b}
	switch x := v.(type) {
	case *Publisher:
		if x == nil {
			return false, nil
		}
		err = d.publisher(x)
	case *Player:
		if x == nil {
			return false, nil
		}
		err = d.player(x)
	case *Session:
		if x == nil {
			return false, nil
		}
		err = d.session(x)
	case *Relay:
		if x == nil {
			return false, nil
		}
		err = d.relay(x)
	case *FLVPlayer:
		if x == nil {
			return false, nil
		}
		err = d.flvPlayer(x)
	case *HTTPConn:
		if x == nil {
			return false, nil
		}
		err = d.httpConn(x)
	case *Stream:
		if x == nil {
			return false, nil
		}
		err = d.stream(x)
	default:
		return false, nil
	}
	return true, err
}

// Primitives.

var errArrayStruct = errors.New("a struct written as an array must have all its fields")

func (d *dec) truncated() error {
	return fmt.Errorf("offset %d: %w", d.off, errTruncated)
}

func (d *dec) unexpected(c byte, want string) error {
	return fmt.Errorf("offset %d: code %#x where %s belongs", d.off-1, c, want)
}

func (d *dec) code() (byte, error) {
	if d.off >= len(d.b) {
		return 0, d.truncated()
	}
	c := d.b[d.off]
	d.off++
	return c, nil
}

// take returns the next n bytes, which stay the payload's.
func (d *dec) take(n int) ([]byte, error) {
	if n > len(d.b)-d.off {
		return nil, d.truncated()
	}
	p := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return p, nil
}

// width reads a big-endian length or number of w bytes.
func (d *dec) width(w int) (uint64, error) {
	p, err := d.take(w)
	if err != nil {
		return 0, err
	}
	switch w {
	case 1:
		return uint64(p[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(p)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(p)), nil
	}
	return binary.BigEndian.Uint64(p), nil
}

// num reads any msgpack integer, or nil as 0, as the 64 bits msgpack/v5
// gives both its int64 and its uint64 reads: signed forms sign-extended,
// unsigned ones zero-extended.
func (d *dec) num() (uint64, error) {
	if d.off >= len(d.b) {
		return 0, d.truncated()
	}
	c := d.b[d.off]
	if c <= 0x7f || c >= 0xe0 {
		d.off++
		return uint64(int64(int8(c))), nil
	}
	if c == 0xc0 {
		d.off++
		return 0, nil
	}
	if c < 0xcc || c > 0xd3 {
		d.off++
		return 0, d.unexpected(c, "an integer")
	}
	// 0xcc to 0xcf: uint 8 to 64; 0xd0 to 0xd3: int 8 to 64.
	w := 1 << ((c - 0xcc) & 3)
	p := d.b[d.off+1:]
	if len(p) < w {
		d.off++
		return 0, d.truncated()
	}
	d.off += 1 + w
	switch c {
	case 0xcc:
		return uint64(p[0]), nil
	case 0xcd:
		return uint64(binary.BigEndian.Uint16(p)), nil
	case 0xce:
		return uint64(binary.BigEndian.Uint32(p)), nil
	case 0xd0:
		return uint64(int64(int8(p[0]))), nil
	case 0xd1:
		return uint64(int64(int16(binary.BigEndian.Uint16(p)))), nil
	case 0xd2:
		return uint64(int64(int32(binary.BigEndian.Uint32(p)))), nil
	}
	return binary.BigEndian.Uint64(p), nil
}

// The integer fields: a value wider than the field is cut to it, as
// reflect's SetInt and SetUint do.

func (d *dec) u8(p *uint8) error {
	n, err := d.num()
	if err == nil {
		*p = uint8(n)
	}
	return err
}

func (d *dec) u32(p *uint32) error {
	n, err := d.num()
	if err == nil {
		*p = uint32(n)
	}
	return err
}

func (d *dec) u64(p *uint64) error {
	n, err := d.num()
	if err == nil {
		*p = n
	}
	return err
}

func (d *dec) i32(p *int32) error {
	n, err := d.num()
	if err == nil {
		*p = int32(n)
	}
	return err
}

func (d *dec) i64(p *int64) error {
	n, err := d.num()
	if err == nil {
		*p = int64(n)
	}
	return err
}

func (d *dec) int(p *int) error {
	n, err := d.num()
	if err == nil {
		*p = int(n)
	}
	return err
}

func (d *dec) bool(p *bool) error {
	c, err := d.code()
	if err != nil {
		return err
	}
	switch c {
	case 0xc0, 0xc2:
		*p = false
	case 0xc3:
		*p = true
	default:
		return d.unexpected(c, "a bool")
	}
	return nil
}

// bytesLen reads the header of a str or bin, -1 for nil, and checks that
// its bytes follow.
func (d *dec) bytesLen() (int, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = uint64(c & 0x1f)
	case c == 0xc0:
		return -1, nil
	case c == 0xd9 || c == 0xc4:
		n, err = d.width(1)
	case c == 0xda || c == 0xc5:
		n, err = d.width(2)
	case c == 0xdb || c == 0xc6:
		n, err = d.width(4)
	default:
		return 0, d.unexpected(c, "a str or bin")
	}
	if err != nil {
		return 0, err
	}
	if n > uint64(len(d.b)-d.off) {
		return 0, d.truncated()
	}
	return int(n), nil
}

func (d *dec) str(p *string) error {
	n, err := d.bytesLen()
	if err != nil {
		return err
	}
	if n <= 0 {
		*p = ""
		return nil
	}
	b, _ := d.take(n)
	*p = string(b)
	return nil
}

// bin decodes into *p's own bytes when they have room, as reflection
// does.
func (d *dec) bin(p *[]byte) error {
	n, err := d.bytesLen()
	if err != nil {
		return err
	}
	if n < 0 {
		*p = nil
		return nil
	}
	src, _ := d.take(n)
	b := *p
	switch {
	case b == nil:
		b = make([]byte, n)
	case n > cap(b):
		b = append(b, make([]byte, n-len(b))...)
	default:
		b = b[:n]
	}
	copy(b, src)
	*p = b
	return nil
}

// containerLen reads the length of an array (pairs false) or map (pairs
// true) with code c, whose fix forms start at fix, and checks that its
// elements, a byte each at least, fit in what is left.
func (d *dec) containerLen(c, fix, c16, c32 byte, pairs bool) (int, bool, error) {
	var n uint64
	var err error
	switch {
	case c >= fix && c <= fix|0x0f:
		n = uint64(c & 0x0f)
	case c == c16:
		n, err = d.width(2)
	case c == c32:
		n, err = d.width(4)
	default:
		return 0, false, nil
	}
	if err != nil {
		return 0, true, err
	}
	per := uint64(1)
	if pairs {
		per = 2
	}
	if n*per > uint64(len(d.b)-d.off) {
		return 0, true, fmt.Errorf("offset %d: %d elements declared, %d bytes left: %w", d.off, n, len(d.b)-d.off, errTruncated)
	}
	return int(n), true, nil
}

// arrayLen reads an array's length, -1 for nil.
func (d *dec) arrayLen() (int, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	if c == 0xc0 {
		return -1, nil
	}
	n, ok, err := d.containerLen(c, 0x90, 0xdc, 0xdd, false)
	if !ok {
		return 0, d.unexpected(c, "an array")
	}
	return n, err
}

// skip passes over one value of any kind.
func (d *dec) skip() error {
	off, err := checkValue(d.b, d.off, d.depth)
	if err != nil {
		return err
	}
	d.off = off
	return nil
}

// Structs.

// fields walks the entries of a struct: the pairs of a map, or the
// values of an array in field order.
type fields struct {
	keys []string // the fields' names in declaration order
	left int      // entries not yet read
	// byKey is set for a map; next is where its next key is looked for
	// first, the field after the last one, since a struct written by
	// msgpack or codec.go has its keys in field order.
	byKey bool
	next  int
}

const (
	// zeroStruct: the struct is nil or an empty array, and becomes its
	// zero value.
	zeroStruct = -1
	// endStruct: no entries left.
	endStruct = -2
	// unknownField: a name no field has, whose value is skipped.
	unknownField = -3
)

// open reads the start of a struct whose fields are named by keys. It
// returns zeroStruct for nil or an empty array, 0 otherwise.
func (d *dec) open(f *fields, keys []string) (int, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	if c == 0xc0 {
		return zeroStruct, nil
	}
	*f = fields{keys: keys}
	n, ok, err := d.containerLen(c, 0x80, 0xde, 0xdf, true)
	if ok {
		f.left, f.byKey = n, true
	} else {
		n, ok, err = d.containerLen(c, 0x90, 0xdc, 0xdd, false)
		if !ok {
			return 0, d.unexpected(c, "a map")
		}
		if err == nil && n == 0 {
			return zeroStruct, nil
		}
		if err == nil && n != len(keys) {
			return 0, fmt.Errorf("offset %d: %d values for %d fields: %w", d.off, n, len(keys), errArrayStruct)
		}
		f.left = n
	}
	if err != nil {
		return 0, err
	}
	d.depth++
	return 0, nil
}

// field reads the next entry's key, if the struct is a map, and returns
// the index of the field whose value follows, unknownField, or endStruct.
func (d *dec) field(f *fields) (int, error) {
	if f.left == 0 {
		d.depth--
		return endStruct, nil
	}
	f.left--
	if !f.byKey {
		i := f.next
		f.next++
		return i, nil
	}
	if f.next < len(f.keys) {
		// The name expected, as a fixstr: what every encoder of these
		// types writes.
		k := f.keys[f.next]
		if end := d.off + 1 + len(k); end <= len(d.b) && d.b[d.off] == 0xa0|byte(len(k)) && string(d.b[d.off+1:end]) == k {
			d.off = end
			f.next++
			return f.next - 1, nil
		}
	}
	n, err := d.bytesLen()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return unknownField, nil // nil names the field "", which none has
	}
	k, _ := d.take(n)
	if f.next < len(f.keys) && f.keys[f.next] == string(k) {
		f.next++
		return f.next - 1, nil
	}
	for i, name := range f.keys {
		if name == string(k) {
			f.next = i + 1
			return i, nil
		}
	}
	return unknownField, nil
}

// slice decodes an array into *s, each element by elem, reusing *s's
// backing array as reflection does.
func slice[T any](d *dec, s *[]T, elem func(*dec, *T) error) error {
	n, err := d.arrayLen()
	if err != nil {
		return err
	}
	v := *s
	switch {
	case n < 0:
		*s = nil
		return nil
	case n == 0 && v == nil:
		*s = []T{}
		return nil
	case n <= cap(v):
		v = v[:n]
	case len(v) < cap(v):
		v = v[:cap(v)]
	}
	if n > len(v) {
		v = append(v, make([]T, n-len(v))...)
	}
	*s = v
	d.depth++
	for i := range v {
		if err := elem(d, &v[i]); err != nil {
			return err
		}
	}
	d.depth--
	return nil
}

// strings decodes an array of strings. Unlike other slices, nil leaves
// *s as it was: reflection has a path of its own for []string.
func (d *dec) strings(s *[]string) error {
	n, err := d.arrayLen()
	if err != nil || n < 0 {
		return err
	}
	v := *s
	switch {
	case v == nil:
		v = make([]string, 0, min(n, 1e6))
	case n <= cap(v):
		v = v[:0]
	default:
		v = v[:cap(v)]
		v = append(v, make([]string, n-len(v))...)[:0]
	}
	d.depth++
	for range n {
		var x string
		if err := d.str(&x); err != nil {
			return err
		}
		v = append(v, x)
	}
	d.depth--
	*s = v
	return nil
}

// The types, each with its field names in declaration order, as msgpack
// finds them from the tags.

var sessionKeys = []string{"id", "peer", "hs_phase", "hs_partial", "reader", "writer", "out", "connected",
	"app", "tc_url", "flash_ver", "next_msid", "ack_window", "last_ack", "last_read", "pending"}

func (d *dec) session(s *Session) error {
	var f fields
	if i, err := d.open(&f, sessionKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*s = Session{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.u64(&s.ID)
		case 1:
			err = d.str(&s.Peer)
		case 2:
			err = d.u8(&s.HandshakePhase)
		case 3:
			err = d.bin(&s.HandshakePartial)
		case 4:
			err = d.chunkReader(&s.Reader)
		case 5:
			err = d.chunkWriter(&s.Writer)
		case 6:
			err = d.bin(&s.Out)
		case 7:
			err = d.bool(&s.Connected)
		case 8:
			err = d.str(&s.App)
		case 9:
			err = d.str(&s.TCURL)
		case 10:
			err = d.str(&s.FlashVer)
		case 11:
			err = d.u32(&s.NextMsid)
		case 12:
			err = d.u32(&s.AckWindow)
		case 13:
			err = d.u64(&s.LastAck)
		case 14:
			err = d.i64(&s.LastRead)
		case 15:
			err = pointer(d, &s.Pending, (*dec).pendingCommand)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

// pointer decodes a pointer field: nil, or the value it points to, into
// what it points to already if anything.
func pointer[T any](d *dec, p **T, decode func(*dec, *T) error) error {
	if d.off < len(d.b) && d.b[d.off] == 0xc0 {
		d.off++
		*p = nil
		return nil
	}
	if *p == nil {
		*p = new(T)
	}
	return decode(d, *p)
}

var pendingCommandKeys = []string{"play", "msid", "name"}

func (d *dec) pendingCommand(p *PendingCommand) error {
	var f fields
	if i, err := d.open(&f, pendingCommandKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*p = PendingCommand{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.bool(&p.Play)
		case 1:
			err = d.u32(&p.Msid)
		case 2:
			err = d.str(&p.Name)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var chunkReaderKeys = []string{"chunk_size", "max_msg", "streams", "header", "body_csid", "body_left", "bytes_read"}

func (d *dec) chunkReader(r *ChunkReader) error {
	var f fields
	if i, err := d.open(&f, chunkReaderKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*r = ChunkReader{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.u32(&r.ChunkSize)
		case 1:
			err = d.u32(&r.MaxMessageSize)
		case 2:
			err = slice(d, &r.Streams, (*dec).chunkStream)
		case 3:
			err = d.bin(&r.Header)
		case 4:
			err = d.u32(&r.BodyCSID)
		case 5:
			err = d.u32(&r.BodyLeft)
		case 6:
			err = d.u64(&r.BytesRead)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var chunkStreamKeys = []string{"csid", "ts", "delta", "len", "type", "msid", "ext", "active", "partial"}

func (d *dec) chunkStream(cs *ChunkStream) error {
	var f fields
	if i, err := d.open(&f, chunkStreamKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*cs = ChunkStream{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.u32(&cs.CSID)
		case 1:
			err = d.u32(&cs.Timestamp)
		case 2:
			err = d.u32(&cs.Delta)
		case 3:
			err = d.u32(&cs.Length)
		case 4:
			err = d.u8(&cs.TypeID)
		case 5:
			err = d.u32(&cs.StreamID)
		case 6:
			err = d.bool(&cs.Extended)
		case 7:
			err = d.bool(&cs.Active)
		case 8:
			err = d.bin(&cs.Partial)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var chunkWriterKeys = []string{"chunk_size"}

func (d *dec) chunkWriter(w *ChunkWriter) error {
	var f fields
	if i, err := d.open(&f, chunkWriterKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*w = ChunkWriter{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.u32(&w.ChunkSize)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var publisherKeys = []string{"session", "msid", "stream"}

func (d *dec) publisher(p *Publisher) error {
	var f fields
	if i, err := d.open(&f, publisherKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*p = Publisher{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.session(&p.Session)
		case 1:
			err = d.u32(&p.Msid)
		case 2:
			err = d.stream(&p.Stream)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var streamKeys = []string{"app", "key", "metadata", "video_seq", "audio_seq", "started", "bytes_in",
	"video_frames", "audio_frames", "keyframes", "recorder", "video_bytes", "audio_bytes", "encoder",
	"tracks_since", "rate_buckets", "rate_second", "hls", "query", "publisher_addr"}

func (d *dec) stream(s *Stream) error {
	var f fields
	if i, err := d.open(&f, streamKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*s = Stream{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.str(&s.App)
		case 1:
			err = d.str(&s.Key)
		case 2:
			err = d.bin(&s.Metadata)
		case 3:
			err = d.bin(&s.VideoSeq)
		case 4:
			err = d.bin(&s.AudioSeq)
		case 5:
			err = d.i64(&s.Started)
		case 6:
			err = d.u64(&s.BytesIn)
		case 7:
			err = d.u64(&s.VideoFrames)
		case 8:
			err = d.u64(&s.AudioFrames)
		case 9:
			err = d.u64(&s.Keyframes)
		case 10:
			err = pointer(d, &s.Recorder, (*dec).recorder)
		case 11:
			err = d.u64(&s.VideoBytes)
		case 12:
			err = d.u64(&s.AudioBytes)
		case 13:
			err = d.str(&s.Encoder)
		case 14:
			err = d.i64(&s.TracksSince)
		case 15:
			err = slice(d, &s.RateBuckets, (*dec).u64)
		case 16:
			err = d.i64(&s.RateSecond)
		case 17:
			err = pointer(d, &s.HLS, (*dec).hls)
		case 18:
			err = d.str(&s.Query)
		case 19:
			err = d.str(&s.PublisherAddr)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var recorderKeys = []string{"dir", "segment_ns", "path", "offset", "segment_start_ts", "started", "saw_video",
	"metadata", "video_seq", "audio_seq", "segments", "has_file"}

func (d *dec) recorder(r *Recorder) error {
	var f fields
	if i, err := d.open(&f, recorderKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*r = Recorder{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.str(&r.Dir)
		case 1:
			err = d.i64(&r.SegmentDuration)
		case 2:
			err = d.str(&r.Path)
		case 3:
			err = d.i64(&r.Offset)
		case 4:
			err = d.u32(&r.SegmentStartTS)
		case 5:
			err = d.bool(&r.Started)
		case 6:
			err = d.bool(&r.SawVideo)
		case 7:
			err = d.bin(&r.Metadata)
		case 8:
			err = d.bin(&r.VideoSeq)
		case 9:
			err = d.bin(&r.AudioSeq)
		case 10:
			err = d.strings(&r.Segments)
		case 11:
			err = d.bool(&r.HasFile)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var hlsKeys = []string{"dir", "init", "init_stale", "next_seq", "removed", "segments", "gone", "pending",
	"pending_file", "pending_offset", "tracks", "part_start"}

func (d *dec) hls(h *HLS) error {
	var f fields
	if i, err := d.open(&f, hlsKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*h = HLS{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.str(&h.Dir)
		case 1:
			err = d.u32(&h.Init)
		case 2:
			err = d.bool(&h.InitStale)
		case 3:
			err = d.u32(&h.NextSeq)
		case 4:
			err = d.u64(&h.Removed)
		case 5:
			err = slice(d, &h.Segments, (*dec).hlsSegment)
		case 6:
			err = slice(d, &h.Gone, (*dec).hlsGone)
		case 7:
			err = slice(d, &h.Pending, (*dec).hlsSample)
		case 8:
			err = d.str(&h.PendingFile)
		case 9:
			err = d.i64(&h.PendingOffset)
		case 10:
			err = d.hlsTracks(&h.Tracks)
		case 11:
			err = d.i64(&h.PartStart)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

// hlsTracks decodes the array of tracks as reflection decodes a Go array:
// nil leaves it as it was, fewer values leave the last as they were, more
// values are an error.
func (d *dec) hlsTracks(t *[2]HLSTrack) error {
	n, err := d.arrayLen()
	if err != nil || n < 0 {
		return err
	}
	if n > len(t) {
		return fmt.Errorf("offset %d: %d tracks, %d at most", d.off, n, len(t))
	}
	d.depth++
	for i := range n {
		if err := d.hlsTrack(&t[i]); err != nil {
			return err
		}
	}
	d.depth--
	return nil
}

var hlsSegmentKeys = []string{"msn", "start", "init", "parts", "closed", "discontinuity"}

func (d *dec) hlsSegment(s *HLSSegment) error {
	var f fields
	if i, err := d.open(&f, hlsSegmentKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*s = HLSSegment{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.u64(&s.MSN)
		case 1:
			err = d.i64(&s.Start)
		case 2:
			err = d.u32(&s.Init)
		case 3:
			err = slice(d, &s.Parts, (*dec).hlsPart)
		case 4:
			err = d.bool(&s.Closed)
		case 5:
			err = d.bool(&s.Discontinuity)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var hlsPartKeys = []string{"offset", "size", "duration_ms", "independent"}

func (d *dec) hlsPart(p *HLSPart) error {
	var f fields
	if i, err := d.open(&f, hlsPartKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*p = HLSPart{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.i64(&p.Offset)
		case 1:
			err = d.i64(&p.Size)
		case 2:
			err = d.i64(&p.DurationMS)
		case 3:
			err = d.bool(&p.Independent)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var hlsGoneKeys = []string{"msn", "expiry", "parts"}

func (d *dec) hlsGone(g *HLSGone) error {
	var f fields
	if i, err := d.open(&f, hlsGoneKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*g = HLSGone{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.u64(&g.MSN)
		case 1:
			err = d.i64(&g.Expiry)
		case 2:
			err = slice(d, &g.Parts, (*dec).hlsPart)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var hlsSampleKeys = []string{"track", "dts", "cts", "key", "size"}

func (d *dec) hlsSample(s *HLSSample) error {
	var f fields
	if i, err := d.open(&f, hlsSampleKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*s = HLSSample{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.u8(&s.Track)
		case 1:
			err = d.i64(&s.DTS)
		case 2:
			err = d.i32(&s.CTS)
		case 3:
			err = d.bool(&s.Key)
		case 4:
			err = d.u32(&s.Size)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var hlsTrackKeys = []string{"seen", "last_ts", "epoch", "last_dts"}

func (d *dec) hlsTrack(t *HLSTrack) error {
	var f fields
	if i, err := d.open(&f, hlsTrackKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*t = HLSTrack{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.bool(&t.Seen)
		case 1:
			err = d.u32(&t.LastTS)
		case 2:
			err = d.i64(&t.Epoch)
		case 3:
			err = d.i64(&t.LastDTS)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var playerKeys = []string{"session", "msid", "app", "key", "queue", "wait_key", "skips"}

func (d *dec) player(p *Player) error {
	var f fields
	if i, err := d.open(&f, playerKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*p = Player{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.session(&p.Session)
		case 1:
			err = d.u32(&p.Msid)
		case 2:
			err = d.str(&p.App)
		case 3:
			err = d.str(&p.Key)
		case 4:
			err = slice(d, &p.Queue, (*dec).queuedMessage)
		case 5:
			err = d.bool(&p.WaitKey)
		case 6:
			err = d.int(&p.Skips)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var queuedMessageKeys = []string{"type", "kind", "key", "ts", "csid", "msid0", "payload"}

func (d *dec) queuedMessage(m *QueuedMessage) error {
	var f fields
	if i, err := d.open(&f, queuedMessageKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*m = QueuedMessage{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.u8(&m.Type)
		case 1:
			err = d.u8(&m.Kind)
		case 2:
			err = d.bool(&m.Key)
		case 3:
			err = d.u32(&m.TS)
		case 4:
			err = d.u32(&m.CSID)
		case 5:
			err = d.bool(&m.Msid0)
		case 6:
			err = d.bin(&m.Payload)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var relayKeys = []string{"session", "app", "key", "url", "msid", "queue", "wait_key", "bytes_out", "drops",
	"reconnects", "last_error", "connected"}

func (d *dec) relay(r *Relay) error {
	var f fields
	if i, err := d.open(&f, relayKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*r = Relay{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.session(&r.Session)
		case 1:
			err = d.str(&r.App)
		case 2:
			err = d.str(&r.Key)
		case 3:
			err = d.str(&r.URL)
		case 4:
			err = d.u32(&r.Msid)
		case 5:
			err = slice(d, &r.Queue, (*dec).queuedMessage)
		case 6:
			err = d.bool(&r.WaitKey)
		case 7:
			err = d.u64(&r.BytesOut)
		case 8:
			err = d.u64(&r.Drops)
		case 9:
			err = d.u64(&r.Reconnects)
		case 10:
			err = d.str(&r.LastError)
		case 11:
			err = d.i64(&r.Connected)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var flvPlayerKeys = []string{"id", "peer", "app", "key", "out", "queue", "wait_key", "skips", "ending"}

func (d *dec) flvPlayer(p *FLVPlayer) error {
	var f fields
	if i, err := d.open(&f, flvPlayerKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*p = FLVPlayer{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.u64(&p.ID)
		case 1:
			err = d.str(&p.Peer)
		case 2:
			err = d.str(&p.App)
		case 3:
			err = d.str(&p.Key)
		case 4:
			err = d.bin(&p.Out)
		case 5:
			err = slice(d, &p.Queue, (*dec).queuedMessage)
		case 6:
			err = d.bool(&p.WaitKey)
		case 7:
			err = d.int(&p.Skips)
		case 8:
			err = d.bool(&p.Ending)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

var httpConnKeys = []string{"id", "peer", "unread", "fresh"}

func (d *dec) httpConn(c *HTTPConn) error {
	var f fields
	if i, err := d.open(&f, httpConnKeys); err != nil || i == zeroStruct {
		if i == zeroStruct {
			*c = HTTPConn{}
		}
		return err
	}
	for {
		i, err := d.field(&f)
		if err != nil || i == endStruct {
			return err
		}
		switch i {
		case 0:
			err = d.u64(&c.ID)
		case 1:
			err = d.str(&c.Peer)
		case 2:
			err = d.bin(&c.Unread)
		case 3:
			err = d.bool(&c.Fresh)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}
