package migrate

// Version 2 adds per-stream statistics to a publisher's stream: bytes per
// track, the encoder named in onMetaData and the bytes of the last 10
// seconds (for the bitrate). Connections and players are unchanged.

// v2StreamKeys are the stream fields version 2 adds, which down drops.
var v2StreamKeys = []string{"video_bytes", "audio_bytes", "encoder", "tracks_since", "rate_buckets", "rate_second"}

// upPublisher1 derives what it can: the encoder from the stored metadata,
// and the moment per-track counting starts from the old process's last
// read (v1 kept a total only). The rate window starts empty.
func upPublisher1(m map[string]any) error {
	stream, err := submap(m, "stream")
	if err != nil {
		return err
	}
	stream["video_bytes"] = uint64(0)
	stream["audio_bytes"] = uint64(0)
	encoder := ""
	if md, ok := stream["metadata"].([]byte); ok {
		encoder = encoderOf(md)
	}
	stream["encoder"] = encoder
	var since int64
	if sess, err := submap(m, "session"); err == nil {
		since = toInt64(sess["last_read"])
	}
	if since == 0 {
		since = toInt64(stream["started"])
	}
	stream["tracks_since"] = since
	stream["rate_buckets"] = []uint64{}
	stream["rate_second"] = int64(0)
	return nil
}

// downPublisher2 drops the statistics version 1 has no place for; the
// totals both versions share are untouched.
func downPublisher2(m map[string]any) error {
	stream, err := submap(m, "stream")
	if err != nil {
		return err
	}
	for _, k := range v2StreamKeys {
		delete(stream, k)
	}
	return nil
}

// toInt64 reads an integer that msgpack may have decoded as any width.
func toInt64(v any) int64 {
	switch n := v.(type) {
	case int8:
		return int64(n)
	case int16:
		return int64(n)
	case int32:
		return int64(n)
	case int64:
		return n
	case uint8:
		return int64(n)
	case uint16:
		return int64(n)
	case uint32:
		return int64(n)
	case uint64:
		return int64(n)
	case int:
		return int64(n)
	}
	return 0
}
