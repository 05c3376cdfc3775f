package state

// HLS is a stream's LL-HLS muxer (ingest/hls) at a safe point. Media never
// travels here: segments and parts are files in Dir, which the new process
// opens by name, and samples not yet in a part wait in a file: one that
// every stream of the upgrade shares (PendingFile), or Dir's own pending
// file.
// What crosses is the index: small, and proportional to the playlist
// window, not to the media.
type HLS struct {
	// Dir holds the stream's init, segment and pending files.
	Dir string `msgpack:"dir"`
	// Init numbers the last init file written (init<Init>.mp4), 0 before
	// the first. InitStale says the codecs changed since: the next segment
	// gets a new one.
	Init      uint32 `msgpack:"init"`
	InitStale bool   `msgpack:"init_stale"`
	// NextSeq is the next fMP4 fragment sequence number (mfhd).
	NextSeq uint32 `msgpack:"next_seq"`
	// Removed is the first MSN whose files may still be on disk: segments
	// before the window stay for a while so that a client holding an older
	// playlist still finds them.
	Removed uint64 `msgpack:"removed"`
	// Segments is the window, oldest first. The last one is open (its
	// parts so far) unless Closed says otherwise.
	Segments []HLSSegment `msgpack:"segments"`
	// Gone holds segments already out of the window whose files are kept
	// until their deadline.
	Gone []HLSGone `msgpack:"gone"`
	// Pending are the samples read but not yet in a part, in arrival
	// order; their bytes are back to back in PendingFile from
	// PendingOffset, or, with no PendingFile, in Dir/pending.
	Pending []HLSSample `msgpack:"pending"`
	// PendingFile (version 6) is the file in which one park put the
	// held-back samples of every stream, each at its own offset: one file
	// written per upgrade instead of one per stream, a cost every session
	// waited for while parked.
	PendingFile   string `msgpack:"pending_file,omitempty"`
	PendingOffset int64  `msgpack:"pending_offset,omitempty"`
	// Tracks is the decode-time state of the video (0) and audio (1)
	// tracks.
	Tracks [2]HLSTrack `msgpack:"tracks"`
	// PartStart is where the part being filled begins, in ms on the
	// muxer's time line.
	PartStart int64 `msgpack:"part_start"`
}

// HLSSegment is one media segment: file s<MSN>.m4s, its parts back to
// back.
type HLSSegment struct {
	MSN uint64 `msgpack:"msn"`
	// Start is the date-time of its first frame (Unix ns), for
	// EXT-X-PROGRAM-DATE-TIME: the first segment's arrival, each later
	// one stepped on from it by media time (ingest/hls nextStartLocked).
	Start  int64     `msgpack:"start"`
	Init   uint32    `msgpack:"init"`
	Parts  []HLSPart `msgpack:"parts"`
	Closed bool      `msgpack:"closed"`
	// Discontinuity starts a segment after a codec change.
	Discontinuity bool `msgpack:"discontinuity"`
}

// HLSPart is one partial segment: bytes [Offset, Offset+Size) of its
// segment's file.
type HLSPart struct {
	Offset      int64 `msgpack:"offset"`
	Size        int64 `msgpack:"size"`
	DurationMS  int64 `msgpack:"duration_ms"`
	Independent bool  `msgpack:"independent"`
}

// HLSGone is a segment out of the window and when its file goes (Unix ns).
// Its parts stay servable too: a playlist listed them a few seconds before
// the segment left the window, and a client may hold that playlist.
type HLSGone struct {
	MSN    uint64    `msgpack:"msn"`
	Expiry int64     `msgpack:"expiry"`
	Parts  []HLSPart `msgpack:"parts"`
}

// HLSSample is one frame waiting for a part.
type HLSSample struct {
	Track uint8  `msgpack:"track"`
	DTS   int64  `msgpack:"dts"` // ms, on the muxer's continuous time line
	CTS   int32  `msgpack:"cts"` // composition offset, ms
	Key   bool   `msgpack:"key"`
	Size  uint32 `msgpack:"size"`
}

// HLSTrack is one track's time line: RTMP's 32-bit millisecond timestamps
// unwrapped onto the muxer's 64-bit one.
type HLSTrack struct {
	// Seen is set once the track had a frame.
	Seen bool `msgpack:"seen"`
	// LastTS is the last RTMP timestamp and Epoch the wraps so far.
	LastTS uint32 `msgpack:"last_ts"`
	Epoch  int64  `msgpack:"epoch"`
	// LastDTS is the last frame's time, below which none may go.
	LastDTS int64 `msgpack:"last_dts"`
}
