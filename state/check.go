package state

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxDepth bounds msgpack nesting in untrusted payloads.
const maxDepth = 32

var errTruncated = errors.New("truncated")

// CheckMsgpack walks one msgpack value at the start of b and checks that
// every length it declares fits in the bytes that follow, so that a decoder
// run on b afterwards allocates in proportion to len(b): the msgpack library
// sizes some allocations from declared lengths alone. It returns the size of
// the value.
func CheckMsgpack(b []byte) (int, error) {
	n, err := checkValue(b, 0, 0)
	if err != nil {
		return 0, fmt.Errorf("state: msgpack: %w", err)
	}
	return n, nil
}

func checkValue(b []byte, off, depth int) (int, error) {
	if depth > maxDepth {
		return 0, fmt.Errorf("nested deeper than %d at offset %d", maxDepth, off)
	}
	if off >= len(b) {
		return 0, fmt.Errorf("offset %d: %w", off, errTruncated)
	}
	c := b[off]
	off++
	need := func(n uint64) (int, error) {
		if n > uint64(len(b)-off) {
			return 0, fmt.Errorf("offset %d: %d bytes declared, %d left: %w", off, n, len(b)-off, errTruncated)
		}
		return off + int(n), nil
	}
	length := func(width int) (uint64, error) {
		if len(b)-off < width {
			return 0, fmt.Errorf("offset %d: %w", off, errTruncated)
		}
		var n uint64
		switch width {
		case 1:
			n = uint64(b[off])
		case 2:
			n = uint64(binary.BigEndian.Uint16(b[off:]))
		case 4:
			n = uint64(binary.BigEndian.Uint32(b[off:]))
		}
		off += width
		return n, nil
	}
	elems := func(count uint64, per int) (int, error) {
		// Every element takes at least one byte: a count beyond the bytes
		// left is a lie, caught before any decoder believes it.
		if count*uint64(per) > uint64(len(b)-off) {
			return 0, fmt.Errorf("offset %d: %d elements declared, %d bytes left: %w", off, count, len(b)-off, errTruncated)
		}
		for range count * uint64(per) {
			var err error
			off, err = checkValue(b, off, depth+1)
			if err != nil {
				return 0, err
			}
		}
		return off, nil
	}
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return off, nil
	case c >= 0x80 && c <= 0x8f:
		return elems(uint64(c&0x0f), 2)
	case c >= 0x90 && c <= 0x9f:
		return elems(uint64(c&0x0f), 1)
	case c >= 0xa0 && c <= 0xbf:
		return need(uint64(c & 0x1f))
	}
	var width int
	switch c {
	case 0xcc, 0xd0:
		return need(1)
	case 0xcd, 0xd1:
		return need(2)
	case 0xca, 0xce, 0xd2:
		return need(4)
	case 0xcb, 0xcf, 0xd3:
		return need(8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
		return need(1 + 1<<(c-0xd4))
	case 0xc4, 0xd9, 0xc7: // bin8, str8, ext8
		width = 1
	case 0xc5, 0xda, 0xc8, 0xdc, 0xde:
		width = 2
	case 0xc6, 0xdb, 0xc9, 0xdd, 0xdf:
		width = 4
	default:
		return 0, fmt.Errorf("offset %d: unknown type byte %#x", off-1, c)
	}
	n, err := length(width)
	if err != nil {
		return 0, err
	}
	switch c {
	case 0xdc, 0xdd:
		return elems(n, 1)
	case 0xde, 0xdf:
		return elems(n, 2)
	case 0xc7, 0xc8, 0xc9:
		return need(n + 1) // ext type byte, then data
	}
	return need(n)
}
