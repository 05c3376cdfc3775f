package amf0

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// Append appends the AMF0 encoding of v to dst. Besides the types Decode
// produces it accepts Go integers and float32 (encoded as Number; integers
// beyond 2^53 lose precision), map[string]any (an Object with keys sorted),
// time.Time (a Date with millisecond precision and time zone 0) and []any
// (a Strict Array). On error the returned slice has dst's original length.
func Append(dst []byte, v any) ([]byte, error) {
	out, err := appendValue(dst, v, 0)
	if err != nil {
		return dst, fmt.Errorf("amf0: encode: %w", err)
	}
	return out, nil
}

// AppendAll appends the encodings of vs in order, as in an RTMP command
// body. On error the returned slice has dst's original length.
func AppendAll(dst []byte, vs ...any) ([]byte, error) {
	out := dst
	for i, v := range vs {
		var err error
		if out, err = appendValue(out, v, 0); err != nil {
			return dst, fmt.Errorf("amf0: encode value %d: %w", i, err)
		}
	}
	return out, nil
}

func appendNumber(dst []byte, f float64) []byte {
	dst = append(dst, markerNumber)
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(f))
}

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(dst, markerNull), nil
	case float64:
		return appendNumber(dst, v), nil
	case bool:
		if v {
			return append(dst, markerBoolean, 1), nil
		}
		return append(dst, markerBoolean, 0), nil
	case string:
		return appendString(dst, v)
	case Object:
		return appendProperties(append(dst, markerObject), v, depth)
	case ECMAArray:
		if uint64(len(v)) > math.MaxUint32 {
			return nil, fmt.Errorf("ecma array of %d properties: %w", len(v), ErrTooLong)
		}
		dst = append(dst, markerECMAArray)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
		return appendProperties(dst, v, depth)
	case []any:
		return appendStrictArray(dst, v, depth)
	case map[string]any:
		return appendMap(dst, v, depth)
	case Undefined:
		return append(dst, markerUndefined), nil
	case Date:
		dst = append(dst, markerDate)
		dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(v.Millis))
		return binary.BigEndian.AppendUint16(dst, uint16(v.TimeZone)), nil
	case time.Time:
		return appendValue(dst, Date{Millis: float64(v.UnixMilli())}, depth)
	case float32:
		return appendNumber(dst, float64(v)), nil
	case int:
		return appendNumber(dst, float64(v)), nil
	case int8:
		return appendNumber(dst, float64(v)), nil
	case int16:
		return appendNumber(dst, float64(v)), nil
	case int32:
		return appendNumber(dst, float64(v)), nil
	case int64:
		return appendNumber(dst, float64(v)), nil
	case uint:
		return appendNumber(dst, float64(v)), nil
	case uint8:
		return appendNumber(dst, float64(v)), nil
	case uint16:
		return appendNumber(dst, float64(v)), nil
	case uint32:
		return appendNumber(dst, float64(v)), nil
	case uint64:
		return appendNumber(dst, float64(v)), nil
	}
	return nil, fmt.Errorf("%w %T", ErrUnsupportedType, v)
}

func appendString(dst []byte, s string) ([]byte, error) {
	switch {
	case len(s) <= math.MaxUint16:
		dst = append(dst, markerString)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	case uint64(len(s)) <= math.MaxUint32:
		dst = append(dst, markerLongString)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	default:
		return nil, fmt.Errorf("string of %d bytes: %w", len(s), ErrTooLong)
	}
	return append(dst, s...), nil
}

// enter returns the depth of a container's children, or an error when the
// container itself would exceed MaxDepth. It also stops self-referencing
// []any or map values from recursing forever.
func enter(depth int) (int, error) {
	if depth >= MaxDepth {
		return 0, fmt.Errorf("container at depth %d exceeds limit %d: %w", depth+1, MaxDepth, ErrTooDeep)
	}
	return depth + 1, nil
}

func appendKey(dst []byte, key string) ([]byte, error) {
	if len(key) > math.MaxUint16 {
		return nil, fmt.Errorf("key of %d bytes: %w", len(key), ErrTooLong)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(key)))
	return append(dst, key...), nil
}

// appendProperties writes the properties and the end marker; the caller
// has written the marker and any header.
func appendProperties(dst []byte, props []Property, depth int) ([]byte, error) {
	depth, err := enter(depth)
	if err != nil {
		return nil, err
	}
	for _, p := range props {
		if dst, err = appendProperty(dst, p.Key, p.Value, depth); err != nil {
			return nil, err
		}
	}
	return append(dst, 0, 0, markerObjectEnd), nil
}

func appendProperty(dst []byte, key string, v any, depth int) ([]byte, error) {
	dst, err := appendKey(dst, key)
	if err != nil {
		return nil, err
	}
	if dst, err = appendValue(dst, v, depth); err != nil {
		return nil, fmt.Errorf("key %q: %w", key, err)
	}
	return dst, nil
}

func appendMap(dst []byte, m map[string]any, depth int) ([]byte, error) {
	depth, err := enter(depth)
	if err != nil {
		return nil, err
	}
	dst = append(dst, markerObject)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if dst, err = appendProperty(dst, k, m[k], depth); err != nil {
			return nil, err
		}
	}
	return append(dst, 0, 0, markerObjectEnd), nil
}

func appendStrictArray(dst []byte, vs []any, depth int) ([]byte, error) {
	if uint64(len(vs)) > math.MaxUint32 {
		return nil, fmt.Errorf("strict array of %d values: %w", len(vs), ErrTooLong)
	}
	depth, err := enter(depth)
	if err != nil {
		return nil, err
	}
	dst = append(dst, markerStrictArray)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(vs)))
	for i, v := range vs {
		if dst, err = appendValue(dst, v, depth); err != nil {
			return nil, fmt.Errorf("index %d: %w", i, err)
		}
	}
	return dst, nil
}
