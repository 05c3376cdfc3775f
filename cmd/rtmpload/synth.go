package main

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/flv"
)

// Geometry the synthetic SPS announces. The picture data is noise, so only
// parsers look at it; 720p is what a 2 Mbit/s stream typically carries.
const (
	synthWidth  = 1280
	synthHeight = 720
)

// AAC-LC at 44.1 kHz: 1024 samples per frame.
const (
	aacSampleRate      = 44100
	aacSamplesPerFrame = 1024
)

// keyframeWeight is how many inter frames' worth of bytes a keyframe takes,
// roughly what x264 produces for talking-head content at a 2 s GOP.
const keyframeWeight = 8

// minFrameBytes is the smallest frame the generator produces: FLV header,
// NALU length, NAL header and a slice header fit in it.
const minFrameBytes = 24

// SynthConfig describes a synthetic H.264/AAC stream.
type SynthConfig struct {
	// Bitrate is the total media payload rate in bits per second, audio
	// included.
	Bitrate int
	// AudioBitrate is the part of Bitrate spent on AAC. Zero means no audio.
	AudioBitrate int
	// FPS is the video frame rate.
	FPS float64
	// GOP is the distance between keyframes, in frames.
	GOP int
	// Seconds is how long the clip runs before it loops, rounded up to whole
	// GOPs. Zero means 10.
	Seconds float64
	// Seed varies the noise in the payloads. Streams share one clip, so it
	// only matters across runs.
	Seed uint64
}

func (c *SynthConfig) check() error {
	switch {
	case c.FPS <= 0 || c.FPS > 240 || math.IsNaN(c.FPS):
		return fmt.Errorf("synthetic: fps %v out of (0, 240]", c.FPS)
	case c.GOP < 1 || c.GOP > 100_000:
		return fmt.Errorf("synthetic: gop %d out of [1, 100000]", c.GOP)
	case c.AudioBitrate < 0:
		return fmt.Errorf("synthetic: negative audio bitrate %d", c.AudioBitrate)
	case c.Seconds < 0 || c.Seconds > 600 || math.IsNaN(c.Seconds):
		return fmt.Errorf("synthetic: clip length %vs out of [0, 600]", c.Seconds)
	}
	video := float64(c.Bitrate-c.AudioBitrate) / 8 / c.FPS
	if video < minFrameBytes*1.5 {
		return fmt.Errorf("synthetic: bitrate %d leaves %.0f bytes per video frame after %d for audio; want at least %d",
			c.Bitrate, video, c.AudioBitrate, minFrameBytes*3/2)
	}
	if c.AudioBitrate > 0 && float64(c.AudioBitrate)/8*aacSamplesPerFrame/aacSampleRate < 4 {
		return fmt.Errorf("synthetic: audio bitrate %d too low for AAC frames", c.AudioBitrate)
	}
	if bytes := float64(c.Bitrate) / 8 * max(c.Seconds, 10); bytes > maxClipBytes {
		return fmt.Errorf("synthetic: clip of %.0f MiB exceeds %d MiB", bytes/(1<<20), maxClipBytes>>20)
	}
	return nil
}

// Synthesize builds a clip of H.264- and AAC-shaped tags: a valid AVC
// sequence header (Constrained Baseline, 1280x720) and AAC-LC
// AudioSpecificConfig, then frames of the configured sizes whose payloads are
// length-prefixed NAL units (IDR slices on keyframes, non-IDR otherwise) with
// a real slice header and noise after it. Decoders reject the pictures;
// everything that only parses headers — servers, recorders, players waiting
// for a keyframe — sees a normal stream.
func Synthesize(cfg SynthConfig) (*Clip, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Seconds == 0 {
		cfg.Seconds = 10
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x726d74706c6f6164)) // "rtmpload"
	gops := max(1, int(math.Ceil(cfg.Seconds*cfg.FPS/float64(cfg.GOP))))
	frames := gops * cfg.GOP
	videoMs := float64(frames) * 1000 / cfg.FPS

	c := &Clip{Headers: []Tag{{Type: flv.TagVideo, Data: avcSequenceHeader()}}}
	video := make([]Tag, 0, frames)
	videoBps := cfg.Bitrate - cfg.AudioBitrate
	gopBytes := float64(videoBps) / 8 * float64(cfg.GOP) / cfg.FPS
	for g := range gops {
		for i, size := range gopSizes(gopBytes, cfg.GOP, rng) {
			n := g*cfg.GOP + i
			video = append(video, Tag{
				Type: flv.TagVideo,
				TS:   uint32(math.Round(float64(n) * 1000 / cfg.FPS)),
				Data: videoFrame(size, i, g, rng),
			})
		}
	}

	var audio []Tag
	if cfg.AudioBitrate > 0 {
		c.Headers = append(c.Headers, Tag{Type: flv.TagAudio, Data: aacSequenceHeader()})
		frameMs := float64(aacSamplesPerFrame) * 1000 / aacSampleRate
		perFrame := float64(cfg.AudioBitrate) / 8 * frameMs / 1000
		// Only whole frames inside the video's span, so the loop does not
		// push the next pass's video back.
		for i := 0; float64(i+1)*frameMs <= videoMs; i++ {
			size := int(float64(i+1)*perFrame) - int(float64(i)*perFrame)
			audio = append(audio, Tag{
				Type: flv.TagAudio,
				TS:   uint32(math.Round(float64(i) * frameMs)),
				Data: aacFrame(size, rng),
			})
		}
	}

	// Interleave by timestamp as a muxer does; video first on a tie.
	c.Body = make([]Tag, 0, len(video)+len(audio))
	c.Body = append(append(c.Body, video...), audio...)
	slices.SortStableFunc(c.Body, func(a, b Tag) int {
		if a.TS != b.TS {
			return int(a.TS) - int(b.TS)
		}
		return int(b.Type) - int(a.Type)
	})
	c.Loop = loopDuration(c.Body)

	props := amf0.ECMAArray{
		{Key: "duration", Value: 0.0},
		{Key: "width", Value: float64(synthWidth)},
		{Key: "height", Value: float64(synthHeight)},
		{Key: "videodatarate", Value: float64(videoBps) / 1000},
		{Key: "framerate", Value: cfg.FPS},
		{Key: "videocodecid", Value: 7.0},
	}
	if cfg.AudioBitrate > 0 {
		props = append(props,
			amf0.Property{Key: "audiodatarate", Value: float64(cfg.AudioBitrate) / 1000},
			amf0.Property{Key: "audiosamplerate", Value: float64(aacSampleRate)},
			amf0.Property{Key: "audiosamplesize", Value: 16.0},
			amf0.Property{Key: "stereo", Value: true},
			amf0.Property{Key: "audiocodecid", Value: 10.0},
		)
	}
	var err error
	if c.Metadata, err = buildMetadata(props); err != nil {
		return nil, err
	}
	return c, nil
}

// gopSizes splits a GOP's byte budget into frame sizes: the keyframe gets
// keyframeWeight shares, inter frames one share each, jittered by ±20% so
// the stream does not look like a metronome. Rounding is carried over, so
// the sizes add up to the budget.
func gopSizes(budget float64, gop int, rng *rand.Rand) []int {
	weights := make([]float64, gop)
	total := 0.0
	for i := range weights {
		w := 0.8 + 0.4*rng.Float64()
		if i == 0 {
			w = keyframeWeight
		}
		weights[i] = w
		total += w
	}
	sizes := make([]int, gop)
	cum := 0.0
	for i, w := range weights {
		start := int(cum * budget / total)
		cum += w
		sizes[i] = max(int(cum*budget/total)-start, minFrameBytes)
	}
	return sizes
}

// videoFrame builds an AVC video tag body of exactly size bytes: one NAL
// unit, IDR for the first frame of a GOP (index 0), non-IDR otherwise. gop
// numbers the GOPs, so that consecutive IDRs differ in idr_pic_id as the
// standard requires.
func videoFrame(size, index, gop int, rng *rand.Rand) []byte {
	key := index == 0
	b := make([]byte, 0, size)
	if key {
		b = append(b, 0x17) // keyframe, AVC
	} else {
		b = append(b, 0x27) // inter frame, AVC
	}
	b = append(b, 1, 0, 0, 0) // NALU packet, composition time 0
	nalSize := size - len(b) - 4
	b = append(b, byte(nalSize>>24), byte(nalSize>>16), byte(nalSize>>8), byte(nalSize))

	var w bitWriter
	if key {
		w.u(8, 0x65) // nal_ref_idc 3, IDR slice
	} else {
		w.u(8, 0x41) // nal_ref_idc 2, non-IDR slice
	}
	w.ue(0) // first_mb_in_slice
	if key {
		w.ue(7) // slice_type: I, all slices
	} else {
		w.ue(5) // slice_type: P, all slices
	}
	w.ue(0)                  // pic_parameter_set_id
	w.u(4, uint64(index%16)) // frame_num, log2_max_frame_num = 4
	if key {
		w.ue(uint64(gop % 2)) // idr_pic_id
	} else {
		w.u(1, 0) // num_ref_idx_active_override_flag
		w.u(1, 0) // ref_pic_list_modification_flag_l0
	}
	// dec_ref_pic_marking: no_output_of_prior_pics + long_term_reference
	// for IDR, adaptive_ref_pic_marking_mode for others.
	if key {
		w.u(2, 0)
	} else {
		w.u(1, 0)
	}
	w.se(0) // slice_qp_delta
	w.ue(0) // disable_deblocking_filter_idc
	w.se(0) // slice_alpha_c0_offset_div2
	w.se(0) // slice_beta_offset_div2
	// The slice data that would follow is noise; the partial byte is padded
	// with ones so it cannot end in a zero run.
	b = append(b, escape(w.bytes(true))...)
	return fillNoise(b, size, rng)
}

// fillNoise appends pseudo-random bytes to b up to size. Bytes are kept at 4
// or above so that no emulation-prevention sequence (00 00 0x) can appear
// in the NAL unit.
func fillNoise(b []byte, size int, rng *rand.Rand) []byte {
	for len(b) < size {
		v := rng.Uint64()
		for k := 0; k < 8 && len(b) < size; k++ {
			c := byte(v >> (8 * k))
			if c < 4 {
				c += 0x80
			}
			b = append(b, c)
		}
	}
	return b
}

// aacFrame builds an AAC raw-frame tag body of size bytes (at least 3).
func aacFrame(size int, rng *rand.Rand) []byte {
	b := make([]byte, 0, max(size, 3))
	b = append(b, 0xAF, 1) // AAC, 44 kHz, 16-bit, stereo; raw frame
	return fillNoise(b, max(size, 3), rng)
}

// aacSequenceHeader is the AAC tag carrying an AudioSpecificConfig for
// AAC-LC (object type 2), 44.1 kHz (index 4), stereo (configuration 2).
func aacSequenceHeader() []byte {
	var w bitWriter
	w.u(5, 2)
	w.u(4, 4)
	w.u(4, 2)
	w.u(3, 0) // GASpecificConfig: frame length 1024, no core coder, no extension
	return append([]byte{0xAF, 0}, w.bytes(false)...)
}

// avcSequenceHeader is the AVC tag carrying an AVCDecoderConfigurationRecord
// with one SPS and one PPS.
func avcSequenceHeader() []byte {
	sps, pps := synthSPS(), synthPPS()
	b := []byte{0x17, 0, 0, 0, 0} // keyframe, AVC, sequence header, cts 0
	b = append(b,
		1,      // configurationVersion
		sps[1], // AVCProfileIndication
		sps[2], // profile_compatibility
		sps[3], // AVCLevelIndication
		0xFF,   // reserved, lengthSizeMinusOne = 3
		0xE1,   // reserved, one SPS
		byte(len(sps)>>8), byte(len(sps)))
	b = append(b, sps...)
	b = append(b, 1, byte(len(pps)>>8), byte(len(pps)))
	return append(b, pps...)
}

// synthSPS is a Constrained Baseline, level 3.1 sequence parameter set for
// synthWidth x synthHeight progressive frames.
func synthSPS() []byte {
	var w bitWriter
	w.u(8, 0x67) // nal_ref_idc 3, SPS
	w.u(8, 66)   // profile_idc: Baseline
	w.u(8, 0xC0) // constraint_set0 and constraint_set1: Constrained Baseline
	w.u(8, 31)   // level_idc 3.1
	w.ue(0)      // seq_parameter_set_id
	w.ue(0)      // log2_max_frame_num_minus4
	w.ue(2)      // pic_order_cnt_type: output order is decode order
	w.ue(1)      // max_num_ref_frames
	w.u(1, 0)    // gaps_in_frame_num_value_allowed_flag
	w.ue(synthWidth/16 - 1)
	w.ue(synthHeight/16 - 1)
	w.u(1, 1) // frame_mbs_only_flag
	w.u(1, 1) // direct_8x8_inference_flag
	w.u(1, 0) // frame_cropping_flag: 720 is a whole number of macroblocks
	w.u(1, 0) // vui_parameters_present_flag
	return escape(w.rbsp())
}

// synthPPS is the matching picture parameter set (CAVLC, one slice group).
func synthPPS() []byte {
	var w bitWriter
	w.u(8, 0x68) // nal_ref_idc 3, PPS
	w.ue(0)      // pic_parameter_set_id
	w.ue(0)      // seq_parameter_set_id
	w.u(1, 0)    // entropy_coding_mode_flag: CAVLC
	w.u(1, 0)    // bottom_field_pic_order_in_frame_present_flag
	w.ue(0)      // num_slice_groups_minus1
	w.ue(0)      // num_ref_idx_l0_default_active_minus1
	w.ue(0)      // num_ref_idx_l1_default_active_minus1
	w.u(1, 0)    // weighted_pred_flag
	w.u(2, 0)    // weighted_bipred_idc
	w.se(0)      // pic_init_qp_minus26
	w.se(0)      // pic_init_qs_minus26
	w.se(0)      // chroma_qp_index_offset
	w.u(1, 1)    // deblocking_filter_control_present_flag
	w.u(1, 0)    // constrained_intra_pred_flag
	w.u(1, 0)    // redundant_pic_cnt_present_flag
	return escape(w.rbsp())
}

// bitWriter writes H.264 syntax elements most significant bit first.
type bitWriter struct {
	b     []byte
	nbits int
}

func (w *bitWriter) bit(v uint64) {
	if w.nbits%8 == 0 {
		w.b = append(w.b, 0)
	}
	if v != 0 {
		w.b[len(w.b)-1] |= 0x80 >> (w.nbits % 8)
	}
	w.nbits++
}

// u writes v in n bits.
func (w *bitWriter) u(n int, v uint64) {
	for i := n - 1; i >= 0; i-- {
		w.bit(v >> i & 1)
	}
}

// ue writes v as an unsigned Exp-Golomb code.
func (w *bitWriter) ue(v uint64) {
	n := bits.Len64(v + 1)
	w.u(n-1, 0)
	w.u(n, v+1)
}

// se writes v as a signed Exp-Golomb code.
func (w *bitWriter) se(v int64) {
	if v > 0 {
		w.ue(uint64(2*v - 1))
	} else {
		w.ue(uint64(-2 * v))
	}
}

// rbsp ends the payload with the stop bit and zero alignment.
func (w *bitWriter) rbsp() []byte {
	w.bit(1)
	return w.b
}

// bytes returns what was written; with ones set, a final partial byte is
// padded with one bits instead of zeros.
func (w *bitWriter) bytes(ones bool) []byte {
	if ones {
		for w.nbits%8 != 0 {
			w.bit(1)
		}
	}
	return w.b
}

// escape inserts emulation-prevention bytes: 00 00 followed by 00..03 gets a
// 03 in between, so the NAL unit cannot contain a start code.
func escape(rbsp []byte) []byte {
	out := make([]byte, 0, len(rbsp)+len(rbsp)/2)
	zeros := 0
	for _, c := range rbsp {
		if zeros >= 2 && c <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}
