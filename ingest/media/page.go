package media

// The pages a browser sees on the media listener: the list of live streams
// and a player for each, and the player code (hls.js) they load, which is
// served from an npm install on disk (scripts/web-deps.sh), never copied
// into the repository.

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed pages/*.html
var pageFiles embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"kbps":     formatKbps,
	"duration": formatDuration,
}).ParseFS(pageFiles, "pages/*.html"))

// StreamLink is one live stream as the index page lists it.
type StreamLink struct {
	App, Key    string
	Players     int
	Live        bool
	BitrateKbps float64
	DurationS   float64 // since the broadcast started
}

// IndexPage writes the HTML list of streams, each linked to its player
// page, its LL-HLS playlist and its HTTP-FLV URL. The page refreshes its
// list every few seconds.
func IndexPage(w http.ResponseWriter, streams []StreamLink) {
	render(w, "index.html", streams)
}

// PlayerPage writes the page that plays app/key's LL-HLS playlist: with
// hls.js in low-latency mode when haveHLSJS and the browser has Media
// Source Extensions, else with the browser's native HLS, else a message
// saying why it cannot (naming scripts/web-deps.sh when hls.js is not
// installed). Fallen further behind than hls.js's playback rate can make
// up, it jumps to the live sync position when that is buffered. The page
// keeps what it measures in window.mediadPlayer: latency (s), fatalErrors,
// reloads, jumps, errors, stalls, stallMs, maxStallMs.
func PlayerPage(w http.ResponseWriter, app, key string, haveHLSJS bool) {
	render(w, "player.html", struct {
		App, Key, Playlist, FLV string
		HaveHLSJS               bool
	}{
		App:       app,
		Key:       key,
		Playlist:  "/" + app + "/" + key + "/index.m3u8",
		FLV:       "/" + app + "/" + key + ".flv",
		HaveHLSJS: haveHLSJS,
	})
}

func render(w http.ResponseWriter, name string, data any) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		// The templates are fixed and their data plain: this is a bug.
		http.Error(w, "rendering "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	_, _ = w.Write(b.Bytes())
}

func formatKbps(k float64) string {
	if k >= 1000 {
		return fmt.Sprintf("%.1f Mbit/s", k/1000)
	}
	return fmt.Sprintf("%.0f kbit/s", k)
}

func formatDuration(s float64) string {
	d := time.Duration(s) * time.Second
	h, m, sec := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, sec)
	}
	return fmt.Sprintf("%d:%02d", m, sec)
}

// hlsJSDist is where npm puts hls.js's builds inside a web directory.
const hlsJSDist = "node_modules/hls.js/dist"

// assetFiles are the files under /assets/ and their content types.
var assetFiles = map[string]string{
	"hls.min.js":     "text/javascript; charset=utf-8",
	"hls.min.js.map": "application/json",
}

// Assets returns the handler for /assets/hls.min.js (and its source map)
// from dir/node_modules/hls.js/dist, and whether hls.min.js is there. The
// files are read at each request, so a reinstall is served at once; any
// other path is 404.
func Assets(dir string) (http.Handler, bool) {
	dist := filepath.Join(dir, filepath.FromSlash(hlsJSDist))
	found := isFile(filepath.Join(dist, "hls.min.js"))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, "/assets/")
		ctype, known := assetFiles[name]
		if !ok || !known {
			http.Error(w, "no such asset", http.StatusNotFound)
			return
		}
		f, err := os.Open(filepath.Join(dist, name))
		if err != nil {
			http.Error(w, "player code not installed: run scripts/web-deps.sh", http.StatusNotFound)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			http.Error(w, "no such asset", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", ctype)
		// Revalidated after ten minutes: a reinstall shows up soon, and
		// Last-Modified makes the check cheap.
		w.Header().Set("Cache-Control", "max-age=600")
		http.ServeContent(w, r, name, st.ModTime(), f)
	}), found
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// FindWebDir returns the web directory (the one scripts/web-deps.sh
// installs into): $MEDIAD_WEB_DIR when set; else the first of ./web and
// web beside the executable's directory or one of its three parents that
// has hls.js installed; else the first of them that has a package.json
// (hls.js to be installed); else "". So both `go run ./cmd/mediad` from
// the repository's root and a binary built inside the repository find it.
func FindWebDir() string {
	if d := os.Getenv("MEDIAD_WEB_DIR"); d != "" {
		return d
	}
	return findWebDir(webDirCandidates())
}

func webDirCandidates() []string {
	var dirs []string
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, filepath.Join(wd, "web"))
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		d := filepath.Dir(exe)
		for range 4 {
			dirs = append(dirs, filepath.Join(d, "web"))
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return dirs
}

func findWebDir(candidates []string) string {
	for _, d := range candidates {
		if isFile(filepath.Join(d, filepath.FromSlash(hlsJSDist), "hls.min.js")) {
			return d
		}
	}
	for _, d := range candidates {
		if isFile(filepath.Join(d, "package.json")) {
			return d
		}
	}
	return ""
}
