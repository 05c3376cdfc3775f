package relay

import (
	"fmt"
	"net/url"
	"strings"
)

// Placeholders a Target may use.
const (
	placeholderApp = "{app}"
	placeholderKey = "{key}"
)

// Target is one configured push destination, a URL template validated at
// config load.
type Target struct {
	App string // "" applies to every app
	URL string // template as configured, e.g. rtmp://host[:port]/app/{key}?token=x
}

// ParseTarget validates a template: scheme rtmp or rtmps only; a host; an
// optional port 1..65535; a path of at least "/APP/NAME" (the last element
// is the stream name, everything before it the RTMP app, which may contain
// "/"); the placeholders {app} and {key} in the path and the query only; no
// other "{...}"; no user info, no fragment. The error names what is wrong.
func ParseTarget(app, rawURL string) (Target, error) {
	if err := checkPlaceholders(rawURL); err != nil {
		return Target{}, fmt.Errorf("push url %q: %w", rawURL, err)
	}
	// A placeholder in the host fails here (url rejects braces in a host
	// name), and anywhere else it is an ordinary path or query character.
	// Values never contain "/" once escaped, so the template's path has the
	// shape of every URL it expands to.
	if _, err := parseEndpoint(rawURL); err != nil {
		return Target{}, fmt.Errorf("push url %q: %w", rawURL, err)
	}
	return Target{App: app, URL: rawURL}, nil
}

// checkPlaceholders accepts braces only as {app} or {key}, so a typo such
// as "{stream}" or "{key" fails at load instead of reaching a server.
func checkPlaceholders(s string) error {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return fmt.Errorf("unclosed %q at offset %d", "{", i)
			}
			p := s[i : i+end+1]
			if p != placeholderApp && p != placeholderKey {
				return fmt.Errorf("placeholder %q: want %s or %s", p, placeholderApp, placeholderKey)
			}
			i += end
		case '}':
			return fmt.Errorf("%q without %q at offset %d", "}", "{", i)
		}
	}
	return nil
}

// Applies reports whether the target pushes streams of app.
func (t Target) Applies(app string) bool { return t.App == "" || t.App == app }

// Expand substitutes {app} and {key}, path-escaped before the query and
// query-escaped in it, and returns the concrete URL. ParseEndpoint undoes
// the path escaping, and refuses a URL whose app or stream name would
// contain "?" once unescaped, since servers split names there.
func (t Target) Expand(app, key string) string {
	path, query, hasQuery := strings.Cut(t.URL, "?")
	path = strings.NewReplacer(placeholderApp, url.PathEscape(app), placeholderKey, url.PathEscape(key)).Replace(path)
	if !hasQuery {
		return path
	}
	query = strings.NewReplacer(placeholderApp, url.QueryEscape(app), placeholderKey, url.QueryEscape(key)).Replace(query)
	return path + "?" + query
}
