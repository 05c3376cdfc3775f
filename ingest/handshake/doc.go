// Package handshake implements the RTMP handshake: a push-style server side
// whose whole state is plain exported data, and a blocking client side for
// the load generator and tests.
//
// # Wire format
//
// The client sends C0 (one version byte, 3 for plain RTMP) and C1 (1536
// bytes); the server answers S0, S1 and S2 in one write (3073 bytes); the
// client then sends C2 (1536 bytes) and chunk data follows.
//
// # Simple handshake
//
// The one in the RTMP 1.0 specification: S1 is time, four zero bytes and
// random data; S2 echoes C1 with the server's receive time in bytes 4..7.
// Nothing is authenticated. The server uses it when C1's version field is
// zero or C1 carries no valid digest.
//
// # Digest handshake
//
// Flash Player 9 and later, librtmp (OBS) and ffmpeg send a non-zero version
// in C1 and an HMAC-SHA256 digest of C1 at an offset derived from C1 itself
// ("scheme 0": offset bytes at 8, digest block 8..771; "scheme 1": offset
// bytes at 772, digest block 772..1535). The server answers with a digest of
// S1 at the same scheme's offset, keyed with the Flash Media Server key, and
// an S2 whose last 32 bytes sign its first 1504 with a key derived from the
// client's digest. Clients that speak it verify both: librtmp refuses the
// server otherwise, and ffmpeg does so when playing. None of this is
// security; it is what those clients demand before they stream H.264.
//
// RTMPE (C0 = 6 or 8, Diffie-Hellman and RC4) is not supported.
//
// # Parking mid-handshake
//
// [Server] consumes bytes as they arrive and never blocks, so a connection
// can be parked at any byte: its Phase and Partial are all there is to
// export, and a copy fed the remaining bytes in another process behaves as
// the original would have.
package handshake
