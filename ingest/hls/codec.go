package hls

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"
)

// FLV tag types, as RTMP message types.
const (
	typeAudio = 8
	typeVideo = 9
)

// ErrUnsupported marks a codec that an fMP4 HLS stream cannot carry.
var ErrUnsupported = errors.New("codec not supported by HLS")

// frame is one audio or video payload as fMP4 wants it: for video, the
// length-prefixed NAL units (or AV1 OBUs) that follow the FLV header,
// shared with the RTMP fan-out and never copied.
type frame struct {
	config bool  // codec configuration rather than a picture or sound
	key    bool  // a picture that decodes alone
	cts    int32 // composition offset, ms
	data   []byte
	fourcc string // video codec, for configurations
	skip   bool   // carries nothing for HLS (end of sequence, metadata)
}

// parseVideo splits an FLV video tag body: legacy AVC, or Enhanced RTMP
// avc1, hvc1 and av01 without multitrack.
func parseVideo(p []byte) (frame, error) {
	if len(p) < 1 {
		return frame{}, errors.New("empty video message")
	}
	b := p[0]
	if b&0x80 == 0 {
		if b&0x0f != 7 {
			return frame{}, fmt.Errorf("%w: FLV video codec id %d", ErrUnsupported, b&0x0f)
		}
		if b>>4 == 5 {
			return frame{skip: true}, nil
		}
		if len(p) < 5 {
			return frame{}, fmt.Errorf("AVC video message of %d bytes", len(p))
		}
		f := frame{key: b>>4 == 1, cts: si24(p[2:]), data: p[5:], fourcc: "avc1"}
		switch p[1] {
		case 0:
			f.config = true
		case 1:
		default:
			f.skip = true
		}
		return f, nil
	}
	// Enhanced RTMP: FrameType, PacketType, FourCC.
	frameType, pt := (b>>4)&7, b&0x0f
	if frameType == 5 {
		return frame{skip: true}, nil
	}
	if len(p) < 5 {
		return frame{}, fmt.Errorf("enhanced video message of %d bytes", len(p))
	}
	fourcc := string(p[1:5])
	switch fourcc {
	case "avc1", "hvc1", "av01":
	default:
		return frame{}, fmt.Errorf("%w: video FourCC %q", ErrUnsupported, fourcc)
	}
	f := frame{key: frameType == 1, fourcc: fourcc}
	switch pt {
	case 0: // SequenceStart
		f.config, f.data = true, p[5:]
	case 1: // CodedFrames: a composition offset first, except for AV1
		if fourcc == "av01" {
			f.data = p[5:]
			break
		}
		if len(p) < 8 {
			return frame{}, fmt.Errorf("enhanced video frame of %d bytes", len(p))
		}
		f.cts, f.data = si24(p[5:]), p[8:]
	case 3: // CodedFramesX: offset zero
		f.data = p[5:]
	case 2, 4: // SequenceEnd, Metadata
		f.skip = true
	default:
		return frame{}, fmt.Errorf("%w: enhanced video packet type %d", ErrUnsupported, pt)
	}
	return f, nil
}

// parseAudio splits an FLV audio tag body: AAC only.
func parseAudio(p []byte) (frame, error) {
	if len(p) < 2 {
		return frame{}, fmt.Errorf("audio message of %d bytes", len(p))
	}
	if p[0]>>4 != 10 {
		return frame{}, fmt.Errorf("%w: FLV sound format %d", ErrUnsupported, p[0]>>4)
	}
	return frame{config: p[1] == 0, key: true, data: p[2:]}, nil
}

func si24(b []byte) int32 {
	v := int32(b[0])<<16 | int32(b[1])<<8 | int32(b[2])
	if v&0x800000 != 0 {
		v -= 1 << 24
	}
	return v
}

// videoCodec turns a video sequence header into the fMP4 codec.
func videoCodec(fourcc string, rec []byte) (codecs.Codec, error) {
	switch fourcc {
	case "avc1":
		sps, pps, err := parseAVCC(rec)
		if err != nil {
			return nil, err
		}
		return &codecs.H264{SPS: sps, PPS: pps}, nil
	case "hvc1":
		return parseHVCC(rec)
	case "av01":
		if len(rec) < 5 {
			return nil, fmt.Errorf("av1C of %d bytes", len(rec))
		}
		return &codecs.AV1{SequenceHeader: rec[4:]}, nil
	}
	return nil, fmt.Errorf("%w: video FourCC %q", ErrUnsupported, fourcc)
}

// parseAVCC reads the first SPS and PPS of an AVCDecoderConfigurationRecord
// (ISO/IEC 14496-15 §5.3.3). The NAL units must be length-prefixed on 4
// bytes, as fMP4 samples carry them unchanged.
func parseAVCC(b []byte) (sps, pps []byte, err error) {
	if len(b) < 7 || b[0] != 1 {
		return nil, nil, fmt.Errorf("AVC decoder configuration of %d bytes", len(b))
	}
	if b[4]&3 != 3 {
		return nil, nil, fmt.Errorf("%w: %d-byte NAL unit lengths", ErrUnsupported, b[4]&3+1)
	}
	i := 5
	read := func() ([]byte, bool) {
		if i+2 > len(b) {
			return nil, false
		}
		n := int(binary.BigEndian.Uint16(b[i:]))
		i += 2
		if i+n > len(b) {
			return nil, false
		}
		i += n
		return b[i-n : i], true
	}
	nsps := int(b[i] & 0x1f)
	i++
	for k := 0; k < nsps; k++ {
		s, ok := read()
		if !ok {
			return nil, nil, errors.New("AVC decoder configuration: truncated SPS")
		}
		if sps == nil {
			sps = s
		}
	}
	if i >= len(b) {
		return nil, nil, errors.New("AVC decoder configuration: no PPS count")
	}
	npps := int(b[i])
	i++
	for k := 0; k < npps; k++ {
		s, ok := read()
		if !ok {
			return nil, nil, errors.New("AVC decoder configuration: truncated PPS")
		}
		if pps == nil {
			pps = s
		}
	}
	if sps == nil || pps == nil {
		return nil, nil, errors.New("AVC decoder configuration without SPS or PPS")
	}
	return sps, pps, nil
}

// parseHVCC reads VPS, SPS and PPS from an HEVCDecoderConfigurationRecord
// (ISO/IEC 14496-15 §8.3.3).
func parseHVCC(b []byte) (codecs.Codec, error) {
	if len(b) < 23 {
		return nil, fmt.Errorf("HEVC decoder configuration of %d bytes", len(b))
	}
	if b[21]&3 != 3 {
		return nil, fmt.Errorf("%w: %d-byte NAL unit lengths", ErrUnsupported, b[21]&3+1)
	}
	c := &codecs.H265{}
	n, i := int(b[22]), 23
	for a := 0; a < n; a++ {
		if i+3 > len(b) {
			return nil, errors.New("HEVC decoder configuration: truncated array")
		}
		typ, count := b[i]&0x3f, int(binary.BigEndian.Uint16(b[i+1:]))
		i += 3
		for k := 0; k < count; k++ {
			if i+2 > len(b) {
				return nil, errors.New("HEVC decoder configuration: truncated NAL unit")
			}
			l := int(binary.BigEndian.Uint16(b[i:]))
			i += 2
			if i+l > len(b) {
				return nil, errors.New("HEVC decoder configuration: truncated NAL unit")
			}
			nal := b[i : i+l]
			i += l
			switch {
			case typ == 32 && c.VPS == nil:
				c.VPS = nal
			case typ == 33 && c.SPS == nil:
				c.SPS = nal
			case typ == 34 && c.PPS == nil:
				c.PPS = nal
			}
		}
	}
	if c.VPS == nil || c.SPS == nil || c.PPS == nil {
		return nil, errors.New("HEVC decoder configuration without VPS, SPS or PPS")
	}
	return c, nil
}

// audioCodec turns an AAC sequence header into the fMP4 codec.
func audioCodec(asc []byte) (codecs.Codec, error) {
	var c mpeg4audio.AudioSpecificConfig
	if err := c.Unmarshal(asc); err != nil {
		return nil, fmt.Errorf("AAC audio specific config: %w", err)
	}
	return &codecs.MPEG4Audio{Config: c}, nil
}
