package ingest

import (
	"bufio"
	"crypto/subtle"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
)

// Auth decides who may publish. It is loaded from a file of lines, each
// one of:
//
//	APP/KEY             this exact stream may be published
//	APP secret=SECRET   any key of APP, when published as KEY?secret=SECRET
//
// Blank lines and lines starting with # are ignored. A nil *Auth allows
// every publish.
type Auth struct {
	pairs   map[string]bool
	secrets map[string]string
}

// LoadAuth reads an auth file.
func LoadAuth(path string) (*Auth, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	defer f.Close()
	a, err := ParseAuth(f)
	if err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	return a, nil
}

// ParseAuth parses the auth file format.
func ParseAuth(r io.Reader) (*Auth, error) {
	a := &Auth{pairs: make(map[string]bool), secrets: make(map[string]string)}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if app, rest, ok := strings.Cut(text, " "); ok {
			secret, ok := strings.CutPrefix(strings.TrimSpace(rest), "secret=")
			if !ok || secret == "" || !validName(app) {
				return nil, fmt.Errorf("line %d: want \"APP secret=SECRET\", got %q", line, text)
			}
			a.secrets[app] = secret
			continue
		}
		app, key, ok := strings.Cut(text, "/")
		if !ok || !validName(app) || !validName(key) {
			return nil, fmt.Errorf("line %d: want \"APP/KEY\", got %q", line, text)
		}
		a.pairs[app+"/"+key] = true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return a, nil
}

// Allowed reports whether app/key may be published with the given query
// parameters of the stream name.
func (a *Auth) Allowed(app, key string, query url.Values) bool {
	if a == nil {
		return true
	}
	if a.pairs[app+"/"+key] {
		return true
	}
	want, ok := a.secrets[app]
	if !ok {
		return false
	}
	got := query.Get("secret")
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
