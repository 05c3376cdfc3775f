package state

// Session is what every connection carries across an upgrade, whatever it
// is doing: the handshake and both directions of the chunk layer exactly as
// they stand, and what connect established.
type Session struct {
	ID   uint64 `msgpack:"id"`
	Peer string `msgpack:"peer"`
	// HandshakePhase is handshake.Phase: 0 waiting for C0C1, 1 waiting for
	// C2, 2 done. HandshakePartial holds the bytes of the current phase
	// received so far.
	HandshakePhase   uint8       `msgpack:"hs_phase"`
	HandshakePartial []byte      `msgpack:"hs_partial"`
	Reader           ChunkReader `msgpack:"reader"`
	Writer           ChunkWriter `msgpack:"writer"`
	// Out holds bytes already framed for the client but not yet written:
	// a slow player never holds an upgrade up, its backlog travels.
	Out       []byte `msgpack:"out"`
	Connected bool   `msgpack:"connected"`
	App       string `msgpack:"app"`
	TCURL     string `msgpack:"tc_url"`
	FlashVer  string `msgpack:"flash_ver"`
	NextMsid  uint32 `msgpack:"next_msid"`
	AckWindow uint32 `msgpack:"ack_window"`
	LastAck   uint64 `msgpack:"last_ack"`
	// LastRead is the wall-clock time (Unix ns) of the last read from the
	// socket in the old process: the start of the stall.
	LastRead int64 `msgpack:"last_read"`
	// Pending is a publish or play waiting for its webhook's answer
	// (version 5).
	Pending *PendingCommand `msgpack:"pending,omitempty"`
}

// Publisher is a publishing connection and the stream it feeds.
type Publisher struct {
	Session Session `msgpack:"session"`
	Msid    uint32  `msgpack:"msid"`
	Stream  Stream  `msgpack:"stream"`
}

// Stream is what a live stream knows beyond its connections.
type Stream struct {
	App      string `msgpack:"app"`
	Key      string `msgpack:"key"`
	Metadata []byte `msgpack:"metadata"`
	VideoSeq []byte `msgpack:"video_seq"`
	AudioSeq []byte `msgpack:"audio_seq"`
	// Started is the broadcast's start (Unix ns); it survives upgrades.
	Started     int64     `msgpack:"started"`
	BytesIn     uint64    `msgpack:"bytes_in"`
	VideoFrames uint64    `msgpack:"video_frames"`
	AudioFrames uint64    `msgpack:"audio_frames"`
	Keyframes   uint64    `msgpack:"keyframes"`
	Recorder    *Recorder `msgpack:"recorder"`

	// Since version 2: per-track byte counts, the encoder onMetaData names
	// and the bytes received in each of the last RateWindow seconds, for
	// the bitrate over the last 10 s.
	VideoBytes uint64 `msgpack:"video_bytes"`
	AudioBytes uint64 `msgpack:"audio_bytes"`
	Encoder    string `msgpack:"encoder"`
	// TracksSince (Unix ns) is when VideoBytes and AudioBytes started
	// counting: the broadcast's start, or the upgrade from a version that
	// did not count them.
	TracksSince int64 `msgpack:"tracks_since"`
	// RateBuckets[i] holds the bytes received during second RateSecond-i
	// (Unix seconds); at most RateWindow buckets.
	RateBuckets []uint64 `msgpack:"rate_buckets"`
	RateSecond  int64    `msgpack:"rate_second"`

	// HLS is the stream's LL-HLS muxer, nil when HLS is off (version 4).
	HLS *HLS `msgpack:"hls,omitempty"`
	// Query is the publish's query string, without "?", and PublisherAddr
	// the publisher's address, for the webhooks (version 5).
	Query         string `msgpack:"query,omitempty"`
	PublisherAddr string `msgpack:"publisher_addr,omitempty"`
}

// RateWindow is the number of one-second buckets behind a stream's
// bitrate.
const RateWindow = 10

// Recorder is an open recording. Its file travels as a descriptor beside
// the envelope; Offset is verified against the file's size on restore.
type Recorder struct {
	Dir             string   `msgpack:"dir"`
	SegmentDuration int64    `msgpack:"segment_ns"`
	Path            string   `msgpack:"path"`
	Offset          int64    `msgpack:"offset"`
	SegmentStartTS  uint32   `msgpack:"segment_start_ts"`
	Started         bool     `msgpack:"started"`
	SawVideo        bool     `msgpack:"saw_video"`
	Metadata        []byte   `msgpack:"metadata"`
	VideoSeq        []byte   `msgpack:"video_seq"`
	AudioSeq        []byte   `msgpack:"audio_seq"`
	Segments        []string `msgpack:"segments"`
	// HasFile says a descriptor for Path follows the envelope.
	HasFile bool `msgpack:"has_file"`
}

// Player is a playing connection and its place in the fan-out.
type Player struct {
	Session Session `msgpack:"session"`
	Msid    uint32  `msgpack:"msid"`
	App     string  `msgpack:"app"`
	Key     string  `msgpack:"key"`
	// Queue is what the publisher handed this player that is not framed
	// yet, in order.
	Queue   []QueuedMessage `msgpack:"queue"`
	WaitKey bool            `msgpack:"wait_key"`
	Skips   int             `msgpack:"skips"`
}

// QueuedMessage is one message waiting for a player.
type QueuedMessage struct {
	Type uint8 `msgpack:"type"`
	// Kind: 0 frame (droppable), 1 metadata or sequence header, 2 status.
	Kind    uint8  `msgpack:"kind"`
	Key     bool   `msgpack:"key"`
	TS      uint32 `msgpack:"ts"`
	CSID    uint32 `msgpack:"csid"`
	Msid0   bool   `msgpack:"msid0"`
	Payload []byte `msgpack:"payload"`
}

// PendingCommand is a publish or play that waits for its on_publish or
// on_play webhook (version 5): the new process asks again.
type PendingCommand struct {
	Play bool   `msgpack:"play"`
	Msid uint32 `msgpack:"msid"`
	// Name is the stream name as the client sent it, KEY?query.
	Name string `msgpack:"name"`
}
