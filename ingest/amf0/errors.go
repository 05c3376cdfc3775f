package amf0

import (
	"errors"
	"fmt"
)

// Sentinel errors. Decode errors wrap them inside a *DecodeError, encode
// errors wrap them with the path to the offending value; match with
// errors.Is.
var (
	// ErrTruncated: the input ends before the value it announces.
	ErrTruncated = errors.New("truncated input")
	// ErrMalformed: the bytes are structurally invalid, e.g. an object-end
	// marker where a value should start.
	ErrMalformed = errors.New("malformed input")
	// ErrTooDeep: containers nest deeper than MaxDepth.
	ErrTooDeep = errors.New("nesting too deep")
	// ErrAMF3: the avmplus-object marker (0x11) switches to AMF3, which this
	// package does not decode.
	ErrAMF3 = errors.New("AMF3 not supported")
	// ErrUnsupportedMarker: a marker the specification defines but this
	// package rejects (reference, movieclip, recordset, xml-document,
	// unsupported).
	ErrUnsupportedMarker = errors.New("unsupported marker")
	// ErrUnknownMarker: a marker the specification does not define.
	ErrUnknownMarker = errors.New("unknown marker")
	// ErrUnsupportedType: Append was given a Go type it cannot encode.
	ErrUnsupportedType = errors.New("unsupported type")
	// ErrTooLong: a string, key or array is too long for its length field.
	ErrTooLong = errors.New("too long")
)

// DecodeError reports where and why decoding failed.
type DecodeError struct {
	// Offset is the byte offset, from the start of the buffer given to
	// Decode or DecodeAll, of the marker or field that could not be decoded.
	Offset int
	// Reason describes the failure in terms of the input.
	Reason string
	// Err is one of the sentinel errors above.
	Err error
}

func (e *DecodeError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("amf0: decode at offset %d: %s", e.Offset, e.Reason)
	}
	return fmt.Sprintf("amf0: decode at offset %d: %v: %s", e.Offset, e.Err, e.Reason)
}

func (e *DecodeError) Unwrap() error { return e.Err }
