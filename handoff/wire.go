package handoff

import (
	"errors"
	"fmt"
	"math"
)

// mpReader decodes the msgpack subset the handoff messages use, straight
// from a received frame body. msgpack/v5's Decoder is not used for this
// untrusted input: it sizes []byte and reflected slices from the peer's
// length prefix before checking that many bytes exist (a five-byte bin32
// header asks for 4 GiB), and its Skip recurses once per nesting level.
// Here every length is checked against the bytes left before anything is
// sliced, skipping is iterative, and byte strings alias the body instead of
// being copied.
type mpReader struct {
	b   []byte
	off int
}

var errShort = errors.New("msgpack: truncated")

func (r *mpReader) left() int { return len(r.b) - r.off }

func (r *mpReader) byte1() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errShort
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *mpReader) take(n int) ([]byte, error) {
	if n < 0 || n > r.left() {
		return nil, fmt.Errorf("msgpack: %d-byte value with %d bytes left: %w", n, r.left(), errShort)
	}
	p := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return p, nil
}

// be reads an n-byte big-endian unsigned integer, n in {1, 2, 4, 8}.
func (r *mpReader) be(n int) (uint64, error) {
	p, err := r.take(n)
	if err != nil {
		return 0, err
	}
	var v uint64
	for _, c := range p {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

func (r *mpReader) mapLen() (int, error) {
	c, err := r.byte1()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c&0xf0 == 0x80:
		return int(c & 0x0f), nil
	case c == 0xc0: // nil reads as an empty map
		return 0, nil
	case c == 0xde:
		n, err = r.be(2)
	case c == 0xdf:
		n, err = r.be(4)
	default:
		return 0, fmt.Errorf("msgpack: code %#x where a map was expected", c)
	}
	if err != nil {
		return 0, err
	}
	// Every key and value takes at least a byte.
	if n > uint64(r.left())/2 {
		return 0, fmt.Errorf("msgpack: map of %d entries with %d bytes left: %w", n, r.left(), errShort)
	}
	return int(n), nil
}

func (r *mpReader) arrayLen() (int, error) {
	c, err := r.byte1()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c&0xf0 == 0x90:
		return int(c & 0x0f), nil
	case c == 0xc0:
		return 0, nil
	case c == 0xdc:
		n, err = r.be(2)
	case c == 0xdd:
		n, err = r.be(4)
	default:
		return 0, fmt.Errorf("msgpack: code %#x where an array was expected", c)
	}
	if err != nil {
		return 0, err
	}
	if n > uint64(r.left()) {
		return 0, fmt.Errorf("msgpack: array of %d elements with %d bytes left: %w", n, r.left(), errShort)
	}
	return int(n), nil
}

// strBytes reads a str (or nil) and returns it aliasing the body.
func (r *mpReader) strBytes() ([]byte, error) {
	c, err := r.byte1()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch {
	case c&0xe0 == 0xa0:
		n = uint64(c & 0x1f)
	case c == 0xc0:
		return nil, nil
	case c == 0xd9:
		n, err = r.be(1)
	case c == 0xda:
		n, err = r.be(2)
	case c == 0xdb:
		n, err = r.be(4)
	default:
		return nil, fmt.Errorf("msgpack: code %#x where a string was expected", c)
	}
	if err != nil {
		return nil, err
	}
	return r.take(int(n))
}

func (r *mpReader) str() (string, error) {
	p, err := r.strBytes()
	return string(p), err
}

// bin reads a bin (or nil) and returns it aliasing the body.
func (r *mpReader) bin() ([]byte, error) {
	c, err := r.byte1()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc4:
		n, err = r.be(1)
	case 0xc5:
		n, err = r.be(2)
	case 0xc6:
		n, err = r.be(4)
	default:
		return nil, fmt.Errorf("msgpack: code %#x where binary was expected", c)
	}
	if err != nil {
		return nil, err
	}
	return r.take(int(n))
}

// int64 reads any msgpack integer that fits in an int64.
func (r *mpReader) int64() (int64, error) {
	c, err := r.byte1()
	if err != nil {
		return 0, err
	}
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	}
	var size int
	signed := false
	switch c {
	case 0xcc, 0xcd, 0xce, 0xcf:
		size = 1 << (c - 0xcc)
	case 0xd0, 0xd1, 0xd2, 0xd3:
		size, signed = 1<<(c-0xd0), true
	default:
		return 0, fmt.Errorf("msgpack: code %#x where an integer was expected", c)
	}
	v, err := r.be(size)
	if err != nil {
		return 0, err
	}
	if !signed {
		if v > math.MaxInt64 {
			return 0, fmt.Errorf("msgpack: integer %d out of range", v)
		}
		return int64(v), nil
	}
	// Sign-extend from size bytes.
	shift := 64 - 8*size
	return int64(v<<shift) >> shift, nil
}

// count reads a non-negative integer that counts things, bounded by limit.
func (r *mpReader) count(limit int) (int, error) {
	v, err := r.int64()
	if err != nil {
		return 0, err
	}
	if v < 0 || v > int64(limit) {
		return 0, fmt.Errorf("msgpack: count %d outside 0..%d", v, limit)
	}
	return int(v), nil
}

// bool reads a msgpack boolean.
func (r *mpReader) bool() (bool, error) {
	c, err := r.byte1()
	if err != nil {
		return false, err
	}
	switch c {
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	}
	return false, fmt.Errorf("msgpack: type byte 0x%02x where a boolean was expected", c)
}

func (r *mpReader) uint32() (uint32, error) {
	v, err := r.int64()
	if err != nil {
		return 0, err
	}
	if v < 0 || v > math.MaxUint32 {
		return 0, fmt.Errorf("msgpack: %d does not fit in 32 bits", v)
	}
	return uint32(v), nil
}

func (r *mpReader) uint64() (uint64, error) {
	c, err := r.byte1()
	if err != nil {
		return 0, err
	}
	if c == 0xcf { // the one encoding beyond int64's range
		return r.be(8)
	}
	r.off--
	v, err := r.int64()
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, fmt.Errorf("msgpack: %d where an unsigned integer was expected", v)
	}
	return uint64(v), nil
}

// skip passes over one value of any type, however deeply nested, without
// recursion: pending counts the values still to pass over.
func (r *mpReader) skip() error {
	for pending := uint64(1); pending > 0; pending-- {
		if pending > uint64(r.left()) {
			return fmt.Errorf("msgpack: %d values pending with %d bytes left: %w", pending, r.left(), errShort)
		}
		c, err := r.byte1()
		if err != nil {
			return err
		}
		var n uint64 // bytes to pass over
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c&0xf0 == 0x80:
			pending += 2 * uint64(c&0x0f)
		case c&0xf0 == 0x90:
			pending += uint64(c & 0x0f)
		case c&0xe0 == 0xa0:
			n = uint64(c & 0x1f)
		case c == 0xcc || c == 0xd0:
			n = 1
		case c == 0xcd || c == 0xd1:
			n = 2
		case c == 0xce || c == 0xd2 || c == 0xca:
			n = 4
		case c == 0xcf || c == 0xd3 || c == 0xcb:
			n = 8
		case c == 0xc4 || c == 0xd9:
			n, err = r.be(1)
		case c == 0xc5 || c == 0xda:
			n, err = r.be(2)
		case c == 0xc6 || c == 0xdb:
			n, err = r.be(4)
		case c == 0xdc:
			n, err = r.be(2)
			pending, n = pending+n, 0
		case c == 0xdd:
			n, err = r.be(4)
			pending, n = pending+n, 0
		case c == 0xde:
			n, err = r.be(2)
			pending, n = pending+2*n, 0
		case c == 0xdf:
			n, err = r.be(4)
			pending, n = pending+2*n, 0
		case c >= 0xd4 && c <= 0xd8: // fixext 1, 2, 4, 8, 16: type byte + data
			n = 1 + 1<<(c-0xd4)
		case c == 0xc7:
			n, err = r.be(1)
			n++
		case c == 0xc8:
			n, err = r.be(2)
			n++
		case c == 0xc9:
			n, err = r.be(4)
			n++
		default: // 0xc1 is never used
			return fmt.Errorf("msgpack: invalid code %#x", c)
		}
		if err != nil {
			return err
		}
		if n > uint64(r.left()) {
			return fmt.Errorf("msgpack: %d-byte value with %d bytes left: %w", n, r.left(), errShort)
		}
		r.off += int(n)
	}
	return nil
}
