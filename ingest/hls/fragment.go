package hls

import "encoding/binary"

// A part's bytes are one fMP4 fragment (ISO/IEC 14496-12 §8.8): a moof with
// one traf per track, then an mdat with every track's samples back to back.
// It is written here by hand, field by field, into one buffer of the exact
// size: a generic box marshaller reflected over every field of every box
// and copied the media twice, about half of what a stream's LL-HLS cost
// the publisher's goroutine, and every stream paid it again while catching
// up after an upgrade. The bytes are those of mediacommon's fmp4.Part,
// which still writes the init segment (TestFragmentMatchesMediacommon).

// fragSample is one sample of a track's run.
type fragSample struct {
	duration  uint32
	ptsOffset int32 // composition time minus decode time
	nonSync   bool
	data      []byte
}

// fragTrack is one track's samples in a part, from decode time baseTime.
type fragTrack struct {
	id       uint32
	baseTime uint64
	samples  []fragSample
}

// trun flags (§8.8.8) and the sample flag of a sample that is not a sync
// sample (§8.8.3.1: sample_is_non_sync_sample).
const (
	trunDataOffset = 0x000001
	trunDuration   = 0x000100
	trunSize       = 0x000200
	trunFlags      = 0x000400
	trunCTO        = 0x000800

	tfhdDefaultBaseIsMoof = 0x020000

	sampleNonSync = 1 << 16
)

// trunFlagsOf is the trun's flags for samples: per-sample flags only when a
// sample is not a sync sample, composition offsets only when one is not 0.
func trunFlagsOf(samples []fragSample) uint32 {
	f := uint32(trunDataOffset | trunDuration | trunSize)
	for _, s := range samples {
		if s.nonSync {
			f |= trunFlags
		}
		if s.ptsOffset != 0 {
			f |= trunCTO
		}
	}
	return f
}

func trunEntrySize(flags uint32) int {
	n := 8 // duration, size
	if flags&trunFlags != 0 {
		n += 4
	}
	if flags&trunCTO != 0 {
		n += 4
	}
	return n
}

// Box sizes: header 8, full box header 12.
const (
	mfhdSize = 16
	tfhdSize = 16
	tfdtSize = 20 // version 1: a 64-bit decode time
	trunHead = 20 // full box header, sample_count, data_offset
)

// appendFragment appends the fragment numbered seq (mfhd's sequence number)
// holding tracks, in their order, to dst.
func appendFragment(dst []byte, seq uint32, tracks []fragTrack) []byte {
	moof := 8 + mfhdSize
	media := 0
	for _, t := range tracks {
		f := trunFlagsOf(t.samples)
		moof += 8 + tfhdSize + tfdtSize + trunHead + len(t.samples)*trunEntrySize(f)
		for _, s := range t.samples {
			media += len(s.data)
		}
	}
	total := moof + 8 + media
	if cap(dst)-len(dst) < total {
		grown := make([]byte, len(dst), len(dst)+total)
		copy(grown, dst)
		dst = grown
	}
	be := binary.BigEndian
	box := func(size int, typ string) {
		dst = be.AppendUint32(dst, uint32(size))
		dst = append(dst, typ...)
	}
	full := func(size int, typ string, version uint8, fl uint32) {
		box(size, typ)
		dst = be.AppendUint32(dst, uint32(version)<<24|fl&0xffffff)
	}

	box(moof, "moof")
	full(mfhdSize, "mfhd", 0, 0)
	dst = be.AppendUint32(dst, seq)
	// Each track's data offset counts from the moof's first byte to its
	// first sample in the mdat (default-base-is-moof).
	dataOff := moof + 8
	for _, t := range tracks {
		f := trunFlagsOf(t.samples)
		trun := trunHead + len(t.samples)*trunEntrySize(f)
		box(8+tfhdSize+tfdtSize+trun, "traf")
		full(tfhdSize, "tfhd", 0, tfhdDefaultBaseIsMoof)
		dst = be.AppendUint32(dst, t.id)
		full(tfdtSize, "tfdt", 1, 0)
		dst = be.AppendUint64(dst, t.baseTime)
		full(trun, "trun", 1, f)
		dst = be.AppendUint32(dst, uint32(len(t.samples)))
		dst = be.AppendUint32(dst, uint32(int32(dataOff)))
		for _, s := range t.samples {
			dst = be.AppendUint32(dst, s.duration)
			dst = be.AppendUint32(dst, uint32(len(s.data)))
			if f&trunFlags != 0 {
				var sf uint32
				if s.nonSync {
					sf = sampleNonSync
				}
				dst = be.AppendUint32(dst, sf)
			}
			if f&trunCTO != 0 {
				dst = be.AppendUint32(dst, uint32(s.ptsOffset))
			}
			dataOff += len(s.data)
		}
	}
	box(8+media, "mdat")
	for _, t := range tracks {
		for _, s := range t.samples {
			dst = append(dst, s.data...)
		}
	}
	return dst
}
