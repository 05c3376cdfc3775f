package flv

import "encoding/binary"

// Legacy FLV VIDEODATA: FrameType (high nibble) and CodecID (low nibble).
const (
	frameKey     = 1
	frameCommand = 5 // "video info/command frame": carries no picture

	codecAVC  = 7
	codecHEVC = 12 // not in the FLV spec, but the de facto legacy HEVC ID

	avcSequenceHeader = 0
	avcNALU           = 1
)

// Enhanced RTMP: IsExHeader bit, then FrameType (3 bits) and PacketType.
const (
	exHeaderBit = 0x80

	videoSequenceStart        = 0
	videoCodedFrames          = 1
	videoCodedFramesX         = 3
	videoMetadata             = 4
	videoMPEG2TSSequenceStart = 5
	videoMultitrack           = 6
	packetModEx               = 7 // same value for audio and video
)

// Legacy FLV AUDIODATA: SoundFormat (high nibble).
const (
	soundAAC      = 10
	soundExHeader = 9 // Enhanced RTMP: the low nibble is an AudioPacketType

	aacSequenceHeader = 0

	audioSequenceStart = 0
	audioMultitrack    = 5
)

// IsVideoKeyframe reports whether payload, the body of a video tag or RTMP
// video message, carries a keyframe picture: legacy FrameType 1 or Enhanced
// RTMP FrameType 1 with coded frames. Sequence headers and ends, Enhanced
// RTMP metadata and video info/command frames are not pictures and return
// false even when flagged as keyframes, so a segment or a player never starts
// on them.
func IsVideoKeyframe(payload []byte) bool {
	if len(payload) == 0 {
		return false
	}
	b := payload[0]
	if b&exHeaderBit != 0 {
		if (b>>4)&7 != frameKey {
			return false
		}
		pt, ok := exPacketType(payload, videoMultitrack)
		return ok && (pt == videoCodedFrames || pt == videoCodedFramesX)
	}
	if b>>4 != frameKey {
		return false
	}
	switch b & 0x0f {
	case codecAVC, codecHEVC:
		return len(payload) >= 2 && payload[1] == avcNALU
	}
	return true
}

// IsSequenceHeader reports whether payload, the body of an audio or video tag
// of type typ, is codec configuration that a decoder needs before any frame:
// an AVC or legacy-HEVC sequence header, an Enhanced RTMP video
// SequenceStart or MPEG2TSSequenceStart, an AAC sequence header or an
// Enhanced RTMP audio SequenceStart.
func IsSequenceHeader(typ uint8, payload []byte) bool {
	if len(payload) == 0 {
		return false
	}
	b := payload[0]
	switch typ {
	case TagVideo:
		if b&exHeaderBit != 0 {
			if (b>>4)&7 == frameCommand {
				return false
			}
			pt, ok := exPacketType(payload, videoMultitrack)
			return ok && (pt == videoSequenceStart || pt == videoMPEG2TSSequenceStart)
		}
		if b>>4 == frameCommand {
			return false
		}
		switch b & 0x0f {
		case codecAVC, codecHEVC:
			return len(payload) >= 2 && payload[1] == avcSequenceHeader
		}
	case TagAudio:
		switch b >> 4 {
		case soundAAC:
			return len(payload) >= 2 && payload[1] == aacSequenceHeader
		case soundExHeader:
			pt, ok := exPacketType(payload, audioMultitrack)
			return ok && pt == audioSequenceStart
		}
	}
	return false
}

// exPacketType resolves the PacketType of an Enhanced RTMP audio or video
// header (payload[0]'s low nibble): it skips any ModEx prefixes, then, for a
// multitrack packet (multitrack is that kind's Multitrack value), returns the
// packet type shared by its tracks. ok is false if the header is truncated.
func exPacketType(payload []byte, multitrack uint8) (pt uint8, ok bool) {
	pt = payload[0] & 0x0f
	i := 1
	// Each ModEx round consumes at least three bytes, so the loop ends.
	for pt == packetModEx {
		if i >= len(payload) {
			return 0, false
		}
		size := int(payload[i]) + 1
		i++
		if size == 256 {
			if i+2 > len(payload) {
				return 0, false
			}
			size = int(binary.BigEndian.Uint16(payload[i:])) + 1
			i += 2
		}
		i += size
		if i >= len(payload) {
			return 0, false
		}
		pt = payload[i] & 0x0f
		i++
	}
	if pt == multitrack {
		if i >= len(payload) {
			return 0, false
		}
		pt = payload[i] & 0x0f
	}
	return pt, true
}
