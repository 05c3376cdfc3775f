package media

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestPlayerPage(t *testing.T) {
	tests := []struct {
		name      string
		app, key  string
		haveHLSJS bool
		want      []string
		wantNot   []string
	}{
		{
			name: "hls.js installed", app: "live", key: "test", haveHLSJS: true,
			want: []string{
				`<script src="/assets/hls.min.js"></script>`,
				`<video id="video" muted autoplay playsinline controls>`,
				`const playlist = "/live/test/index.m3u8";`,
				`lowLatencyMode: true`,
				`Hls.isSupported()`,
				`video.canPlayType("application/vnd.apple.mpegurl")`,
				`hls.playingDate`,
				`window.mediadPlayer`,
				`href="/live/test.flv"`,
				`<h1>live/test</h1>`,
			},
			wantNot: []string{"scripts/web-deps.sh"},
		},
		{
			name: "hls.js missing", app: "live", key: "test", haveHLSJS: false,
			want: []string{
				`hls.js is not installed on this server`,
				`<code>scripts/web-deps.sh</code>`,
				`const haveHLSJS =  false ;`,
				`video.canPlayType("application/vnd.apple.mpegurl")`,
			},
			wantNot: []string{`<script src="/assets/hls.min.js">`},
		},
		{
			// Names are checked before they get here; the page escapes
			// them all the same, in HTML, in URLs and in script.
			name: "hostile names escaped", app: `a"b</script><x>`, key: `k'&<`, haveHLSJS: true,
			want: []string{
				`<h1>a&#34;b&lt;/script&gt;&lt;x&gt;/k&#39;&amp;&lt;</h1>`,
				`const playlist = "/a\"b\u003c/script\u003e\u003cx\u003e/k'\u0026\u003c/index.m3u8";`,
				`href="/a%22b%3c/script%3e%3cx%3e/k%27&amp;%3c/index.m3u8"`,
			},
			wantNot: []string{`</script><x>`, `<x>`, `k'&<`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			PlayerPage(w, tt.app, tt.key, tt.haveHLSJS)
			body := checkHTML(t, w)
			for _, s := range tt.want {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %q", s)
				}
			}
			for _, s := range tt.wantNot {
				if strings.Contains(body, s) {
					t.Errorf("page holds %q", s)
				}
			}
			checkScripts(t, body)
			if t.Failed() {
				t.Logf("page:\n%s", body)
			}
		})
	}
}

func TestIndexPage(t *testing.T) {
	tests := []struct {
		name    string
		streams []StreamLink
		want    []string
		wantNot []string
	}{
		{
			name:    "no streams",
			want:    []string{"No live streams", `setInterval(`},
			wantNot: []string{"<table>"},
		},
		{
			name: "two streams",
			streams: []StreamLink{
				{App: "live", Key: "one", Players: 3, Live: true, BitrateKbps: 2500, DurationS: 3725},
				{App: "cam", Key: "door.2", Players: 0, Live: true, BitrateKbps: 640, DurationS: 59},
			},
			want: []string{
				`<a href="/live/one/">live/one</a>`,
				`<a href="/live/one/index.m3u8">HLS</a>`,
				`<a href="/live/one.flv">HTTP-FLV</a>`,
				`<td class="n">3</td>`,
				`2.5 Mbit/s`,
				`1:02:05`,
				`<a href="/cam/door.2/">cam/door.2</a>`,
				`640 kbit/s`,
				`0:59`,
			},
			wantNot: []string{"No live streams"},
		},
		{
			name:    "hostile names escaped",
			streams: []StreamLink{{App: `<img src=x onerror=alert(1)>`, Key: `"k"`, Live: true}},
			want:    []string{`&lt;img src=x onerror=alert(1)&gt;/&#34;k&#34;`, `href="/%3cimg%20src=x%20onerror=alert%281%29%3e/%22k%22/"`},
			wantNot: []string{`<img`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			IndexPage(w, tt.streams)
			body := checkHTML(t, w)
			for _, s := range tt.want {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %q", s)
				}
			}
			for _, s := range tt.wantNot {
				if strings.Contains(body, s) {
					t.Errorf("page holds %q", s)
				}
			}
			if got := strings.Count(body, `<tr class="stream">`); got != len(tt.streams) {
				t.Errorf("%d stream rows, want %d", got, len(tt.streams))
			}
			checkScripts(t, body)
			if t.Failed() {
				t.Logf("page:\n%s", body)
			}
		})
	}
}

func checkHTML(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	return w.Body.String()
}

var inlineScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)

// checkScripts has node parse each inline script, when node is here: a
// syntax error would only show in a browser otherwise.
func checkScripts(t *testing.T, body string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		return
	}
	for i, m := range inlineScript.FindAllStringSubmatch(body, -1) {
		path := filepath.Join(t.TempDir(), "script.js")
		if err := os.WriteFile(path, []byte(m[1]), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(node, "--check", path).CombinedOutput(); err != nil {
			t.Errorf("inline script %d does not parse: %v\n%s", i, err, out)
		}
	}
}

func TestAssets(t *testing.T) {
	installed := t.TempDir()
	dist := filepath.Join(installed, "node_modules", "hls.js", "dist")
	if err := os.MkdirAll(dist, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"hls.min.js": "var Hls=1;", "hls.min.js.map": `{"version":3}`, "hls.js": "unminified"} {
		if err := os.WriteFile(filepath.Join(dist, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	noMap := t.TempDir()
	if err := os.MkdirAll(filepath.Join(noMap, "node_modules", "hls.js", "dist"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(noMap, "node_modules", "hls.js", "dist", "hls.min.js"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		dir       string
		wantFound bool
		path      string
		status    int
		ctype     string
		body      string
	}{
		{"script", installed, true, "/assets/hls.min.js", 200, "text/javascript; charset=utf-8", "var Hls=1;"},
		{"source map", installed, true, "/assets/hls.min.js.map", 200, "application/json", `{"version":3}`},
		{"other dist file", installed, true, "/assets/hls.js", 404, "", ""},
		{"traversal", installed, true, "/assets/../node_modules/hls.js/dist/hls.min.js", 404, "", ""},
		{"outside assets", installed, true, "/hls.min.js", 404, "", ""},
		{"no source map", noMap, true, "/assets/hls.min.js.map", 404, "", "scripts/web-deps.sh"},
		{"not installed", t.TempDir(), false, "/assets/hls.min.js", 404, "", "scripts/web-deps.sh"},
		{"no such dir", filepath.Join(t.TempDir(), "nope"), false, "/assets/hls.min.js", 404, "", "scripts/web-deps.sh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, found := Assets(tt.dir)
			if found != tt.wantFound {
				t.Errorf("found = %v, want %v", found, tt.wantFound)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tt.path, nil))
			body, _ := io.ReadAll(w.Result().Body)
			if w.Code != tt.status {
				t.Errorf("GET %s: status %d, want %d (%s)", tt.path, w.Code, tt.status, body)
			}
			if tt.ctype != "" && w.Header().Get("Content-Type") != tt.ctype {
				t.Errorf("GET %s: Content-Type %q, want %q", tt.path, w.Header().Get("Content-Type"), tt.ctype)
			}
			if tt.status == 200 && string(body) != tt.body || tt.status != 200 && !strings.Contains(string(body), tt.body) {
				t.Errorf("GET %s: body %q, want %q", tt.path, body, tt.body)
			}
		})
	}
}

func TestFindWebDir(t *testing.T) {
	root := t.TempDir()
	mk := func(rel string) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mk("declared/web/package.json")
	mk("installed/web/package.json")
	mk("installed/web/node_modules/hls.js/dist/hls.min.js")
	mk("empty/web/README")
	d := func(rel string) string { return filepath.Join(root, rel) }

	tests := []struct {
		name       string
		candidates []string
		want       string
	}{
		{"none", []string{d("nope/web"), d("empty/web")}, ""},
		{"declared only", []string{d("nope/web"), d("declared/web")}, d("declared/web")},
		{"installed wins over declared", []string{d("declared/web"), d("installed/web")}, d("installed/web")},
		{"first installed", []string{d("installed/web"), d("declared/web")}, d("installed/web")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := findWebDir(tt.candidates); got != tt.want {
				t.Errorf("findWebDir(%q) = %q, want %q", tt.candidates, got, tt.want)
			}
		})
	}

	t.Run("MEDIAD_WEB_DIR", func(t *testing.T) {
		t.Setenv("MEDIAD_WEB_DIR", d("declared/web"))
		if got := FindWebDir(); got != d("declared/web") {
			t.Errorf("FindWebDir() = %q, want $MEDIAD_WEB_DIR %q", got, d("declared/web"))
		}
	})
	t.Run("candidates", func(t *testing.T) {
		c := webDirCandidates()
		wd, _ := os.Getwd()
		if len(c) < 2 || c[0] != filepath.Join(wd, "web") {
			t.Fatalf("candidates %q: want ./web first, then beside the executable", c)
		}
		exe, _ := os.Executable()
		exe, _ = filepath.EvalSymlinks(exe)
		if c[1] != filepath.Join(filepath.Dir(exe), "web") {
			t.Errorf("second candidate %q, want web beside %s", c[1], exe)
		}
		if len(c) > 5 {
			t.Errorf("%d candidates, want ./web and at most four beside the executable", len(c))
		}
	})
}
