package ingest

import (
	"time"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/state"
)

// StreamStats counts what a publisher sent in this broadcast. The counters
// cross upgrades (state version 2) and are never reset while the broadcast
// lasts.
type StreamStats struct {
	BytesIn     uint64 `json:"bytes_in"`
	VideoBytes  uint64 `json:"video_bytes"`
	AudioBytes  uint64 `json:"audio_bytes"`
	VideoFrames uint64 `json:"video_frames"`
	AudioFrames uint64 `json:"audio_frames"`
	Keyframes   uint64 `json:"keyframes"`
	// BitrateKbps is the media bitrate over the last 10 s.
	BitrateKbps float64 `json:"bitrate_kbps"`
	// Encoder is what onMetaData names as the encoder.
	Encoder string `json:"encoder,omitempty"`
	// TracksSince is when the per-track byte counts started: the
	// broadcast's start unless it crossed an upgrade from a build that did
	// not count them.
	TracksSince time.Time `json:"tracks_since,omitzero"`
	// GOPCacheBytes is what the stream's GOP cache holds for joining
	// players (payloads and slots). Filled in by Info; it is this
	// process's, never carried across an upgrade.
	GOPCacheBytes int64 `json:"gop_cache_bytes"`

	rate rateRing
}

// rateRing holds bytes received per second over the last state.RateWindow
// seconds; buckets[i] is second `second - i`.
type rateRing struct {
	buckets [state.RateWindow]uint64
	second  int64
}

func (r *rateRing) advance(sec int64) {
	if sec <= r.second {
		return
	}
	shift := sec - r.second
	if shift >= state.RateWindow {
		r.buckets = [state.RateWindow]uint64{}
	} else {
		copy(r.buckets[shift:], r.buckets[:state.RateWindow-shift])
		clear(r.buckets[:shift])
	}
	r.second = sec
}

func (r *rateRing) add(sec int64, n uint64) {
	r.advance(sec)
	// A clock that steps back counts into the newest bucket.
	i := max(r.second-sec, 0)
	if i < state.RateWindow {
		r.buckets[i] += n
	}
}

// kbps is the bitrate over the window ending at sec.
func (r rateRing) kbps(sec int64) float64 {
	r.advance(sec)
	var sum uint64
	for _, b := range r.buckets {
		sum += b
	}
	return float64(sum) * 8 / 1000 / state.RateWindow
}

func (r *rateRing) export() ([]uint64, int64) {
	return append([]uint64(nil), r.buckets[:]...), r.second
}

func restoreRate(buckets []uint64, second int64) rateRing {
	var r rateRing
	copy(r.buckets[:], buckets)
	r.second = second
	return r
}

// metadataEncoder finds the encoder named in an onMetaData body.
func metadataEncoder(data []byte) string {
	vals, err := amf0.DecodeAll(data)
	if err != nil {
		return ""
	}
	for _, v := range vals {
		switch o := v.(type) {
		case amf0.ECMAArray:
			if s, ok := o.GetString("encoder"); ok {
				return s
			}
		case amf0.Object:
			if s, ok := o.GetString("encoder"); ok {
				return s
			}
		}
	}
	return ""
}
