package handshake

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"
)

// This file re-derives the digest handshake from its description, written
// differently from the package code (explicit concatenation, keys spelled
// out here), so a shared mistake in digest.go cannot pass unnoticed.

const (
	refPlayerText = "Genuine Adobe Flash Player 001"
	refServerText = "Genuine Adobe Flash Media Server 001"
)

var refTail = []byte{
	0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
	0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
}

func refHMAC(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// refPos is the digest position for the scheme whose offset bytes are at
// base (8 for scheme 0, 772 for scheme 1).
func refPos(sig []byte, base int) int {
	return (int(sig[base])+int(sig[base+1])+int(sig[base+2])+int(sig[base+3]))%728 + base + 4
}

// refJoin is sig without the 32 bytes at pos.
func refJoin(sig []byte, pos int) []byte {
	out := make([]byte, 0, 1504)
	out = append(out, sig[:pos]...)
	return append(out, sig[pos+32:]...)
}

// refCheck reports whether sig carries a valid digest under key at the
// scheme with offset bytes at base, and returns the digest.
func refCheck(sig []byte, base int, key string) ([]byte, bool) {
	pos := refPos(sig, base)
	d := sig[pos : pos+32]
	return d, bytes.Equal(refHMAC([]byte(key), refJoin(sig, pos)), d)
}

// refSigned reports whether a C2/S2 is signed with the key derived from
// peerDigest under fullKey.
func refSigned(sig, peerDigest []byte, fullKey []byte) bool {
	k := refHMAC(fullKey, peerDigest)
	return bytes.Equal(refHMAC(k, sig[:1504]), sig[1504:])
}

func refFull(text string) []byte { return append([]byte(text), refTail...) }

// refDigestC1 builds a C0+C1 with a Flash Player digest at the scheme
// whose offset bytes are at base.
func refDigestC1(t testing.TB, base int, rnd io.Reader) []byte {
	t.Helper()
	c0c1 := make([]byte, 1537)
	c0c1[0] = 3
	c1 := c0c1[1:]
	if _, err := io.ReadFull(rnd, c1[8:]); err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(c1[4:8], 0x0a000c02)
	pos := refPos(c1, base)
	copy(c1[pos:], refHMAC([]byte(refPlayerText), refJoin(c1, pos)))
	return c0c1
}

// refSimpleC1 builds a C0+C1 with a zero version field.
func refSimpleC1(t testing.TB, rnd io.Reader) []byte {
	t.Helper()
	c0c1 := make([]byte, 1537)
	c0c1[0] = 3
	binary.BigEndian.PutUint32(c0c1[1:5], 123456)
	if _, err := io.ReadFull(rnd, c0c1[9:]); err != nil {
		t.Fatal(err)
	}
	return c0c1
}

// detRand is a deterministic random source: the same seed yields the same
// bytes however they are read.
func detRand(seed byte) io.Reader {
	return rand.NewChaCha8([32]byte{seed, 'h', 's'})
}

// checkDigestReply asserts that reply is a valid digest-mode S0S1S2 for
// c0c1, with the server digest in scheme wantBase.
func checkDigestReply(t *testing.T, c0c1, reply []byte, clientBase, wantBase int) {
	t.Helper()
	if len(reply) != 3073 || reply[0] != 3 {
		t.Fatalf("reply: len %d, S0 %d; want 3073 bytes, S0 3", len(reply), reply[0])
	}
	s1, s2 := reply[1:1537], reply[1537:]
	if v := binary.BigEndian.Uint32(s1[4:8]); v != 0x04050001 {
		t.Fatalf("S1 version = %#x, want 0x04050001", v)
	}
	if _, ok := refCheck(s1, wantBase, refServerText); !ok {
		t.Fatalf("S1 has no valid server digest at scheme base %d", wantBase)
	}
	clientDigest, ok := refCheck(c0c1[1:], clientBase, refPlayerText)
	if !ok {
		t.Fatalf("test input: C1 has no client digest at base %d", clientBase)
	}
	if !refSigned(s2, clientDigest, refFull(refServerText)) {
		t.Fatal("S2 digest does not validate against the client digest")
	}
}
