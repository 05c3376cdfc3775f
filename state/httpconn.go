package state

// KindHTTPConn is a viewer's keep-alive connection to the media listener
// (LL-HLS playlists and parts, pages), moved between two requests so that
// the viewer neither reconnects nor notices the upgrade. It appeared in
// version 7 and has no form before.
const KindHTTPConn Kind = "http-conn"

// HTTPConn is an HTTP/1.1 connection at a request boundary.
type HTTPConn struct {
	ID   uint64 `msgpack:"id"`
	Peer string `msgpack:"peer"`
	// Unread is what the new process reads before the socket: the head of
	// a request that was waiting for its answer when the park came (a
	// blocking playlist reload or a preload hint, written again as the
	// client sent it), and any bytes the client sent after it.
	Unread []byte `msgpack:"unread"`
	// Fresh says no request has come on it yet: the new process gives it
	// the time to send its first one, not the idle timeout.
	Fresh bool `msgpack:"fresh"`
}
