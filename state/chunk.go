package state

// ChunkStream is the reader's memory of one RTMP chunk stream: the fields of
// the last message header seen on it, which later compressed headers (formats
// 1–3) inherit, and the message being assembled from its chunks.
type ChunkStream struct {
	CSID      uint32 `msgpack:"csid"`
	Timestamp uint32 `msgpack:"ts"`
	// Delta is the value of the last timestamp field (format 0: absolute,
	// formats 1–2: delta), extended value included; a format-3 header that
	// starts a new message adds it again.
	Delta    uint32 `msgpack:"delta"`
	Length   uint32 `msgpack:"len"`
	TypeID   uint8  `msgpack:"type"`
	StreamID uint32 `msgpack:"msid"`
	// Extended records that the last header carried a 4-byte extended
	// timestamp, so every following format-3 chunk carries one too.
	Extended bool `msgpack:"ext"`
	// Active is true while a message is being assembled; Partial holds the
	// payload bytes received so far (len(Partial) < Length).
	Active  bool   `msgpack:"active"`
	Partial []byte `msgpack:"partial"`
}

// ChunkReader is the complete state of the inbound chunk layer at a message
// or byte boundary. Restoring it into a fresh reader and feeding the rest of
// the byte stream yields exactly the messages an uninterrupted reader would.
type ChunkReader struct {
	ChunkSize      uint32        `msgpack:"chunk_size"`
	MaxMessageSize uint32        `msgpack:"max_msg"`
	Streams        []ChunkStream `msgpack:"streams"`
	// Header holds the bytes of a chunk header that arrived incomplete.
	Header []byte `msgpack:"header"`
	// BodyCSID and BodyLeft describe a chunk whose body is partly read.
	BodyCSID  uint32 `msgpack:"body_csid"`
	BodyLeft  uint32 `msgpack:"body_left"`
	BytesRead uint64 `msgpack:"bytes_read"`
}

// ChunkWriter is the state of the outbound chunk layer. The writer always
// opens a message with a format-0 header, so only the chunk size carries.
type ChunkWriter struct {
	ChunkSize uint32 `msgpack:"chunk_size"`
}
