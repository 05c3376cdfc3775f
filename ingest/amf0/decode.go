package amf0

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Decode decodes the first AMF0 value in b and returns it with the number
// of bytes it occupied. On error n is 0 and err is a *DecodeError.
func Decode(b []byte) (v any, n int, err error) {
	d := decoder{b: b}
	v, err = d.value()
	if err != nil {
		return nil, 0, err
	}
	return v, d.off, nil
}

// DecodeAll decodes a sequence of AMF0 values filling all of b, as in the
// body of an RTMP command or data message. An empty b gives no values and
// no error.
func DecodeAll(b []byte) ([]any, error) {
	d := decoder{b: b}
	// Command bodies hold a handful of values; collecting them in a stack
	// array and copying once gives a single exactly sized allocation.
	var scratch [8]any
	vs := scratch[:0]
	for d.off < len(d.b) {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		return nil, nil
	}
	out := make([]any, len(vs))
	copy(out, vs)
	return out, nil
}

type decoder struct {
	b     []byte
	off   int
	depth int
}

func (d *decoder) fail(off int, sentinel error, format string, args ...any) *DecodeError {
	return &DecodeError{Offset: off, Reason: fmt.Sprintf(format, args...), Err: sentinel}
}

// need checks that n more bytes are available at the current offset.
func (d *decoder) need(n uint64, what string) error {
	if rem := uint64(len(d.b) - d.off); n > rem {
		return d.fail(d.off, ErrTruncated, "%s needs %d bytes, %d remain", what, n, rem)
	}
	return nil
}

func (d *decoder) enter(start int, m byte) error {
	if d.depth >= MaxDepth {
		return d.fail(start, ErrTooDeep, "%s at depth %d exceeds limit %d", markerName(m), d.depth+1, MaxDepth)
	}
	d.depth++
	return nil
}

func (d *decoder) value() (any, error) {
	if err := d.need(1, "marker"); err != nil {
		return nil, err
	}
	start := d.off
	m := d.b[d.off]
	d.off++
	switch m {
	case markerNumber:
		f, err := d.float64("number")
		if err != nil {
			return nil, err
		}
		return boxNumber(f), nil
	case markerBoolean:
		if err := d.need(1, "boolean"); err != nil {
			return nil, err
		}
		v := d.b[d.off] != 0
		d.off++
		return v, nil
	case markerString:
		return d.stringValue(2, "string length", "string")
	case markerLongString:
		return d.stringValue(4, "long string length", "long string")
	case markerNull:
		return nil, nil
	case markerUndefined:
		return Undefined{}, nil
	case markerObject:
		props, err := d.properties(start, m)
		if err != nil {
			return nil, err
		}
		return Object(props), nil
	case markerTypedObject:
		// The class name only matters to Flash's object model; RTMP
		// peers do not rely on it, so the value decodes as a plain Object.
		if _, err := d.bytes(2, "typed object class name length", "typed object class name"); err != nil {
			return nil, err
		}
		props, err := d.properties(start, m)
		if err != nil {
			return nil, err
		}
		return Object(props), nil
	case markerECMAArray:
		// The count is only a hint and writers get it wrong; the end
		// marker is what terminates the array, so the count is skipped.
		if err := d.need(4, "ecma array count"); err != nil {
			return nil, err
		}
		d.off += 4
		props, err := d.properties(start, m)
		if err != nil {
			return nil, err
		}
		return ECMAArray(props), nil
	case markerStrictArray:
		return d.strictArray(start)
	case markerDate:
		ms, err := d.float64("date")
		if err != nil {
			return nil, err
		}
		if err := d.need(2, "date time zone"); err != nil {
			return nil, err
		}
		tz := int16(binary.BigEndian.Uint16(d.b[d.off:]))
		d.off += 2
		return Date{Millis: ms, TimeZone: tz}, nil
	case markerAMF3:
		return nil, d.fail(start, ErrAMF3, "marker 0x%02x (%s)", m, markerName(m))
	case markerObjectEnd:
		return nil, d.fail(start, ErrMalformed, "marker 0x%02x (%s) outside an object", m, markerName(m))
	case markerMovieClip, markerReference, markerUnsupported, markerRecordSet, markerXMLDocument:
		return nil, d.fail(start, ErrUnsupportedMarker, "marker 0x%02x (%s)", m, markerName(m))
	default:
		return nil, d.fail(start, ErrUnknownMarker, "marker 0x%02x", m)
	}
}

func (d *decoder) float64(what string) (float64, error) {
	if err := d.need(8, what); err != nil {
		return 0, err
	}
	f := math.Float64frombits(binary.BigEndian.Uint64(d.b[d.off:]))
	d.off += 8
	return f, nil
}

// bytes reads a length-prefixed byte string whose length field is
// lenSize (2 or 4) bytes wide. The result aliases the input. The two labels
// are separate constants because building one at run time would allocate
// on every call.
func (d *decoder) bytes(lenSize int, lenWhat, what string) ([]byte, error) {
	if err := d.need(uint64(lenSize), lenWhat); err != nil {
		return nil, err
	}
	var n uint64
	if lenSize == 2 {
		n = uint64(binary.BigEndian.Uint16(d.b[d.off:]))
	} else {
		n = uint64(binary.BigEndian.Uint32(d.b[d.off:]))
	}
	d.off += lenSize
	if err := d.need(n, what); err != nil {
		return nil, err
	}
	s := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return s, nil
}

func (d *decoder) stringValue(lenSize int, lenWhat, what string) (any, error) {
	s, err := d.bytes(lenSize, lenWhat, what)
	if err != nil {
		return nil, err
	}
	if v, ok := lookupInterned(s); ok {
		return v, nil
	}
	return string(s), nil
}

// properties decodes key/value pairs up to and including the end marker
// (an empty key followed by 0x09). An empty key followed by any other
// marker is an ordinary property with an empty name.
func (d *decoder) properties(start int, m byte) ([]Property, error) {
	if err := d.enter(start, m); err != nil {
		return nil, err
	}
	// Collect into a stack array and copy once: one exactly sized
	// allocation per object, whatever count the header claims.
	var scratch [16]Property
	props := scratch[:0]
	for {
		k, err := d.bytes(2, "property key length", "property key")
		if err != nil {
			return nil, err
		}
		if len(k) == 0 && d.off < len(d.b) && d.b[d.off] == markerObjectEnd {
			d.off++
			break
		}
		key := internKey(k)
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		props = append(props, Property{Key: key, Value: v})
	}
	d.depth--
	out := make([]Property, len(props))
	copy(out, props)
	return out, nil
}

// maxArrayPrealloc bounds the capacity reserved from a strict array's
// count. Every element takes at least one byte, so the count is first
// checked against the remaining input; the cap additionally stops nested
// arrays from each reserving 16 bytes per remaining input byte.
const maxArrayPrealloc = 1024

func (d *decoder) strictArray(start int) (any, error) {
	if err := d.need(4, "strict array count"); err != nil {
		return nil, err
	}
	n := uint64(binary.BigEndian.Uint32(d.b[d.off:]))
	d.off += 4
	if rem := uint64(len(d.b) - d.off); n > rem {
		return nil, d.fail(start, ErrTruncated, "strict array count %d exceeds %d remaining bytes", n, rem)
	}
	if err := d.enter(start, markerStrictArray); err != nil {
		return nil, err
	}
	vs := make([]any, 0, min(n, maxArrayPrealloc))
	for range n {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	d.depth--
	return vs, nil
}

// smallInts holds boxed float64 values of small integers: transaction IDs,
// stream IDs and many metadata fields are small integral Numbers, and
// boxing a float64 otherwise allocates.
var smallInts = func() (t [256]any) {
	for i := range t {
		t[i] = float64(i)
	}
	return t
}()

func boxNumber(f float64) any {
	// -0 is excluded so that its sign bit survives a round trip.
	if f >= 0 && f < float64(len(smallInts)) && f == math.Trunc(f) && !math.Signbit(f) {
		return smallInts[int(f)]
	}
	return f
}
