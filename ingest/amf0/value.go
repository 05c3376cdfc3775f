package amf0

import (
	"math"
	"time"
)

// MaxDepth is the deepest nesting of containers (Object, ECMA Array, Strict
// Array) that Decode accepts and Append produces. A top-level Object is at
// depth 1. RTMP commands and metadata use two or three levels; the bound
// keeps hostile input from exhausting the stack.
const MaxDepth = 32

// Type markers from the AMF0 specification, section 2.1.
const (
	markerNumber      = 0x00
	markerBoolean     = 0x01
	markerString      = 0x02
	markerObject      = 0x03
	markerMovieClip   = 0x04
	markerNull        = 0x05
	markerUndefined   = 0x06
	markerReference   = 0x07
	markerECMAArray   = 0x08
	markerObjectEnd   = 0x09
	markerStrictArray = 0x0A
	markerDate        = 0x0B
	markerLongString  = 0x0C
	markerUnsupported = 0x0D
	markerRecordSet   = 0x0E
	markerXMLDocument = 0x0F
	markerTypedObject = 0x10
	markerAMF3        = 0x11
)

// markerName names a marker for error messages.
func markerName(m byte) string {
	switch m {
	case markerNumber:
		return "number"
	case markerBoolean:
		return "boolean"
	case markerString:
		return "string"
	case markerObject:
		return "object"
	case markerMovieClip:
		return "movieclip"
	case markerNull:
		return "null"
	case markerUndefined:
		return "undefined"
	case markerReference:
		return "reference"
	case markerECMAArray:
		return "ecma-array"
	case markerObjectEnd:
		return "object-end"
	case markerStrictArray:
		return "strict-array"
	case markerDate:
		return "date"
	case markerLongString:
		return "long-string"
	case markerUnsupported:
		return "unsupported"
	case markerRecordSet:
		return "recordset"
	case markerXMLDocument:
		return "xml-document"
	case markerTypedObject:
		return "typed-object"
	case markerAMF3:
		return "avmplus-object"
	}
	return "unknown"
}

// Undefined is the AMF0 undefined value, distinct from Null (nil).
type Undefined struct{}

// Date is an AMF0 Date: milliseconds since the Unix epoch (UTC) and a time
// zone field. The specification reserves the time zone and says it should
// be 0; it is kept so that decoding and re-encoding preserves the bytes.
type Date struct {
	Millis   float64
	TimeZone int16
}

// Time converts d to a time.Time in UTC, truncated to the millisecond.
// Non-finite Millis give the zero time.Time.
func (d Date) Time() time.Time {
	if math.IsNaN(d.Millis) || math.IsInf(d.Millis, 0) {
		return time.Time{}
	}
	return time.UnixMilli(int64(d.Millis)).UTC()
}

// Property is one key/value pair of an Object or ECMAArray.
type Property struct {
	Key   string
	Value any
}

// Object is an AMF0 anonymous object. Properties keep their wire order,
// and duplicate keys are preserved; lookups return the first match.
type Object []Property

// ECMAArray is an AMF0 ECMA (associative) array, as used by onMetaData.
// It has the same shape as Object but a different marker on the wire.
type ECMAArray []Property

// Get returns the value of the first property named key.
func (o Object) Get(key string) (any, bool) { return get(o, key) }

// GetString returns the value of the first property named key if it is a
// string.
func (o Object) GetString(key string) (string, bool) { return getAs[string](o, key) }

// GetNumber returns the value of the first property named key if it is a
// Number (float64).
func (o Object) GetNumber(key string) (float64, bool) { return getAs[float64](o, key) }

// GetBool returns the value of the first property named key if it is a
// boolean.
func (o Object) GetBool(key string) (bool, bool) { return getAs[bool](o, key) }

// Get returns the value of the first property named key.
func (a ECMAArray) Get(key string) (any, bool) { return get(a, key) }

// GetString returns the value of the first property named key if it is a
// string.
func (a ECMAArray) GetString(key string) (string, bool) { return getAs[string](a, key) }

// GetNumber returns the value of the first property named key if it is a
// Number (float64).
func (a ECMAArray) GetNumber(key string) (float64, bool) { return getAs[float64](a, key) }

// GetBool returns the value of the first property named key if it is a
// boolean.
func (a ECMAArray) GetBool(key string) (bool, bool) { return getAs[bool](a, key) }

func get(props []Property, key string) (any, bool) {
	for i := range props {
		if props[i].Key == key {
			return props[i].Value, true
		}
	}
	return nil, false
}

// getAs looks at the first property named key only: a later duplicate of
// the right type must not shadow what Get reports.
func getAs[T any](props []Property, key string) (T, bool) {
	v, ok := get(props, key)
	if !ok {
		var zero T
		return zero, false
	}
	t, ok := v.(T)
	return t, ok
}
