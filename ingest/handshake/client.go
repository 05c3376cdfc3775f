package handshake

import (
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// clientVersion is the Flash Player version a digest C1 claims (9.0.124.2,
// the one ffmpeg and librtmp send); servers only check that it is non-zero.
const clientVersion = 0x09007c02

// ClientOptions selects the kind of handshake Client performs. The zero
// value is the simple handshake.
type ClientOptions struct {
	// Digest sends a Flash Player 9 style C1 carrying a digest, and then
	// requires the server to answer in kind: S1 must carry a valid server
	// digest and S2 must be signed with a key derived from the client's
	// digest. False sends a simple C1 and accepts any S1/S2.
	Digest bool
}

// Client performs the client side of the handshake over rw: it writes
// C0+C1, reads S0+S1+S2, and writes C2. It reads exactly ReplySize bytes,
// so the next bytes on rw are the server's chunk data. rand supplies C1's
// and C2's random bytes.
//
// Client reads the whole reply before writing C2, as ffmpeg does, so it
// also works over a synchronous pipe against a server that writes
// S0+S1+S2 in one call.
func Client(rw io.ReadWriter, rand io.Reader, opts ClientOptions) error {
	c0c1 := make([]byte, C0C1Size)
	c0c1[0] = Version
	c1 := c0c1[1:]
	// C1 time stays zero: the client's epoch starts here.
	if _, err := io.ReadFull(rand, c1[8:]); err != nil {
		return fmt.Errorf("handshake: random C1: %w", err)
	}
	var clientDigest []byte
	if opts.Digest {
		binary.BigEndian.PutUint32(c1[4:8], clientVersion)
		// Scheme 0, as ffmpeg and librtmp use for unencrypted RTMP.
		pos := digestPos(c1, scheme0Base)
		d := digestAround(c1, pos, playerKey[:playerKeyTextLen])
		copy(c1[pos:], d[:])
		clientDigest = c1[pos : pos+digestSize]
	}
	if _, err := rw.Write(c0c1); err != nil {
		return fmt.Errorf("handshake: write C0C1: %w", err)
	}

	reply := make([]byte, ReplySize)
	if _, err := io.ReadFull(rw, reply); err != nil {
		return fmt.Errorf("handshake: read S0S1S2: %w", err)
	}
	if reply[0] != Version {
		return fmt.Errorf("handshake: server answered S0 version 0x%02x, want %d", reply[0], Version)
	}
	s1 := reply[1 : 1+sigSize]
	s2 := reply[1+sigSize:]

	var c2 []byte
	if opts.Digest {
		var err error
		if c2, err = digestC2(s1, s2, clientDigest, rand); err != nil {
			return err
		}
	} else {
		// The specification's C2 is an echo of S1; servers do not check it.
		c2 = s1
	}
	if _, err := rw.Write(c2); err != nil {
		return fmt.Errorf("handshake: write C2: %w", err)
	}
	return nil
}

// errNoServerDigest is returned when a digest handshake is answered with a
// simple S1.
var errNoServerDigest = errors.New("handshake: server answered a digest C1 with a simple S1 (version 0)")

// digestC2 verifies a digest-mode S1 and S2 and builds the matching C2.
func digestC2(s1, s2, clientDigest []byte, rand io.Reader) ([]byte, error) {
	if binary.BigEndian.Uint32(s1[4:8]) == 0 {
		return nil, errNoServerDigest
	}
	serverPos, ok := findDigest(s1, serverKey[:serverKeyTextLen])
	if !ok {
		return nil, errors.New("handshake: S1 carries no valid server digest")
	}
	want := signWith(s2, clientDigest, serverKey)
	if !hmac.Equal(want[:], s2[signedLen:]) {
		return nil, errors.New("handshake: S2 digest does not match the client digest")
	}

	c2 := make([]byte, sigSize)
	if _, err := io.ReadFull(rand, c2[:signedLen]); err != nil {
		return nil, fmt.Errorf("handshake: random C2: %w", err)
	}
	sig := signWith(c2, s1[serverPos:serverPos+digestSize], playerKey)
	copy(c2[signedLen:], sig[:])
	return c2, nil
}
