// Package relay is the outbound side of push relays: an RTMP client that
// connects to a downstream server and publishes one stream there.
//
// A Target is a configured URL template such as
//
//	rtmps://live.example.com/app/{key}?token=x
//
// validated once at config load (ParseTarget) and expanded per stream
// (Target.Expand) into a concrete URL, which ParseEndpoint splits into what
// the connection needs: the address to dial, the RTMP app and tcUrl for
// connect, and the stream name (last path element plus query) for publish.
//
// Dial performs the whole exchange an encoder does before its first frame,
// in the order ffmpeg and OBS use:
//
//	TCP, and TLS for rtmps (verifying the host name)
//	simple handshake
//	Set Chunk Size, connect                 → _result
//	releaseStream, FCPublish, createStream  → _result with the message stream id
//	publish NAME "live"                     → onStatus NetStream.Publish.Start
//
// Along the way it answers what servers send unasked: it acknowledges
// received bytes once the announced window is reached, answers pings, and
// ignores Set Peer Bandwidth, StreamBegin, onBWDone, _checkbw, onFCPublish
// and the results of releaseStream and FCPublish, which servers answer
// inconsistently (some with _error).
//
// The returned Conn is plain data around the socket: the chunk reader with
// everything read so far (including half a message that arrived after the
// status), the chunk writer at the announced size, the message stream id
// and the acknowledgement window. The caller takes over from there: it
// writes @setDataFrame (SetDataFrame), sequence headers and media on
// StreamID, keeps reading to answer pings and acknowledge, and can export
// that state across an upgrade as it does for inbound sessions.
//
// Errors from Dial name the step that failed and the server by its tcUrl
// only: stream names and queries often carry secrets (a stream key, a
// token) and end up in logs.
//
// Not supported: the digest handshake (Dial sends the simple one, which
// nginx-rtmp, SRS and mediad accept; handshake.Client's digest mode cannot
// fall back when a server answers simply), RTMPE, and following a connect
// rejected with a redirect.
package relay
