package migrate

import "encoding/binary"

// The step from version 1 names the encoder from the onMetaData body a v1
// stream kept. What it derives must never change once released: a blob
// migrated today and the same blob migrated by a later build must come out
// the same. So the AMF0 reading it needs is frozen here, written for this
// step alone, rather than borrowed from ingest's live decoder, which is
// free to change (new markers, other limits) with the protocol code.
//
// It accepts exactly what the AMF0 decoder of the releases that wrote
// version 2 accepted, so that the encoder it finds is the one those
// releases found: the whole body must decode, or no encoder is named.

// AMF0 markers (AMF0 specification, section 2.1).
const (
	amfNumber      = 0x00
	amfBoolean     = 0x01
	amfString      = 0x02
	amfObject      = 0x03
	amfNull        = 0x05
	amfUndefined   = 0x06
	amfECMAArray   = 0x08
	amfObjectEnd   = 0x09
	amfStrictArray = 0x0a
	amfDate        = 0x0b
	amfLongString  = 0x0c
	amfTypedObject = 0x10
)

// amfMaxDepth is the deepest nesting of objects and arrays the v1-era
// decoder accepted; a top-level object is at depth 1.
const amfMaxDepth = 32

// amfWalk steps over AMF0 values without building them: the step needs one
// string, and a hostile body must cost no allocation at all.
type amfWalk struct {
	b     []byte
	off   int
	depth int
}

// encoderOf returns the "encoder" property of an onMetaData body: the
// first property of that name in the first top-level object or ECMA array
// that has one whose value is a string. A body that does not decode as a
// whole names none.
func encoderOf(md []byte) string {
	w := amfWalk{b: md}
	var enc []byte
	found := false
	for w.off < len(w.b) {
		s, ok, valid := w.value(!found)
		if !valid {
			return ""
		}
		if ok && !found {
			enc, found = s, true
		}
	}
	return string(enc)
}

// need reports whether n more bytes are there.
func (w *amfWalk) need(n uint64) bool { return n <= uint64(len(w.b)-w.off) }

// str reads a string whose length field is 2 or 4 bytes wide; the result
// aliases the body.
func (w *amfWalk) str(lenSize int) ([]byte, bool) {
	if !w.need(uint64(lenSize)) {
		return nil, false
	}
	var n uint64
	if lenSize == 2 {
		n = uint64(binary.BigEndian.Uint16(w.b[w.off:]))
	} else {
		n = uint64(binary.BigEndian.Uint32(w.b[w.off:]))
	}
	w.off += lenSize
	if !w.need(n) {
		return nil, false
	}
	s := w.b[w.off : w.off+int(n)]
	w.off += int(n)
	return s, true
}

// value steps over one value. With look set, an object or ECMA array also
// reports its encoder property (see props). valid is false when the body
// does not decode.
func (w *amfWalk) value(look bool) (enc []byte, ok, valid bool) {
	if !w.need(1) {
		return nil, false, false
	}
	m := w.b[w.off]
	w.off++
	switch m {
	case amfNumber:
		return w.skip(8)
	case amfBoolean:
		return w.skip(1)
	case amfString:
		_, valid = w.str(2)
		return nil, false, valid
	case amfLongString:
		_, valid = w.str(4)
		return nil, false, valid
	case amfNull, amfUndefined:
		return nil, false, true
	case amfObject:
		return w.props(look)
	case amfTypedObject:
		// The class name is skipped: the value is read as a plain object.
		if _, valid := w.str(2); !valid {
			return nil, false, false
		}
		return w.props(look)
	case amfECMAArray:
		// The count is a hint writers get wrong; the end marker ends the
		// array.
		if !w.need(4) {
			return nil, false, false
		}
		w.off += 4
		return w.props(look)
	case amfStrictArray:
		if !w.need(4) {
			return nil, false, false
		}
		n := uint64(binary.BigEndian.Uint32(w.b[w.off:]))
		w.off += 4
		// Every element takes a byte at least: a larger count is a lie.
		if !w.need(n) || !w.enter() {
			return nil, false, false
		}
		for range n {
			if _, _, valid := w.value(false); !valid {
				return nil, false, false
			}
		}
		w.depth--
		return nil, false, true
	case amfDate:
		return w.skip(8 + 2) // milliseconds, then time zone
	}
	// The object-end marker outside an object, AMF3, and the markers the
	// decoder refused (movieclip, reference, unsupported, recordset, XML
	// document) or never knew: the body does not decode.
	return nil, false, false
}

func (w *amfWalk) skip(n uint64) (enc []byte, ok, valid bool) {
	if !w.need(n) {
		return nil, false, false
	}
	w.off += int(n)
	return nil, false, true
}

func (w *amfWalk) enter() bool {
	if w.depth >= amfMaxDepth {
		return false
	}
	w.depth++
	return true
}

// props steps over key/value pairs and the end marker (an empty key, then
// 0x09; an empty key before any other marker is a property with an empty
// name). With look set it reports the first property named "encoder", if
// its value is a string: a later one of the same name does not count.
func (w *amfWalk) props(look bool) (enc []byte, ok, valid bool) {
	if !w.enter() {
		return nil, false, false
	}
	seen := false
	for {
		k, valid := w.str(2)
		if !valid {
			return nil, false, false
		}
		if len(k) == 0 && w.off < len(w.b) && w.b[w.off] == amfObjectEnd {
			w.off++
			break
		}
		start := w.off
		if _, _, valid := w.value(false); !valid {
			return nil, false, false
		}
		if look && !seen && string(k) == "encoder" {
			seen = true
			enc, ok = stringAt(w.b[start:w.off])
		}
	}
	w.depth--
	return enc, ok, true
}

// stringAt returns the contents of v, one whole value, if it is a string
// or a long string.
func stringAt(v []byte) ([]byte, bool) {
	switch v[0] {
	case amfString:
		return v[3:], true
	case amfLongString:
		return v[5:], true
	}
	return nil, false
}
