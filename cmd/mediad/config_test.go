package main

import (
	"bytes"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mediad.toml")
	installBytes(t, []byte(text), p, 0o644)
	return p
}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// TestConfigPrecedence: defaults, then the file, then the environment, then
// flags, each overriding the one before.
func TestConfigPrecedence(t *testing.T) {
	file := writeConfig(t, `# a comment
rtmp = "127.0.0.1:1940"
segment = "10m"
idle-timeout = "45s"
max-message-size = 1048576
log-level = "warn"
`)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want func(o options) bool
	}{
		{"defaults", nil, nil, func(o options) bool {
			return o.rtmpAddr == ":1935" && o.segment == time.Hour && o.config == "" && o.shutdownTimeout == 30*time.Second
		}},
		{"file", []string{"--config", file}, nil, func(o options) bool {
			return o.rtmpAddr == "127.0.0.1:1940" && o.segment == 10*time.Minute && o.idleTO == 45*time.Second &&
				o.maxMessage == 1<<20 && o.logLevel == "warn" && o.httpAddr == "127.0.0.1:8080" && o.config == file
		}},
		{"file from the environment", nil, map[string]string{"MEDIAD_CONFIG": file}, func(o options) bool {
			return o.segment == 10*time.Minute && o.config == file
		}},
		{"environment over file", []string{"--config", file}, map[string]string{"MEDIAD_SEGMENT": "2m", "MEDIAD_RECORD_DIR": "/srv/rec"}, func(o options) bool {
			return o.segment == 2*time.Minute && o.recordDir == "/srv/rec" && o.idleTO == 45*time.Second
		}},
		{"flag over environment and file", []string{"--config", file, "--segment", "30s"}, map[string]string{"MEDIAD_SEGMENT": "2m"}, func(o options) bool {
			return o.segment == 30*time.Second && o.rtmpAddr == "127.0.0.1:1940"
		}},
		{"flag --config over environment", []string{"--config", file}, map[string]string{"MEDIAD_CONFIG": "/nonexistent"}, func(o options) bool {
			return o.config == file
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := loadOptions(tc.args, envOf(tc.env), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(o) {
				t.Errorf("resolved %+v", o)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		env        map[string]string
		want       []string // substrings of the error
	}{
		{"syntax", "segment = \"1h\"\nidle-timeout = \"30s\n", nil, []string{"toml", "line 2"}},
		{"unknown key", "segmnet = \"1h\"\n", nil, []string{`unknown setting "segmnet"`, "segment"}},
		{"section", "[rtmp]\naddr = \":1935\"\n", nil, []string{"rtmp:", "want a string"}},
		{"number for a duration", "segment = 10\n", nil, []string{"segment", `"30s"`}},
		{"bad duration", "segment = \"10 minutes\"\n", nil, []string{"segment", "10 minutes"}},
		{"string for a number", "max-message-size = \"big\"\n", nil, []string{"max-message-size", "integer"}},
		{"only on the command line", "version = true\n", nil, []string{`unknown setting "version"`}},
		{"negative segment", "segment = \"-1s\"\n", nil, []string{"segment must not be negative"}},
		{"two bad values", "log-level = \"loud\"\nshutdown-timeout = \"0s\"\n", nil, []string{"log level", "shutdown-timeout must be positive"}},
		{"bad listen address", "rtmp = \"1935\"\n", nil, []string{"rtmp:", "missing port"}},
		{"missing auth file", "auth-file = \"/nonexistent/auth\"\n", nil, []string{"/nonexistent/auth"}},
		{"bad environment", "", map[string]string{"MEDIAD_IDLE_TIMEOUT": "soon"}, []string{"MEDIAD_IDLE_TIMEOUT", "soon"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeConfig(t, tc.text)
			_, err := loadOptions([]string{"--config", file}, envOf(tc.env), &bytes.Buffer{})
			if err == nil {
				t.Fatalf("config %q accepted", tc.text)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
	if _, err := loadOptions([]string{"--config", "/nonexistent/mediad.toml"}, envOf(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing config file: %v", err)
	}
}

// TestCheckConfig: what check-config prints is itself a config file that
// resolves to the same settings.
func TestCheckConfig(t *testing.T) {
	file := writeConfig(t, "segment = \"90s\"\nhttp = \"\"\nrecord-dir = \"/var/lib/mediad\"\n")
	var out, errOut bytes.Buffer
	if code := runCheckConfig([]string{"--config", file, "--idle-timeout", "1m"}, &out, &errOut); code != 0 {
		t.Fatalf("check-config exit %d: %s", code, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "# valid") {
		t.Errorf("check-config printed %q", out.String())
	}
	want, err := loadOptions([]string{"--config", file, "--idle-timeout", "1m"}, envOf(nil), &errOut)
	if err != nil {
		t.Fatal(err)
	}
	again := writeConfig(t, out.String())
	got, err := loadOptions([]string{"--config", again}, envOf(nil), &errOut)
	if err != nil {
		t.Fatalf("check-config output does not load: %v\n%s", err, out.String())
	}
	got.config, want.config = "", ""
	// Where a push target was set differs between the two files; what it
	// is must not.
	for _, o := range []*options{&got, &want} {
		for i := range o.push.specs {
			o.push.specs[i].source = ""
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("check-config output resolves to %+v, want %+v", got, want)
	}
	out.Reset()
	bad := writeConfig(t, "segment = \n")
	if code := runCheckConfig([]string{"--config", bad}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), bad) {
		t.Errorf("check-config of a broken file: exit %d, stderr %q", code, errOut.String())
	}
}

// TestListensOn: when an inherited listener already serves the configured
// address, an upgrade keeps it; otherwise it rebinds.
func TestListensOn(t *testing.T) {
	tcp := func(ip string, port int) *net.TCPAddr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	for _, tc := range []struct {
		have *net.TCPAddr
		want string
		same bool
	}{
		{tcp("127.0.0.1", 1935), "127.0.0.1:1935", true},
		{tcp("127.0.0.1", 40001), "127.0.0.1:0", true}, // ephemeral: whatever it got
		{tcp("::", 1935), ":1935", true},
		{tcp("0.0.0.0", 1935), "0.0.0.0:1935", true},
		{tcp("::", 1935), "0.0.0.0:1935", true},
		{tcp("127.0.0.1", 1935), "localhost:1935", true},
		{tcp("127.0.0.1", 1935), "127.0.0.1:1936", false},
		{tcp("127.0.0.1", 1935), ":1935", false},
		{tcp("::", 1935), "127.0.0.1:1935", false},
		{tcp("127.0.0.1", 1935), "10.0.0.1:1935", false},
		{tcp("127.0.0.1", 1935), "nonsense", false},
	} {
		if got := listensOn(tc.have, tc.want); got != tc.same {
			t.Errorf("listensOn(%s, %q) = %v, want %v", tc.have, tc.want, got, tc.same)
		}
	}
}
