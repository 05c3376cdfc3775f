package relay

import (
	"net/url"
	"strings"
	"testing"

	"github.com/mediad/mediad/ingest/amf0"
)

func TestParseEndpoint(t *testing.T) {
	good := []struct {
		url  string
		want Endpoint
	}{
		{"rtmp://example.com/live/key", Endpoint{Addr: "example.com:1935", ServerName: "example.com", App: "live", TCURL: "rtmp://example.com/live", Name: "key"}},
		{"rtmps://example.com/live/key", Endpoint{TLS: true, Addr: "example.com:443", ServerName: "example.com", App: "live", TCURL: "rtmps://example.com/live", Name: "key"}},
		{"rtmps://example.com:8443/live/key", Endpoint{TLS: true, Addr: "example.com:8443", ServerName: "example.com", App: "live", TCURL: "rtmps://example.com:8443/live", Name: "key"}},
		// The query goes with the stream name, as written.
		{"rtmp://h:1936/live/key?token=a%20b&x=1", Endpoint{Addr: "h:1936", ServerName: "h", App: "live", TCURL: "rtmp://h:1936/live", Name: "key?token=a%20b&x=1"}},
		{"rtmp://h/live/key?", Endpoint{Addr: "h:1935", ServerName: "h", App: "live", TCURL: "rtmp://h/live", Name: "key"}},
		// Everything before the last element is the app.
		{"rtmp://h/a/b/c/key", Endpoint{Addr: "h:1935", ServerName: "h", App: "a/b/c", TCURL: "rtmp://h/a/b/c", Name: "key"}},
		// Elements are unescaped for the RTMP commands; the tcUrl stays a URL.
		{"rtmp://h/li%2Fve/my%20key", Endpoint{Addr: "h:1935", ServerName: "h", App: "li/ve", TCURL: "rtmp://h/li%2Fve", Name: "my key"}},
		{"rtmp://[::1]:1935/live/key", Endpoint{Addr: "[::1]:1935", ServerName: "::1", App: "live", TCURL: "rtmp://[::1]:1935/live", Name: "key"}},
		{"rtmps://[::1]/live/key", Endpoint{TLS: true, Addr: "[::1]:443", ServerName: "::1", App: "live", TCURL: "rtmps://[::1]/live", Name: "key"}},
		{"RTMP://Example.COM/live/key", Endpoint{Addr: "Example.COM:1935", ServerName: "Example.COM", App: "live", TCURL: "rtmp://Example.COM/live", Name: "key"}},
		{"rtmp://127.0.0.1:65535/live/key", Endpoint{Addr: "127.0.0.1:65535", ServerName: "127.0.0.1", App: "live", TCURL: "rtmp://127.0.0.1:65535/live", Name: "key"}},
	}
	for _, tc := range good {
		got, err := ParseEndpoint(tc.url)
		if err != nil {
			t.Errorf("ParseEndpoint(%q): %v", tc.url, err)
			continue
		}
		tc.want.URL = tc.url
		if got != tc.want {
			t.Errorf("ParseEndpoint(%q)\n got %+v\nwant %+v", tc.url, got, tc.want)
		}
	}

	bad := []struct{ url, want string }{
		{"ftp://x/y", `rtmp url "ftp://x/y": scheme "ftp": want rtmp or rtmps`},
		{"http://h/live/key", `scheme "http"`},
		{"//h/live/key", `scheme ""`},
		{"", `scheme ""`},
		{"rtmp:h/live/key", "want rtmp://host/app/name"},
		{"rtmp:///live/key", "no host"},
		{"rtmp://:1935/live/key", "no host"},
		{"rtmp://user:pw@h/live/key", "user info is not allowed"},
		{"rtmp://h/live/key#frag", "fragment is not allowed"},
		{"rtmp://h/live/key#", "fragment is not allowed"},
		{"rtmp://h:0/live/key", `port "0": want 1..65535`},
		{"rtmp://h:65536/live/key", `port "65536": want 1..65535`},
		{"rtmp://h:/live/key", "empty port"},
		{"rtmp://h:x/live/key", "invalid port"},
		{"rtmp://h", `path "": want /APP/NAME`},
		{"rtmp://h/", `path "/": want /APP/NAME`},
		{"rtmp://h/key", `path "/key": want /APP/NAME`},
		{"rtmp://h/live/", `path "/live/": empty element`},
		{"rtmp://h//key", `path "//key": empty element`},
		{"rtmp://h/a//key", `path "/a//key": empty element`},
		{"rtmp://h/live/k%zz", "invalid URL escape"},
		{"rtmp://h/live/k%3Fx", `stream name "k%3Fx": "?" is not allowed, even escaped`},
		{"rtmp://h/li%3Fve/key", `app "li%3Fve": "?" is not allowed, even escaped`},
		{"rtmp://h/live/k\x7f", "invalid control character"},
		{"rtmp://h/live/k ey\n", "invalid control character"},
	}
	for _, tc := range bad {
		ep, err := ParseEndpoint(tc.url)
		if err == nil {
			t.Errorf("ParseEndpoint(%q) = %+v, want an error", tc.url, ep)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "rtmp url ") {
			t.Errorf("ParseEndpoint(%q): %q, want it to mention %q", tc.url, err, tc.want)
		}
		// url's own errors repeat the URL; ours names it once.
		if strings.Count(err.Error(), "parse ") > 0 {
			t.Errorf("ParseEndpoint(%q): %q repeats url's prefix", tc.url, err)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for _, raw := range []string{
		"rtmp://h/live/{key}",
		"rtmps://h:443/{app}/{key}?token=x&app={app}",
		"rtmp://h/push/{app}-{key}",
		"rtmp://h/a/b/{key}",
		"rtmp://h/live/fixed",
		"rtmp://h/{app}/{key}?{key}",
	} {
		tg, err := ParseTarget("live", raw)
		if err != nil {
			t.Errorf("ParseTarget(%q): %v", raw, err)
			continue
		}
		if tg != (Target{App: "live", URL: raw}) {
			t.Errorf("ParseTarget(%q) = %+v", raw, tg)
		}
	}

	bad := []struct{ url, want string }{
		{"ftp://x/y", `push url "ftp://x/y": scheme "ftp": want rtmp or rtmps`},
		{"rtmp://h/live/{stream}", `placeholder "{stream}": want {app} or {key}`},
		{"rtmp://h/live/{KEY}", `placeholder "{KEY}"`},
		{"rtmp://h/live/{}", `placeholder "{}"`},
		{"rtmp://h/live/{a{key}", `placeholder "{a{key}"`},
		{"rtmp://h/live/{key", `unclosed "{"`},
		{"rtmp://h/live/key}", `"}" without "{"`},
		{"rtmp://h/live/{key}?t={token}", `placeholder "{token}"`},
		{"rtmp://{app}.h/live/{key}", `invalid character "{" in host name`},
		{"rtmp://h:{key}/live/x", "invalid port"},
		{"rtmp://h/{key}", `path "/{key}": want /APP/NAME`},
		{"rtmp://h/{app}{key}", `path "/{app}{key}": want /APP/NAME`},
		{"rtmp://h/live/{key}#{app}", "fragment is not allowed"},
		{"rtmp://user@h/live/{key}", "user info is not allowed"},
		{"rtmp://h:70000/live/{key}", `port "70000"`},
	}
	for _, tc := range bad {
		tg, err := ParseTarget("", tc.url)
		if err == nil {
			t.Errorf("ParseTarget(%q) = %+v, want an error", tc.url, tg)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "push url ") {
			t.Errorf("ParseTarget(%q): %q, want it to mention %q", tc.url, err, tc.want)
		}
	}
}

func TestTargetApplies(t *testing.T) {
	all := Target{URL: "rtmp://h/live/{key}"}
	one := Target{App: "live", URL: "rtmp://h/live/{key}"}
	for _, tc := range []struct {
		t    Target
		app  string
		want bool
	}{
		{all, "live", true},
		{all, "other", true},
		{one, "live", true},
		{one, "other", false},
		{one, "Live", false},
	} {
		if got := tc.t.Applies(tc.app); got != tc.want {
			t.Errorf("%+v.Applies(%q) = %v", tc.t, tc.app, got)
		}
	}
}

func TestTargetExpand(t *testing.T) {
	for _, tc := range []struct {
		tmpl, app, key string
		want           string
		// What the expanded URL sends: app, stream name before the query,
		// and the query parameter t.
		app2, key2, query string
	}{
		{tmpl: "rtmp://h/live/{key}", app: "cam", key: "abc", want: "rtmp://h/live/abc", app2: "live", key2: "abc"},
		{tmpl: "rtmp://h/{app}/{key}", app: "cam", key: "abc", want: "rtmp://h/cam/abc", app2: "cam", key2: "abc"},
		{tmpl: "rtmp://h/live/fixed?t=1", app: "cam", key: "abc", want: "rtmp://h/live/fixed?t=1", app2: "live", key2: "fixed", query: "1"},
		{tmpl: "rtmps://h/push/{app}-{key}?t={app}.{key}", app: "cam", key: "abc", want: "rtmps://h/push/cam-abc?t=cam.abc", app2: "push", key2: "cam-abc", query: "cam.abc"},
		// Path escaping keeps a value in its element; query escaping keeps
		// it in its parameter. Both undo to the original value.
		{
			tmpl: "rtmp://h/{app}/{key}?t={key}", app: "a/b", key: "a b/c&e%f+",
			want: "rtmp://h/a%2Fb/a%20b%2Fc&e%25f+?t=a+b%2Fc%26e%25f%2B",
			app2: "a/b", key2: "a b/c&e%f+", query: "a b/c&e%f+",
		},
	} {
		tg, err := ParseTarget("", tc.tmpl)
		if err != nil {
			t.Fatalf("ParseTarget(%q): %v", tc.tmpl, err)
		}
		got := tg.Expand(tc.app, tc.key)
		if got != tc.want {
			t.Errorf("Expand(%q, %q, %q) = %q, want %q", tc.tmpl, tc.app, tc.key, got, tc.want)
			continue
		}
		ep, err := ParseEndpoint(got)
		if err != nil {
			t.Errorf("ParseEndpoint(Expand(%q)): %v", tc.tmpl, err)
			continue
		}
		name, rawQuery, _ := strings.Cut(ep.Name, "?")
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			t.Errorf("%q: query %q: %v", got, rawQuery, err)
		}
		if ep.App != tc.app2 || name != tc.key2 || q.Get("t") != tc.query {
			t.Errorf("%q sends app %q, name %q, t=%q; want %q, %q, %q", got, ep.App, name, q.Get("t"), tc.app2, tc.key2, tc.query)
		}
	}
}

func TestSetDataFrame(t *testing.T) {
	meta, err := amf0.AppendAll(nil, "onMetaData", amf0.ECMAArray{{Key: "encoder", Value: "x"}, {Key: "width", Value: 1280.0}})
	if err != nil {
		t.Fatal(err)
	}
	orig := append([]byte(nil), meta...)
	got := SetDataFrame(meta[:len(meta):len(meta)])
	want, err := amf0.AppendAll(nil, "@setDataFrame", "onMetaData", amf0.ECMAArray{{Key: "encoder", Value: "x"}, {Key: "width", Value: 1280.0}})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("SetDataFrame = %x\nwant %x", got, want)
	}
	got[len(got)-4] ^= 0xff
	if string(meta) != string(orig) {
		t.Error("SetDataFrame's result shares memory with its argument")
	}
	if got := SetDataFrame(nil); string(got) != "\x02\x00\x0d@setDataFrame" {
		t.Errorf("SetDataFrame(nil) = %q", got)
	}
}
