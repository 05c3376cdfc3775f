package amf0

import (
	"fmt"
	"math"
	"strings"
)

// equal compares decoded values exactly: Numbers by bit pattern, so NaN
// equals itself and -0 differs from +0.
func equal(a, b any) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case float64:
		b, ok := b.(float64)
		return ok && math.Float64bits(a) == math.Float64bits(b)
	case bool:
		b, ok := b.(bool)
		return ok && a == b
	case string:
		b, ok := b.(string)
		return ok && a == b
	case Undefined:
		_, ok := b.(Undefined)
		return ok
	case Date:
		b, ok := b.(Date)
		return ok && math.Float64bits(a.Millis) == math.Float64bits(b.Millis) && a.TimeZone == b.TimeZone
	case Object:
		b, ok := b.(Object)
		return ok && equalProps(a, b)
	case ECMAArray:
		b, ok := b.(ECMAArray)
		return ok && equalProps(a, b)
	case []any:
		b, ok := b.([]any)
		return ok && equalSlices(a, b)
	}
	return false
}

func equalProps(a, b []Property) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

func equalSlices(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// show formats a value for failure messages, eliding long strings.
func show(v any) string {
	out := fmt.Sprintf("%#v", v)
	if len(out) > 300 {
		out = out[:300] + "..."
	}
	return strings.ReplaceAll(out, "amf0.", "")
}
