// Package amf0 encodes and decodes Action Message Format 0, the value
// encoding of RTMP command messages (connect, createStream, publish, their
// _result/_error/onStatus replies) and of data messages such as
// @setDataFrame/onMetaData.
//
// Values map to Go types as follows:
//
//	Number (0x00)         float64
//	Boolean (0x01)        bool
//	String (0x02)         string
//	Long String (0x0C)    string (decoded; strings longer than 65535 bytes encode as Long String)
//	Object (0x03)         Object, an ordered list of Property
//	Typed Object (0x10)   Object (decoded only; the class name is dropped)
//	Null (0x05)           nil
//	Undefined (0x06)      Undefined{}
//	ECMA Array (0x08)     ECMAArray, an ordered list of Property
//	Strict Array (0x0A)   []any
//	Date (0x0B)           Date
//
// Reference (0x07), MovieClip, RecordSet, XML Document and Unsupported
// markers are rejected with ErrUnsupportedMarker, the AMF3 switch (0x11)
// with ErrAMF3. RTMP peers in practice never send them in commands or
// metadata, and supporting references would let a small message expand into
// a large object graph.
//
// The decoder is meant for untrusted bytes: every length is checked against
// the remaining input before anything is allocated, nesting is bounded by
// MaxDepth, counts in headers are never trusted, and any input yields either
// a value or an error (never a panic). Decode errors are *DecodeError values
// carrying the byte offset; errors.Is matches them against the Err* sentinels.
//
// Decoded strings never alias the input buffer, so callers may reuse it.
// Common RTMP command names and property keys, and small integral numbers,
// are returned from preallocated values to keep command decoding cheap.
//
// Append accepts, besides the decoded types, Go integers and float32 (as
// Number), map[string]any (as Object with keys sorted, for deterministic
// output), time.Time (as Date) and []any (as Strict Array).
package amf0
