package handshake

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	// Version is the only C0/S0 value this package speaks: plain RTMP.
	Version = 3

	sigSize = 1536 // C1, C2, S1 and S2

	// C0C1Size is what the server waits for before it can answer.
	C0C1Size = 1 + sigSize
	// C2Size is what the server waits for after answering.
	C2Size = sigSize
	// ReplySize is the length of S0+S1+S2.
	ReplySize = 1 + 2*sigSize

	// serverVersion goes in S1 bytes 4..7 of a digest reply. Clients only
	// look at it to decide whether to verify S1 (ffmpeg: byte 4 >= 3).
	serverVersion = 0x04050001
)

// ErrEncrypted is matched (errors.Is) by the error for a C0 of 6 or 8.
var ErrEncrypted = errors.New("encrypted RTMP (RTMPE) not supported")

// VersionError reports a C0 other than 3. The caller should log it as a
// malformed handshake and close the connection.
type VersionError struct {
	Version byte
}

func (e *VersionError) Error() string {
	if e.encrypted() {
		return fmt.Sprintf("handshake: C0 version %d: %v", e.Version, ErrEncrypted)
	}
	if e.Version >= 0x20 && e.Version < 0x7f {
		// Printable bytes are usually another protocol (an HTTP "GET");
		// showing the character makes that obvious in a log line.
		return fmt.Sprintf("handshake: unsupported C0 version byte 0x%02x (%q)", e.Version, rune(e.Version))
	}
	return fmt.Sprintf("handshake: unsupported C0 version byte 0x%02x", e.Version)
}

// Is lets errors.Is(err, ErrEncrypted) single out RTMPE clients.
func (e *VersionError) Is(target error) bool {
	return target == ErrEncrypted && e.encrypted()
}

func (e *VersionError) encrypted() bool { return e.Version == 6 || e.Version == 8 }

// Phase is where a server-side handshake stands.
type Phase uint8

const (
	// PhaseC0C1 waits for C0+C1 (C0C1Size bytes). It is the zero value.
	PhaseC0C1 Phase = iota
	// PhaseC2 has produced S0+S1+S2 and waits for C2 (C2Size bytes).
	PhaseC2
	// PhaseDone has finished; what follows on the wire is chunk data.
	PhaseDone
)

func (p Phase) String() string {
	switch p {
	case PhaseC0C1:
		return "C0C1"
	case PhaseC2:
		return "C2"
	case PhaseDone:
		return "done"
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// size is how many bytes the phase reads in all.
func (p Phase) size() int {
	switch p {
	case PhaseC0C1:
		return C0C1Size
	case PhaseC2:
		return C2Size
	}
	return 0
}

// Server is the server side of one connection's handshake. Its zero value
// is ready for a new connection. It holds nothing but its two fields, so a
// copy taken between calls to Feed (or encoded and decoded in another
// process) continues exactly where the original stood.
type Server struct {
	// Phase is the step the handshake is waiting on.
	Phase Phase
	// Partial holds the bytes of the current phase received so far; never
	// more than the phase needs. It is empty when a phase's bytes arrive
	// in one Feed, and nil once the handshake is done.
	Partial []byte
}

// Done reports whether the handshake has finished.
func (s *Server) Done() bool { return s.Phase == PhaseDone }

// Feed consumes at most the bytes the current phase still needs from p and
// returns how many it consumed. When C0+C1 completes it stops there and
// returns the S0+S1+S2 reply (ReplySize bytes), which the caller must write
// before feeding the rest of p. Once the handshake is done Feed consumes
// nothing: the rest of p belongs to the chunk layer.
//
// rand supplies S1's (and a digest S2's) random bytes; now is the server's
// epoch-relative time in milliseconds, written in S1 and a simple S2.
//
// A wrong C0 is reported as soon as its byte arrives, without waiting for
// C1. On any error Feed consumes nothing and leaves s unchanged.
func (s *Server) Feed(p []byte, rand io.Reader, now uint32) (n int, reply []byte, err error) {
	size := s.Phase.size()
	if size == 0 {
		if s.Phase == PhaseDone {
			return 0, nil, nil
		}
		return 0, nil, fmt.Errorf("handshake: invalid phase %d", uint8(s.Phase))
	}
	if len(s.Partial) > size {
		// Only reachable through a corrupted restored state.
		return 0, nil, fmt.Errorf("handshake: phase %s holds %d bytes, more than its %d", s.Phase, len(s.Partial), size)
	}

	if s.Phase == PhaseC0C1 {
		var c0 byte
		switch {
		case len(s.Partial) > 0:
			c0 = s.Partial[0]
		case len(p) > 0:
			c0 = p[0]
		default:
			return 0, nil, nil
		}
		if c0 != Version {
			return 0, nil, &VersionError{Version: c0}
		}
	}

	missing := size - len(s.Partial)
	if len(p) < missing {
		if len(p) > 0 {
			if s.Partial == nil {
				// Sized for the larger phase so C2 can reuse it.
				s.Partial = make([]byte, 0, C0C1Size)
			}
			s.Partial = append(s.Partial, p...)
		}
		return len(p), nil, nil
	}

	// The phase completes. When it arrived in one piece, read it straight
	// from p instead of copying it into Partial.
	var msg []byte
	if len(s.Partial) == 0 {
		msg = p[:size]
	} else {
		msg = append(s.Partial, p[:missing]...)
	}

	if s.Phase == PhaseC2 {
		// C2 is deliberately not checked: clients disagree on what it holds
		// (echo of S1, a digest, or garbage) and none depend on the check.
		s.Phase = PhaseDone
		s.Partial = nil
		return missing, nil, nil
	}

	reply, err = serverReply(msg[1:], rand, now)
	if err != nil {
		return 0, nil, err
	}
	s.Phase = PhaseC2
	s.Partial = s.Partial[:0]
	return missing, reply, nil
}

// serverReply builds S0+S1+S2 for a complete C1.
func serverReply(c1 []byte, rand io.Reader, now uint32) ([]byte, error) {
	reply := make([]byte, ReplySize)
	reply[0] = Version
	s1 := reply[1 : 1+sigSize]
	s2 := reply[1+sigSize:]

	binary.BigEndian.PutUint32(s1[0:4], now)

	clientPos, digest := 0, false
	if binary.BigEndian.Uint32(c1[4:8]) != 0 {
		clientPos, digest = findDigest(c1, playerKey[:playerKeyTextLen])
	}

	if !digest {
		// S1 bytes 4..7 stay zero, telling the client not to look for a
		// digest.
		if _, err := io.ReadFull(rand, s1[8:]); err != nil {
			return nil, fmt.Errorf("handshake: random S1: %w", err)
		}
		copy(s2, c1)
		binary.BigEndian.PutUint32(s2[4:8], now)
		return reply, nil
	}

	binary.BigEndian.PutUint32(s1[4:8], serverVersion)
	if _, err := io.ReadFull(rand, s1[8:]); err != nil {
		return nil, fmt.Errorf("handshake: random S1: %w", err)
	}
	if _, err := io.ReadFull(rand, s2[:signedLen]); err != nil {
		return nil, fmt.Errorf("handshake: random S2: %w", err)
	}
	// Answer in the client's scheme: clients that check S1 look there first.
	base := scheme0Base
	if clientPos >= scheme1Base {
		base = scheme1Base
	}
	pos := digestPos(s1, base)
	d := digestAround(s1, pos, serverKey[:serverKeyTextLen])
	copy(s1[pos:], d[:])

	sig := signWith(s2, c1[clientPos:clientPos+digestSize], serverKey)
	copy(s2[signedLen:], sig[:])
	return reply, nil
}
