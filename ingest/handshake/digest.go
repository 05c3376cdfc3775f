package handshake

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
)

const (
	// digestSize is the length of every digest the handshake carries.
	digestSize = sha256.Size

	// scheme0Base and scheme1Base are where the four offset bytes of the
	// digest block start in C1/S1. The digest lies somewhere in the 728
	// bytes after them, so that its position depends on the packet itself.
	scheme0Base = 8
	scheme1Base = 772
	digestSpan  = 728

	// signedLen is the part of C2/S2 covered by the trailing digest.
	signedLen = sigSize - digestSize

	// playerKeyTextLen and serverKeyTextLen are the readable prefixes of
	// the two keys; C1/S1 digests use only those, S2/C2 keys use the whole.
	playerKeyTextLen = 30
	serverKeyTextLen = 36
)

// keyTail is the 32-byte half shared by the Flash Player and Flash Media
// Server keys.
const keyTail = "\xf0\xee\xc2\x4a\x80\x68\xbe\xe8\x2e\x00\xd0\xd1\x02\x9e\x7e\x57" +
	"\x6e\xec\x5d\x2d\x29\x80\x6f\xab\x93\xb8\xe6\x36\xcf\xeb\x31\xae"

var (
	// playerKey signs what the client sends: C1 with its first 30 bytes,
	// C2 (through the server's digest) with all 62.
	playerKey = []byte("Genuine Adobe Flash Player 001" + keyTail)
	// serverKey signs what the server sends: S1 with its first 36 bytes,
	// S2 (through the client's digest) with all 68.
	serverKey = []byte("Genuine Adobe Flash Media Server 001" + keyTail)
)

// digestPos returns where the digest sits in a 1536-byte C1/S1 under the
// scheme whose offset bytes start at base.
func digestPos(sig []byte, base int) int {
	sum := int(sig[base]) + int(sig[base+1]) + int(sig[base+2]) + int(sig[base+3])
	return sum%digestSpan + base + 4
}

// digestAround returns the HMAC-SHA256 of sig without the digestSize bytes
// at pos, i.e. the value those bytes must hold.
func digestAround(sig []byte, pos int, key []byte) [digestSize]byte {
	h := hmac.New(sha256.New, key)
	h.Write(sig[:pos])
	h.Write(sig[pos+digestSize:])
	return sum(h)
}

// findDigest looks for a valid digest in C1/S1 under either scheme and
// returns its position. Scheme 1 is tried first only because some servers
// do; a false match on random data has probability 2^-256.
func findDigest(sig []byte, key []byte) (pos int, ok bool) {
	for _, base := range [...]int{scheme1Base, scheme0Base} {
		pos := digestPos(sig, base)
		want := digestAround(sig, pos, key)
		if hmac.Equal(want[:], sig[pos:pos+digestSize]) {
			return pos, true
		}
	}
	return 0, false
}

// signWith returns the trailing digest of a digest-mode C2/S2: the HMAC of
// its first signedLen bytes, keyed with the HMAC of the peer's C1/S1 digest
// under the full key.
func signWith(sig []byte, peerDigest []byte, fullKey []byte) [digestSize]byte {
	h := hmac.New(sha256.New, fullKey)
	h.Write(peerDigest)
	k := sum(h)
	h = hmac.New(sha256.New, k[:])
	h.Write(sig[:signedLen])
	return sum(h)
}

func sum(h hash.Hash) [digestSize]byte {
	var out [digestSize]byte
	h.Sum(out[:0])
	return out
}
