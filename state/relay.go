package state

// KindRelay is a push relay's connection to a downstream server: mediad is
// the RTMP client there, publishing one stream. It appeared in version 5
// and has no form before. Only a plain-RTMP relay that has finished its
// publish exchange crosses an upgrade; a relay still connecting, or one on
// TLS (whose session keys cannot move), is closed at the point of no return
// and the new process connects afresh.
const KindRelay Kind = "relay"

// Relay is a connected relay at a safe point: the chunk layer both ways,
// the bytes framed for the downstream but not yet written, what the stream
// queued for it, and the target's counters, which continue across
// upgrades.
type Relay struct {
	// Session carries the chunk reader (what the downstream sent us) and
	// writer (our chunk size), Out and the acknowledgement window. App is
	// the downstream's app, TCURL the URL connected to.
	Session Session `msgpack:"session"`
	// App and Key name the stream of this server that is relayed.
	App string `msgpack:"app"`
	Key string `msgpack:"key"`
	// URL is the target as expanded for this stream; the new process
	// matches it against its own configuration, so that a reload that
	// removed the target ends the relay.
	URL string `msgpack:"url"`
	// Msid is the message stream id the downstream gave at createStream.
	Msid    uint32          `msgpack:"msid"`
	Queue   []QueuedMessage `msgpack:"queue"`
	WaitKey bool            `msgpack:"wait_key"`
	// Counters over the relay's life: bytes written, GOPs dropped because
	// the target was too slow, reconnections after a drop, and the error
	// of the last drop.
	BytesOut   uint64 `msgpack:"bytes_out"`
	Drops      uint64 `msgpack:"drops"`
	Reconnects uint64 `msgpack:"reconnects"`
	LastError  string `msgpack:"last_error"`
	// Connected (Unix ns) is when the current connection was established.
	Connected int64 `msgpack:"connected"`
}
