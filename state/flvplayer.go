package state

// KindFLVPlayer is an HTTP-FLV viewer (GET /APP/KEY.flv on the media
// listener): an HTTP response whose body is an FLV file that never ends.
// It appeared in version 4 and has no form before.
const KindFLVPlayer Kind = "flv-player"

// FLVPlayer is an HTTP-FLV viewer at a safe point. The response header and
// FLV file header were written when it started (or are still in Out); what
// follows is tags, so the new process only has to go on writing tags.
type FLVPlayer struct {
	ID   uint64 `msgpack:"id"`
	Peer string `msgpack:"peer"`
	App  string `msgpack:"app"`
	Key  string `msgpack:"key"`
	// Out is bytes accepted for the client and not yet written: the tail
	// of a tag cut short by the park, or the header of a viewer that has
	// not been written to yet.
	Out     []byte          `msgpack:"out"`
	Queue   []QueuedMessage `msgpack:"queue"`
	WaitKey bool            `msgpack:"wait_key"`
	Skips   int             `msgpack:"skips"`
	// Ending is set once the stream has ended for this viewer: the queue
	// is written out and the response closed.
	Ending bool `msgpack:"ending"`
}
