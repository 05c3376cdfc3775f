package state

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Kind names what an envelope carries.
type Kind string

// The kinds of session that cross an upgrade. KindProcess, the one kind
// that is not a session, is declared with its payload in process.go.
const (
	// KindConn is a connection still in handshake or connect phase, or
	// connected without a stream.
	KindConn Kind = "conn"
	// KindPublisher is a connection publishing a stream; it carries the
	// stream's state and its recording.
	KindPublisher Kind = "publisher"
	// KindPlayer is a connection playing a stream, with its place in the
	// fan-out.
	KindPlayer Kind = "player"
)

// Envelope is the unit that crosses an upgrade: a kind, the schema version
// of its payload and the msgpack payload itself. The version travels with
// the data so that package migrate can take it up or down.
type Envelope struct {
	Kind    Kind   `msgpack:"kind"`
	Version uint32 `msgpack:"v"`
	Payload []byte `msgpack:"payload"`
}

// ErrVersion reports an envelope of a version this build cannot decode
// directly; package migrate converts it first.
var ErrVersion = errors.New("state: unsupported envelope version")

// Encode wraps v, the current-version value of kind, in an envelope.
//
// Sessions, publishers, players, relays, HTTP-FLV viewers, HTTP
// connections and streams, given as values or pointers, are written by
// codec.go's encoders into one allocation, the payload; anything else goes
// through reflection. Encode is generic so that a value passed to it need
// not be boxed into an interface, which would cost an allocation of its
// own.
func Encode[T any](kind Kind, v T) (Envelope, error) {
	p, ok := encodeFast(&v)
	if !ok {
		p, ok = encodeFast(v)
	}
	if !ok {
		var err error
		if p, err = marshalReflect(v); err != nil {
			return Envelope{}, fmt.Errorf("state: encode %s: %w", kind, err)
		}
	}
	return Envelope{Kind: kind, Version: Version, Payload: p}, nil
}

// marshalReflect keeps the boxing of v for reflection to the values that
// need it: were Encode to pass v to msgpack itself, v would escape on
// every call.
func marshalReflect[T any](v T) ([]byte, error) { return msgpack.Marshal(v) }

// Decode unpacks a current-version envelope into v, as msgpack.Unmarshal
// would: into the value already there, if any. On error, v may be partly
// written.
//
// Sessions, publishers, players, relays, HTTP-FLV viewers, HTTP
// connections and streams, given as pointers, are read by decode.go's
// decoders, with the result reflection would give; anything else goes
// through reflection, after CheckMsgpack. decode.go checks every length
// as it reads, as CheckMsgpack does, and refuses whatever CheckMsgpack
// refuses (the fuzz test holds it to that): a walk of the payload that
// costs a quarter of a publisher's decoding is not made twice.
func Decode(e Envelope, v any) error {
	if e.Version != Version {
		return fmt.Errorf("%w: %s v%d, this build reads v%d", ErrVersion, e.Kind, e.Version, Version)
	}
	ok, err := decodeFast(e.Payload, v)
	if !ok {
		if _, err = CheckMsgpack(e.Payload); err == nil {
			err = msgpack.Unmarshal(e.Payload, v)
		}
	}
	if err != nil {
		return fmt.Errorf("state: decode %s v%d: %w", e.Kind, e.Version, err)
	}
	return nil
}

// MarshalEnvelope and UnmarshalEnvelope give an envelope its wire form.
// MarshalEnvelope writes the bytes msgpack.Marshal(e) would, in one
// allocation, and never fails.
func MarshalEnvelope(e Envelope) ([]byte, error) {
	w := enc{dry: true}
	w.envelope(&e)
	w.b, w.dry = make([]byte, 0, w.n), false
	w.envelope(&e)
	return w.b, nil
}

// UnmarshalEnvelope decodes the wire form of an envelope from untrusted
// bytes.
func UnmarshalEnvelope(b []byte) (Envelope, error) {
	if n, err := CheckMsgpack(b); err != nil {
		return Envelope{}, fmt.Errorf("state: envelope: %w", err)
	} else if n != len(b) {
		return Envelope{}, fmt.Errorf("state: envelope: %d bytes after the value", len(b)-n)
	}
	var e Envelope
	if err := msgpack.Unmarshal(b, &e); err != nil {
		return Envelope{}, fmt.Errorf("state: envelope: %w", err)
	}
	if e.Kind == "" {
		return Envelope{}, errors.New("state: envelope without a kind")
	}
	return e, nil
}
