package flv

import "testing"

func TestClassifyPayload(t *testing.T) {
	for _, tc := range []struct {
		name     string
		typ      uint8
		hex      string
		keyframe bool
		seq      bool
	}{
		{"empty video", TagVideo, "", false, false},
		{"empty audio", TagAudio, "", false, false},
		{"script", TagScript, "17 00", false, false},

		// Legacy VIDEODATA: FrameType<<4 | CodecID.
		{"AVC keyframe", TagVideo, "17 01 000000 00000001 65", true, false},
		{"AVC sequence header", TagVideo, "17 00 000000 01640028", false, true},
		{"AVC inter frame", TagVideo, "27 01 000000 00000001 41", false, false},
		{"AVC end of sequence", TagVideo, "17 02 000000", false, false},
		{"AVC keyframe without packet type", TagVideo, "17", false, false},
		{"AVC info/command frame", TagVideo, "57 00", false, false},
		{"AVC generated keyframe", TagVideo, "47 01 000000", false, false},
		{"legacy HEVC keyframe", TagVideo, "1c 01 000000", true, false},
		{"legacy HEVC sequence header", TagVideo, "1c 00 000000 01", false, true},
		{"legacy HEVC inter frame", TagVideo, "2c 01 000000", false, false},
		{"VP6 keyframe", TagVideo, "14 00", true, false},
		{"Sorenson H.263 keyframe", TagVideo, "12", true, false},
		{"Sorenson H.263 disposable", TagVideo, "32", false, false},

		// Enhanced RTMP: 0x80 | FrameType<<4 | PacketType, then FourCC.
		{"ex coded keyframe", TagVideo, "91 68766331 000000 00", true, false},
		{"ex coded keyframe X", TagVideo, "93 61763031 00", true, false},
		{"ex coded inter frame", TagVideo, "a1 68766331 000000", false, false},
		{"ex inter frame X", TagVideo, "a3 61763031", false, false},
		{"ex sequence start", TagVideo, "90 61763031 81", false, true},
		{"ex MPEG-2 TS sequence start", TagVideo, "95 61763031 80", false, true},
		{"ex sequence end", TagVideo, "92 61763031", false, false},
		{"ex metadata flagged key", TagVideo, "94 61763031 02", false, false},
		{"ex command frame", TagVideo, "d0 00", false, false},
		{"ex command frame coded", TagVideo, "d1 00", false, false},
		{"ex multitrack keyframe", TagVideo, "96 01 61763031 00", true, false},
		{"ex multitrack sequence start", TagVideo, "96 10 61763031 00", false, true},
		{"ex multitrack truncated", TagVideo, "96", false, false},
		{"ex ModEx then coded keyframe", TagVideo, "97 02 000010 01 68766331", true, false},
		{"ex ModEx then sequence start", TagVideo, "97 00 00 00 68766331", false, true},
		{"ex ModEx 16-bit size", TagVideo, "97 ff 0001 aabb 03 68766331", true, false},
		{"ex ModEx 16-bit size truncated", TagVideo, "97 ff 00", false, false},
		{"ex ModEx data truncated", TagVideo, "97 05 0000", false, false},
		{"ex ModEx then ModEx then key", TagVideo, "97 00 00 07 00 00 01", true, false},
		{"ex ModEx then multitrack sequence", TagVideo, "97 00 00 06 00 61763031", false, true},

		// Legacy AUDIODATA: SoundFormat<<4 | rate, size, channels.
		{"AAC sequence header", TagAudio, "af 00 1210", false, true},
		{"AAC raw frame", TagAudio, "af 01 2110", false, false},
		{"AAC without packet type", TagAudio, "af", false, false},
		{"MP3 frame", TagAudio, "2f fffb", false, false},
		{"AAC bytes in a video tag", TagVideo, "af 00", false, false},
		{"AVC bytes in an audio tag", TagAudio, "17 00", false, false},

		// Enhanced audio: SoundFormat 9, low nibble AudioPacketType.
		{"ex audio sequence start", TagAudio, "90 4f707573 01", false, true},
		{"ex audio coded frames", TagAudio, "91 4f707573", false, false},
		{"ex audio multichannel config", TagAudio, "94 4f707573", false, false},
		{"ex audio multitrack sequence start", TagAudio, "95 00 4f707573", false, true},
		{"ex audio multitrack coded", TagAudio, "95 01 4f707573", false, false},
		{"ex audio ModEx sequence start", TagAudio, "97 00 00 00 4f707573", false, true},
		{"ex audio ModEx truncated", TagAudio, "97 00", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := unhex(t, tc.hex)
			if tc.typ == TagVideo {
				if got := IsVideoKeyframe(p); got != tc.keyframe {
					t.Errorf("IsVideoKeyframe = %v, want %v", got, tc.keyframe)
				}
			}
			if got := IsSequenceHeader(tc.typ, p); got != tc.seq {
				t.Errorf("IsSequenceHeader = %v, want %v", got, tc.seq)
			}
		})
	}
}
