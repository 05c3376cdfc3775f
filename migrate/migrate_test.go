package migrate

import (
	"strings"
	"testing"

	"github.com/mediad/mediad/state"
)

func TestConvert(t *testing.T) {
	e := state.Envelope{Kind: state.KindConn, Version: 1, Payload: []byte{0x80}}
	got, err := Convert(e, 1)
	if err != nil || got.Version != 1 || string(got.Payload) != string(e.Payload) {
		t.Fatalf("Convert v1→v1 = %+v, %v", got, err)
	}
	for _, tc := range []struct{ from, to uint32 }{{0, 1}, {1, 0}, {state.Version + 1, 1}, {1, state.Version + 1}} {
		_, err := Convert(state.Envelope{Kind: state.KindConn, Version: tc.from, Payload: []byte{0x80}}, tc.to)
		if err == nil {
			t.Errorf("Convert v%d→v%d succeeded", tc.from, tc.to)
			continue
		}
		for _, want := range []string{"v" + itoa(tc.from), "v" + itoa(tc.to)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Convert v%d→v%d error %q does not name %s", tc.from, tc.to, err, want)
			}
		}
	}
}

func itoa(v uint32) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for v > 0 {
		b = append([]byte{byte('0' + v%10)}, b...)
		v /= 10
	}
	return string(b)
}
