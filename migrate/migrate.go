// Package migrate converts state envelopes between schema versions: the
// code_change of mediad (DESIGN.md §5). Each step v→v+1 has an up and a
// down function per session kind, pure and total, working on the payload
// as a generic map so that old schemas live here, never in package state.
package migrate

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/mediad/mediad/state"
)

// Oldest is the oldest state version this build reads and writes.
const Oldest uint32 = 1

// fn changes one payload, decoded as a map, in place.
type fn func(m map[string]any) error

// step converts between version from and from+1. A kind missing from up or
// down is unchanged by the step but for its version.
type step struct {
	from     uint32
	up, down map[state.Kind]fn
}

// steps holds every step from Oldest to state.Version, in order.
var steps = []step{
	{from: 1, up: map[state.Kind]fn{state.KindPublisher: upPublisher1}, down: map[state.Kind]fn{state.KindPublisher: downPublisher2}},
	{from: 2}, // v2v3.go: no session changes
	{from: 3, down: map[state.Kind]fn{state.KindPublisher: downPublisher4}},
	{from: 4,
		up:   map[state.Kind]fn{state.KindProcess: upProcess4, state.KindConn: upConn4, state.KindPublisher: dropStreamHookKeys},
		down: map[state.Kind]fn{state.KindProcess: downProcess5, state.KindConn: downConn5, state.KindPublisher: dropStreamHookKeys}},
	{from: 5, up: map[state.Kind]fn{state.KindPublisher: upPublisher5}, down: map[state.Kind]fn{state.KindPublisher: downPublisher6}},
	{from: 6}, // v6v7.go: a new kind, no payload changes
	{from: 7}, // v7v8.go: three new kinds, no payload changes
}

// introduced holds the version in which each kind appeared; a kind absent
// here exists in every version. A kind has no form before its version, so
// no step could make one: an envelope of it below that version is refused
// rather than handed to an older build that would reject it later, in the
// middle of an upgrade.
var introduced = map[state.Kind]uint32{
	state.KindProcess:       3,
	state.KindFLVPlayer:     4,
	state.KindRelay:         5,
	state.KindHTTPConn:      7,
	state.KindBase:          state.BaseSince,
	state.KindPublisherTail: state.BaseSince,
	state.KindPlayerTail:    state.BaseSince,
}

// Convert takes an envelope of any known version to version to, one step
// at a time. It fails, naming both versions, when either is unknown, and
// when the kind does not exist in one of them (see introduced); otherwise
// it never fails for a well-formed envelope.
func Convert(e state.Envelope, to uint32) (state.Envelope, error) {
	if !known(e.Version) || !known(to) {
		return state.Envelope{}, fmt.Errorf("migrate %s: no migration from v%d to v%d: this build knows v%d to v%d", e.Kind, e.Version, to, Oldest, state.Version)
	}
	if since, ok := introduced[e.Kind]; ok {
		if e.Version < since {
			return state.Envelope{}, fmt.Errorf("migrate %s v%d: kind %s exists from state v%d on", e.Kind, e.Version, e.Kind, since)
		}
		if to < since {
			return state.Envelope{}, fmt.Errorf("migrate %s to v%d: kind %s exists from state v%d on", e.Kind, to, e.Kind, since)
		}
	}
	if e.Version == to {
		return e, nil
	}
	m, err := decodeMap(e.Payload)
	if err != nil {
		return state.Envelope{}, fmt.Errorf("migrate %s v%d: %w", e.Kind, e.Version, err)
	}
	for v := e.Version; v != to; {
		var f fn
		if to > v {
			f = steps[v-Oldest].up[e.Kind]
			v++
		} else {
			v--
			f = steps[v-Oldest].down[e.Kind]
		}
		if f != nil {
			if err := f(m); err != nil {
				return state.Envelope{}, fmt.Errorf("migrate %s to v%d: %w", e.Kind, v, err)
			}
		}
	}
	p, err := encodeMap(m)
	if err != nil {
		return state.Envelope{}, fmt.Errorf("migrate %s to v%d: %w", e.Kind, to, err)
	}
	return state.Envelope{Kind: e.Kind, Version: to, Payload: p}, nil
}

func known(v uint32) bool { return v >= Oldest && v <= state.Version }

func decodeMap(p []byte) (map[string]any, error) {
	if _, err := state.CheckMsgpack(p); err != nil {
		return nil, err
	}
	d := msgpack.NewDecoder(bytes.NewReader(p))
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if m == nil {
		return nil, fmt.Errorf("payload is not a map")
	}
	return m, nil
}

func encodeMap(m map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	e.SetSortMapKeys(true)
	if err := e.Encode(m); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// submap returns m[key] as a map, for a payload that nests one.
func submap(m map[string]any, key string) (map[string]any, error) {
	v, ok := m[key]
	if !ok {
		return nil, fmt.Errorf("no %q", key)
	}
	sub, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%q is %T, not a map", key, v)
	}
	return sub, nil
}
