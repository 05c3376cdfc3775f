package media

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/mediad/mediad/ingest/hls"
)

// directivesRef is parseDirectives written the plain way, through
// url.Values: the in-place scan must agree with it.
func directivesRef(rawQuery string) (hls.Request, bool) {
	var req hls.Request
	q, _ := url.ParseQuery(rawQuery)
	if v := q.Get("_HLS_msn"); v != "" {
		n, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			return req, false
		}
		req.MSN, req.HasMSN = n, true
	}
	if v := q.Get("_HLS_part"); v != "" {
		n, err := strconv.ParseUint(v, 10, 31)
		if err != nil || !req.HasMSN {
			return req, false
		}
		req.Part, req.HasPart = n, true
	}
	return req, true
}

func TestParseDirectives(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  hls.Request
		ok    bool
	}{
		{"", hls.Request{}, true},
		{"_HLS_msn=12", hls.Request{MSN: 12, HasMSN: true}, true},
		{"_HLS_msn=12&_HLS_part=3", hls.Request{MSN: 12, HasMSN: true, Part: 3, HasPart: true}, true},
		{"_HLS_part=3&_HLS_msn=12", hls.Request{MSN: 12, HasMSN: true, Part: 3, HasPart: true}, true},
		{"_HLS_msn=12&_HLS_msn=99", hls.Request{MSN: 12, HasMSN: true}, true},
		{"_HLS_part=3", hls.Request{}, false},
		{"_HLS_msn=abc", hls.Request{}, false},
		{"_HLS_msn=-1", hls.Request{}, false},
		{"_HLS_msn=1&_HLS_part=99999999999", hls.Request{MSN: 1, HasMSN: true}, false},
		{"_HLS_msn", hls.Request{}, true},
		{"other=1&_HLS_msn=5&x", hls.Request{MSN: 5, HasMSN: true}, true},
		{"%5FHLS_msn=7", hls.Request{MSN: 7, HasMSN: true}, true},
		{"_HLS_msn=7;x=1", hls.Request{}, true},
		{"_HLS_msn=%37", hls.Request{MSN: 7, HasMSN: true}, true},
	} {
		r := &http.Request{URL: &url.URL{Path: "/live/x/index.m3u8", RawQuery: tc.query}}
		got, ok := parseDirectives(r)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %+v %v, want %+v %v", tc.query, got, ok, tc.want, tc.ok)
		}
		if ref, rok := directivesRef(tc.query); ref != got || rok != ok {
			t.Errorf("%q: %+v %v, but url.Values gives %+v %v", tc.query, got, ok, ref, rok)
		}
	}
}

// FuzzParseDirectives: the in-place scan agrees with url.Values on any
// query.
func FuzzParseDirectives(f *testing.F) {
	for _, s := range []string{"_HLS_msn=1&_HLS_part=2", "_HLS_msn=%31", "a=b&&_HLS_part=1&_HLS_msn=0", "_HLS_msn==1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		got, ok := parseDirectives(&http.Request{URL: &url.URL{RawQuery: q}})
		ref, rok := directivesRef(q)
		if got != ref || ok != rok {
			t.Fatalf("%q: %+v %v, url.Values %+v %v", q, got, ok, ref, rok)
		}
	})
}
