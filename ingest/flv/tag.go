package flv

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Tag types of the FLV container (TagType, low five bits of a tag header).
const (
	TagAudio  uint8 = 8
	TagVideo  uint8 = 9
	TagScript uint8 = 18
)

const (
	// FileHeaderSize is the size of the FLV file header proper; the first
	// PreviousTagSize (always 0) follows it.
	FileHeaderSize = 9
	// TagHeaderSize is the size of a tag header: type, DataSize (24 bits),
	// Timestamp (24 bits), TimestampExtended (8 bits), StreamID (24 bits).
	TagHeaderSize = 11
	// MaxDataSize is the largest payload a tag can carry: DataSize is 24 bits.
	MaxDataSize = 1<<24 - 1

	flagAudio = 0x04
	flagVideo = 0x01
)

// ErrTagTooLarge is returned for a payload longer than MaxDataSize.
var ErrTagTooLarge = errors.New("flv: tag payload exceeds 16 MiB")

// Tag is one FLV tag: an audio, video or script payload and its timestamp in
// milliseconds.
type Tag struct {
	Type      uint8
	Timestamp uint32
	Data      []byte
}

// AppendFileHeader appends the 9-byte FLV header and PreviousTagSize0 to dst.
// The audio and video flags are advisory: demuxers such as ffmpeg create
// streams from the tags they find.
func AppendFileHeader(dst []byte, audio, video bool) []byte {
	var flags byte
	if audio {
		flags |= flagAudio
	}
	if video {
		flags |= flagVideo
	}
	return append(dst, 'F', 'L', 'V', 1, flags, 0, 0, 0, FileHeaderSize, 0, 0, 0, 0)
}

// AppendTagHeader appends an 11-byte tag header for a payload of dataSize
// bytes to dst. The timestamp's top byte goes into TimestampExtended, so the
// full 32-bit range survives. dataSize must not exceed MaxDataSize; only its
// low 24 bits are written.
func AppendTagHeader(dst []byte, typ uint8, ts uint32, dataSize int) []byte {
	return append(dst,
		typ&0x1f,
		byte(dataSize>>16), byte(dataSize>>8), byte(dataSize),
		byte(ts>>16), byte(ts>>8), byte(ts), byte(ts>>24),
		0, 0, 0)
}

// tagHeaderFields reads an 11-byte tag header: its type, its data size and
// its timestamp, whose top byte is TimestampExtended.
func tagHeaderFields(h []byte) (typ uint8, size int, ts uint32) {
	return h[0] & 0x1f, int(h[1])<<16 | int(h[2])<<8 | int(h[3]),
		uint32(h[7])<<24 | uint32(h[4])<<16 | uint32(h[5])<<8 | uint32(h[6])
}

// AppendTag appends a complete tag (header, payload and the PreviousTagSize
// that follows it) to dst.
func AppendTag(dst []byte, t Tag) ([]byte, error) {
	if len(t.Data) > MaxDataSize {
		return dst, fmt.Errorf("flv: append tag of %d bytes: %w", len(t.Data), ErrTagTooLarge)
	}
	dst = AppendTagHeader(dst, t.Type, t.Timestamp, len(t.Data))
	dst = append(dst, t.Data...)
	return binary.BigEndian.AppendUint32(dst, uint32(TagHeaderSize+len(t.Data))), nil
}
