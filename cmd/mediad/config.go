package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/mediad/mediad/ingest"
	"github.com/mediad/mediad/ingest/relay"
	"github.com/mediad/mediad/ingest/webhook"
)

// Settings come from four places, each overriding the one before: the
// defaults below, the config file (TOML, its keys the flag names), the
// environment (MEDIAD_ and the flag name in capitals, "-" as "_"), and the
// command line. A new process reads them all afresh, so an upgrade is also
// a config reload; one that cannot read them refuses to take over and the
// old process keeps serving.

// configEnv names the config file when --config does not.
const configEnv = "MEDIAD_CONFIG"

// notSettings are flags that only the command line sets.
var notSettings = []string{"config", "version"}

func newFlagSet(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("mediad", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.config, "config", "", "TOML file of settings, keyed by flag name (env "+configEnv+"); flags and MEDIAD_* variables override it")
	fs.StringVar(&o.rtmpAddr, "rtmp", ":1935", "RTMP listen address")
	fs.StringVar(&o.httpAddr, "http", "127.0.0.1:8080", "admin HTTP listen address (empty disables)")
	fs.StringVar(&o.recordDir, "record-dir", "recordings", "directory for recordings (empty disables recording)")
	fs.DurationVar(&o.segment, "segment", time.Hour, "cut recordings at a keyframe after this long (0: one file per broadcast)")
	fs.StringVar(&o.pidfile, "pidfile", "", "write the PID to this file")
	fs.StringVar(&o.authFile, "auth-file", "", "file of APP/KEY pairs or \"APP secret=S\" lines allowed to publish (empty: anyone may publish)")
	fs.UintVar(&o.maxMessage, "max-message-size", 16<<20, "largest RTMP message accepted, in bytes")
	fs.UintVar(&o.gopCache, "gop-cache-bytes", 4<<20, "keep each stream's current GOP, up to this many bytes, so that players start at once from its keyframe (0: no cache; players wait for the next keyframe)")
	fs.UintVar(&o.gopCacheTotal, "gop-cache-total-bytes", 256<<20, "bound on all streams' GOP caches together, in bytes")
	fs.DurationVar(&o.handshakeTO, "handshake-timeout", 10*time.Second, "close clients that do not finish handshake and connect in this time")
	fs.DurationVar(&o.idleTO, "idle-timeout", 30*time.Second, "close publishers that send nothing for this long")
	fs.DurationVar(&o.readCoalesce, "read-coalesce", 50*time.Millisecond, "let a publisher's media wait up to about this long in its socket, so that one wake-up reads several messages (0: read every message as it comes)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "longest graceful stop")
	fs.DurationVar(&o.upgradeTimeout, "upgrade-timeout", 30*time.Second, "a new binary must take over within this time or the upgrade rolls back")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 10*time.Second, "after an upgrade, the old process finishes its HTTP requests within this time and exits")
	fs.StringVar(&o.mediaAddr, "media", ":8888", "public media HTTP listen address for viewers: LL-HLS, HTTP-FLV and player pages (empty disables)")
	fs.BoolVar(&o.hls, "hls", true, "package every live stream as LL-HLS")
	fs.StringVar(&o.hlsDir, "hls-dir", "", "where LL-HLS files go, in a directory per process (default: $RUNTIME_DIRECTORY, else the system temp directory)")
	fs.DurationVar(&o.hlsPart, "hls-part", 200*time.Millisecond, "LL-HLS part target duration")
	fs.DurationVar(&o.hlsSegment, "hls-segment", time.Second, "LL-HLS segments are cut at the first keyframe after this long")
	fs.UintVar(&o.hlsWindow, "hls-window", 7, "complete segments an LL-HLS playlist lists (at least 7)")
	fs.UintVar(&o.mediaMaxConns, "media-max-conns-per-client", 64, "connections one client address may hold on the media listener (0: no limit)")
	fs.UintVar(&o.mediaMaxBlock, "media-max-blocking", 10000, "blocking LL-HLS requests that may wait at once")
	fs.StringVar(&o.webDir, "web-dir", "", "directory holding the installed web player code (web/, see scripts/web-deps.sh; default: found next to the working directory or the binary)")
	fs.Var(&o.push, "push", "push every live stream to this RTMP or RTMPS URL as well, {app} and {key} substituted (repeatable; per app: [[push]] tables in the config file)")
	o.hookURLs = make(map[string]*string)
	for _, ev := range hookEvents {
		o.hookURLs[ev.name] = fs.String(ev.name, "", ev.usage)
	}
	fs.DurationVar(&o.hookTimeout, "webhook-timeout", 5*time.Second, "on-publish and on-play answers later than this refuse (or allow, with --webhook-fail-open); also the timeout of each notification attempt")
	fs.BoolVar(&o.hookFailOpen, "webhook-fail-open", false, "allow a publish or play when the on-publish/on-play webhook cannot be reached or does not answer in time (an explicit non-2xx answer still refuses)")
	fs.StringVar(&o.hookSecret, "webhook-secret", "", "sign every webhook body with HMAC-SHA256 and this secret (header X-Mediad-Signature: sha256=HEX)")
	fs.DurationVar(&o.hookRetryFor, "webhook-retry-for", time.Hour, "keep retrying an undelivered notification for this long")
	fs.StringVar(&o.logFormat, "log-format", "auto", "json, console, or auto (console on a terminal)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	return fs
}

// hookEvents are the webhook settings, one URL per event.
var hookEvents = []struct{ name, event, usage string }{
	{"on-publish", "on_publish", "POST here before a publish starts: 2xx allows it, anything else refuses it (empty: no call)"},
	{"on-publish-done", "on_publish_done", "POST here when a publish ends (delivered at least once, retried)"},
	{"on-play", "on_play", "POST here before an RTMP play starts: 2xx allows it, anything else refuses it (empty: no call)"},
	{"on-play-done", "on_play_done", "POST here when an RTMP play ends (delivered at least once, retried)"},
	{"on-record-done", "on_record_done", "POST here when a recording file is complete: its path, start and duration (delivered at least once, retried)"},
	{"on-upgrade", "on_upgrade", "POST here the verdict of every upgrade (delivered at least once, retried)"},
}

// settingNames lists the settings a config file or the environment may
// set, sorted.
func settingNames() []string {
	var o options
	var names []string
	newFlagSet(&o, io.Discard).VisitAll(func(f *flag.Flag) {
		if !slices.Contains(notSettings, f.Name) {
			names = append(names, f.Name)
		}
	})
	return names
}

func envName(setting string) string {
	return "MEDIAD_" + strings.ToUpper(strings.ReplaceAll(setting, "-", "_"))
}

// loadOptions resolves every setting and validates the result.
func loadOptions(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (options, error) {
	o, _, err := resolve(args, lookupEnv, stderr)
	return o, err
}

// resolve is loadOptions that also returns the flag set holding the
// result, for printing it.
func resolve(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) (options, *flag.FlagSet, error) {
	// A first pass finds the config file and rejects bad flags before any
	// file is read.
	var first options
	if err := newFlagSet(&first, stderr).Parse(args); err != nil {
		return first, nil, err
	}
	o := new(options)
	fs := newFlagSet(o, stderr)
	path := first.config
	if path == "" {
		path, _ = lookupEnv(configEnv)
	}
	if path != "" {
		if err := applyConfigFile(fs, path); err != nil {
			return *o, fs, err
		}
	}
	for _, name := range settingNames() {
		if v, ok := lookupEnv(envName(name)); ok {
			if err := setSetting(fs, name, v); err != nil {
				return *o, fs, fmt.Errorf("environment %s=%q: %w", envName(name), v, err)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return *o, fs, err
	}
	o.config = path
	if fs.NArg() > 0 {
		return *o, fs, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := o.validate(); err != nil {
		if path != "" {
			return *o, fs, fmt.Errorf("settings (config %s): %w", path, err)
		}
		return *o, fs, err
	}
	return *o, fs, nil
}

// applyConfigFile sets on fs every setting the TOML file at path holds.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var m map[string]any
	if _, err := toml.Decode(string(b), &m); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if v, ok := m["push"]; ok {
		delete(m, "push")
		if err := applyPushConfig(fs, path, string(b), v); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f := fs.Lookup(k)
		if f == nil || slices.Contains(notSettings, k) {
			return fmt.Errorf("config %s: unknown setting %q (known: %s)", path, k, strings.Join(settingNames(), ", "))
		}
		s, err := settingString(f, m[k])
		if err == nil {
			err = setSetting(fs, k, s)
		}
		if err != nil {
			return fmt.Errorf("config %s: %s: %w", path, k, err)
		}
	}
	return nil
}

// setSetting sets one flag, with the reason when the text is not a value
// of its type (the flag package says only "parse error").
func setSetting(fs *flag.FlagSet, name, value string) error {
	f := fs.Lookup(name)
	if g, ok := f.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case time.Duration:
			if _, err := time.ParseDuration(value); err != nil {
				return fmt.Errorf("%w (want a duration such as \"30s\" or \"1h\")", err)
			}
		case uint:
			if _, err := strconv.ParseUint(value, 10, strconv.IntSize); err != nil {
				return fmt.Errorf("%q: want a non-negative integer", value)
			}
		}
	}
	return fs.Set(name, value)
}

// settingString turns a TOML value into a flag's text, refusing a value of
// the wrong type rather than guessing: `segment = 10` could mean seconds
// or nanoseconds.
func settingString(f *flag.Flag, v any) (string, error) {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return "", fmt.Errorf("flag %s has no type", f.Name)
	}
	switch want := g.Get().(type) {
	case string:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return "", fmt.Errorf("want a string, got %v (%T)", v, v)
	case time.Duration:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return "", fmt.Errorf("want a duration in quotes such as \"30s\", got %v", v)
	case bool:
		if b, ok := v.(bool); ok {
			return strconv.FormatBool(b), nil
		}
		return "", fmt.Errorf("want true or false, got %v", v)
	case uint, int, int64, uint64:
		if n, ok := v.(int64); ok {
			return strconv.FormatInt(n, 10), nil
		}
		return "", fmt.Errorf("want an integer, got %v", v)
	default:
		return "", fmt.Errorf("setting of type %T", want)
	}
}

// validate checks what can be checked without side effects, so that
// `mediad check-config` and a starting process refuse the same settings.
func (o options) validate() error {
	var errs []error
	if o.segment < 0 {
		errs = append(errs, fmt.Errorf("segment must not be negative, got %s", o.segment))
	}
	if o.maxMessage == 0 || o.maxMessage > 1<<30 {
		errs = append(errs, fmt.Errorf("max-message-size must be between 1 and 1 GiB, got %d", o.maxMessage))
	}
	if o.gopCache > 1<<30 {
		errs = append(errs, fmt.Errorf("gop-cache-bytes must be at most 1 GiB, got %d", o.gopCache))
	}
	if o.gopCache > 0 && o.gopCacheTotal < o.gopCache {
		errs = append(errs, fmt.Errorf("gop-cache-total-bytes (%d) must be at least gop-cache-bytes (%d)", o.gopCacheTotal, o.gopCache))
	}
	if o.readCoalesce < 0 || o.readCoalesce > time.Second {
		errs = append(errs, fmt.Errorf("read-coalesce must be between 0 and 1s, got %s", o.readCoalesce))
	}
	for name, d := range map[string]time.Duration{
		"handshake-timeout": o.handshakeTO, "idle-timeout": o.idleTO, "shutdown-timeout": o.shutdownTimeout,
		"upgrade-timeout": o.upgradeTimeout, "drain-timeout": o.drainTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", name, d))
		}
	}
	if _, err := newLogger(o.logFormat, o.logLevel, io.Discard); err != nil {
		errs = append(errs, err)
	}
	if err := checkListenAddr(o.rtmpAddr); err != nil {
		errs = append(errs, fmt.Errorf("rtmp: %w", err))
	}
	if o.httpAddr != "" {
		if err := checkListenAddr(o.httpAddr); err != nil {
			errs = append(errs, fmt.Errorf("http: %w", err))
		}
	}
	if o.mediaAddr != "" {
		if err := checkListenAddr(o.mediaAddr); err != nil {
			errs = append(errs, fmt.Errorf("media: %w", err))
		}
	}
	if o.hlsPart < 100*time.Millisecond || o.hlsPart > 2*time.Second {
		errs = append(errs, fmt.Errorf("hls-part must be between 100ms and 2s, got %s", o.hlsPart))
	}
	if o.hlsSegment < o.hlsPart || o.hlsSegment > 30*time.Second {
		errs = append(errs, fmt.Errorf("hls-segment must be between hls-part and 30s, got %s", o.hlsSegment))
	}
	if o.hlsWindow < 7 || o.hlsWindow > 1000 {
		errs = append(errs, fmt.Errorf("hls-window must be between 7 and 1000, got %d", o.hlsWindow))
	}
	if o.authFile != "" {
		if _, err := ingest.LoadAuth(o.authFile); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := o.push.targets(); err != nil {
		errs = append(errs, err)
	}
	for _, ev := range hookEvents {
		if u := *o.hookURLs[ev.name]; u != "" {
			if err := webhook.ValidateURL(u); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ev.name, err))
			}
		}
	}
	if o.hookTimeout <= 0 {
		errs = append(errs, fmt.Errorf("webhook-timeout must be positive, got %s", o.hookTimeout))
	}
	if o.hookRetryFor <= 0 {
		errs = append(errs, fmt.Errorf("webhook-retry-for must be positive, got %s", o.hookRetryFor))
	}
	if len(errs) == 0 {
		return nil
	}
	// One line: it travels in an upgrade's verdict and a log field.
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	slices.Sort(msgs)
	return errors.New(strings.Join(msgs, "; "))
}

func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q: want 0 to 65535", port)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("host %q: want an IP address", host)
	}
	return nil
}

// runCheckConfig is `mediad check-config [flags]`: it resolves the
// settings exactly as a starting mediad would and prints them, or the
// reason they would be refused.
func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	o, fs, err := resolve(args, os.LookupEnv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "mediad check-config:", err)
		return 1
	}
	src := "defaults, environment and flags"
	if o.config != "" {
		src = o.config + ", environment and flags"
	}
	fmt.Fprintf(stdout, "# valid; effective settings from %s\n", src)
	for _, name := range settingNames() {
		if name == "push" {
			continue
		}
		fmt.Fprintf(stdout, "%s = %s\n", name, tomlValue(fs.Lookup(name)))
	}
	for _, p := range o.push.specs {
		fmt.Fprintf(stdout, "\n[[push]]\n")
		if p.app != "" {
			fmt.Fprintf(stdout, "app = %s\n", strconv.Quote(p.app))
		}
		fmt.Fprintf(stdout, "url = %s\n", strconv.Quote(p.url))
	}
	return 0
}

func tomlValue(f *flag.Flag) string {
	switch f.Value.(flag.Getter).Get().(type) {
	case uint, int, int64, uint64, bool:
		return f.Value.String()
	}
	return strconv.Quote(f.Value.String())
}

// pushSpec is one relay target as configured; line is its line in the
// config file (0 for a flag or the environment), for the error.
type pushSpec struct {
	app, url string
	source   string
}

// pushList is the repeatable --push flag, which the config file's [[push]]
// tables extend.
type pushList struct{ specs []pushSpec }

func (p *pushList) String() string {
	if p == nil {
		return ""
	}
	urls := make([]string, len(p.specs))
	for i, s := range p.specs {
		urls[i] = s.url
	}
	return strings.Join(urls, " ")
}

// Set adds a target for every app. The environment's MEDIAD_PUSH may hold
// several, separated by spaces.
func (p *pushList) Set(v string) error {
	for _, u := range strings.Fields(v) {
		p.specs = append(p.specs, pushSpec{url: u})
	}
	return nil
}

func (p *pushList) Get() any { return p.specs }

// targets parses every target; the error names the first bad one and
// where it was set.
func (p *pushList) targets() ([]relay.Target, error) {
	var out []relay.Target
	for _, s := range p.specs {
		if s.app != "" && !ingest.ValidName(s.app) {
			return nil, fmt.Errorf("%spush app %q: not a valid app name", s.source, s.app)
		}
		t, err := relay.ParseTarget(s.app, s.url)
		if err != nil {
			return nil, fmt.Errorf("%s%w", s.source, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// applyPushConfig reads the config file's push targets: [[push]] tables
// with url and, optionally, app; or a list of URLs for every app.
func applyPushConfig(fs *flag.FlagSet, path, text string, v any) error {
	list := fs.Lookup("push").Value.(*pushList)
	where := func(u string) string {
		// The line that holds the URL, so that an error points at it.
		for i, line := range strings.Split(text, "\n") {
			if strings.Contains(line, u) {
				return fmt.Sprintf("config %s line %d: ", path, i+1)
			}
		}
		return fmt.Sprintf("config %s: ", path)
	}
	var items []any
	switch x := v.(type) {
	case []map[string]any:
		for _, t := range x {
			items = append(items, t)
		}
	case []any:
		items = x
	case string:
		items = []any{x}
	default:
		return fmt.Errorf("config %s: push: want [[push]] tables with url and app, or a list of URLs; got %T", path, v)
	}
	for _, it := range items {
		switch t := it.(type) {
		case string:
			list.specs = append(list.specs, pushSpec{url: t, source: where(t)})
		case map[string]any:
			u, ok := t["url"].(string)
			if !ok {
				return fmt.Errorf("config %s: [[push]] table without a url string: %v", path, t)
			}
			app, _ := t["app"].(string)
			if a, ok := t["app"]; ok && app == "" {
				return fmt.Errorf("config %s: [[push]] app is %v, want a non-empty string", path, a)
			}
			for k := range t {
				if k != "url" && k != "app" {
					return fmt.Errorf("%s[[push]]: unknown key %q (known: app, url)", where(u), k)
				}
			}
			list.specs = append(list.specs, pushSpec{app: app, url: u, source: where(u)})
		default:
			return fmt.Errorf("config %s: push: want [[push]] tables with url and app, or a list of URLs; got an item of type %T", path, it)
		}
	}
	return nil
}
