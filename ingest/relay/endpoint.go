package relay

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Default ports: RTMP's own, and HTTPS's for rtmps, where every CDN
// terminates TLS.
const (
	defaultPort    = "1935"
	defaultTLSPort = "443"
)

// Endpoint is a concrete URL, parsed for dialing.
type Endpoint struct {
	URL        string // as given
	TLS        bool   // rtmps
	Addr       string // host:port; default port 1935 for rtmp, 443 for rtmps
	ServerName string // host, verified against the certificate for rtmps
	App        string // RTMP app (path minus the last element)
	TCURL      string // scheme://host[:port]/app, as sent in connect
	Name       string // stream name for publish: the last path element plus "?query" if any
}

// ParseEndpoint parses a concrete rtmp:// or rtmps:// URL of the form
// scheme://host[:port]/APP/NAME[?query], where APP may span several path
// elements. Path elements are unescaped; the query is kept as written,
// since the server parses it.
func ParseEndpoint(rawURL string) (Endpoint, error) {
	ep, err := parseEndpoint(rawURL)
	if err != nil {
		return Endpoint{}, fmt.Errorf("rtmp url %q: %w", rawURL, err)
	}
	return ep, nil
}

// parseEndpoint does the work of ParseEndpoint and ParseTarget, whose
// errors differ only in their prefix. Placeholders pass it untouched: url
// accepts braces in the path and does not look into the query.
func parseEndpoint(rawURL string) (Endpoint, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the whole URL, which the caller already names.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return Endpoint{}, err
	}
	ep := Endpoint{URL: rawURL}
	port := defaultPort
	switch u.Scheme {
	case "rtmp":
	case "rtmps":
		ep.TLS = true
		port = defaultTLSPort
	default:
		return Endpoint{}, fmt.Errorf("scheme %q: want rtmp or rtmps", u.Scheme)
	}
	switch {
	case u.Opaque != "":
		return Endpoint{}, fmt.Errorf("want %s://host/app/name", u.Scheme)
	case u.User != nil:
		return Endpoint{}, errors.New("user info is not allowed")
	case u.Fragment != "" || strings.Contains(rawURL, "#"):
		return Endpoint{}, errors.New("fragment is not allowed")
	case u.Hostname() == "":
		return Endpoint{}, errors.New("no host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Endpoint{}, fmt.Errorf("port %q: want 1..65535", p)
		}
		port = p
	} else if strings.HasSuffix(u.Host, ":") {
		return Endpoint{}, errors.New("empty port")
	}

	// The path as written: url keeps RawPath only when it differs from
	// the default escaping of Path, and splitting the written form keeps
	// an escaped "/" inside its element.
	rawPath := u.RawPath
	if rawPath == "" {
		rawPath = u.EscapedPath()
	}
	elems := strings.Split(strings.TrimPrefix(rawPath, "/"), "/")
	if !strings.HasPrefix(rawPath, "/") || len(elems) < 2 {
		return Endpoint{}, fmt.Errorf("path %q: want /APP/NAME", rawPath)
	}
	for _, e := range elems {
		if e == "" {
			return Endpoint{}, fmt.Errorf("path %q: empty element", rawPath)
		}
	}
	rawApp := strings.Join(elems[:len(elems)-1], "/")
	if ep.App, err = url.PathUnescape(rawApp); err != nil {
		return Endpoint{}, fmt.Errorf("app %q: %w", rawApp, err)
	}
	if ep.Name, err = url.PathUnescape(elems[len(elems)-1]); err != nil {
		return Endpoint{}, fmt.Errorf("stream name %q: %w", elems[len(elems)-1], err)
	}
	// Servers split the name at its first "?", and some the app too: an
	// escaped "?" cannot survive unescaping.
	if strings.Contains(ep.App, "?") {
		return Endpoint{}, fmt.Errorf("app %q: %q is not allowed, even escaped", rawApp, "?")
	}
	if strings.Contains(ep.Name, "?") {
		return Endpoint{}, fmt.Errorf("stream name %q: %q is not allowed, even escaped", elems[len(elems)-1], "?")
	}
	if u.RawQuery != "" {
		ep.Name += "?" + u.RawQuery
	}
	ep.Addr = net.JoinHostPort(u.Hostname(), port)
	ep.ServerName = u.Hostname()
	ep.TCURL = u.Scheme + "://" + u.Host + "/" + rawApp
	return ep, nil
}
