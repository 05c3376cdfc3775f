package main

import (
	"encoding/binary"
)

// Just enough ISO BMFF to tell whether a part starts with a video sync
// sample: a part marked INDEPENDENT=YES must, or a player that starts at
// it cannot decode its first frame. The init section says which track is
// video (moov/trak: tkhd track_ID, mdia/hdlr handler 'vide') and its
// default sample flags (moov/mvex/trex); a part's first moof says the
// first sample's flags (traf: tfhd, trun).

// videoTrack is the video track of an init section.
type videoTrack struct {
	id           uint32
	defaultFlags uint32 // trex default_sample_flags
	hasDefault   bool
}

// sampleIsNonSync is sample_is_non_sync_sample in ISO/IEC 14496-12 sample
// flags.
const sampleIsNonSync = 0x00010000

// box walks the boxes in b, calling f with each one's type and body; f
// returns false to stop. It stops at the first malformed box.
func boxes(b []byte, f func(typ string, body []byte) bool) {
	for len(b) >= 8 {
		size := uint64(binary.BigEndian.Uint32(b))
		typ := string(b[4:8])
		hdr := uint64(8)
		switch size {
		case 0:
			size = uint64(len(b))
		case 1:
			if len(b) < 16 {
				return
			}
			size, hdr = binary.BigEndian.Uint64(b[8:]), 16
		}
		if size < hdr || size > uint64(len(b)) {
			return
		}
		if !f(typ, b[hdr:size]) {
			return
		}
		b = b[size:]
	}
}

// child returns the body of the first box of type typ in b.
func child(b []byte, typ string) ([]byte, bool) {
	var out []byte
	found := false
	boxes(b, func(t string, body []byte) bool {
		if t == typ {
			out, found = body, true
			return false
		}
		return true
	})
	return out, found
}

// parseInit finds the video track of an init section.
func parseInit(b []byte) (videoTrack, bool) {
	moov, ok := child(b, "moov")
	if !ok {
		return videoTrack{}, false
	}
	var vt videoTrack
	found := false
	boxes(moov, func(typ string, trak []byte) bool {
		if typ != "trak" {
			return true
		}
		mdia, ok := child(trak, "mdia")
		if !ok {
			return true
		}
		hdlr, ok := child(mdia, "hdlr")
		if !ok || len(hdlr) < 12 || string(hdlr[8:12]) != "vide" {
			return true
		}
		tkhd, ok := child(trak, "tkhd")
		if !ok || len(tkhd) < 4 {
			return true
		}
		off := 12 // version 0: flags, creation, modification
		if tkhd[0] == 1 {
			off = 20
		}
		if len(tkhd) < off+4 {
			return true
		}
		vt.id, found = binary.BigEndian.Uint32(tkhd[off:]), true
		return false
	})
	if !found {
		return videoTrack{}, false
	}
	if mvex, ok := child(moov, "mvex"); ok {
		boxes(mvex, func(typ string, trex []byte) bool {
			if typ == "trex" && len(trex) >= 24 && binary.BigEndian.Uint32(trex[4:]) == vt.id {
				vt.defaultFlags, vt.hasDefault = binary.BigEndian.Uint32(trex[20:]), true
				return false
			}
			return true
		})
	}
	return vt, true
}

// firstSync says whether the first sample of track vt in the part b is a
// sync sample.
func firstSync(b []byte, vt videoTrack) syncState {
	st := syncUnknown
	boxes(b, func(typ string, moof []byte) bool {
		if typ != "moof" {
			return true
		}
		boxes(moof, func(typ string, traf []byte) bool {
			if typ != "traf" {
				return true
			}
			if s, ok := trafFirstSync(traf, vt); ok {
				st = s
				return false
			}
			return true
		})
		return st == syncUnknown
	})
	return st
}

// trafFirstSync reads a traf of track vt; ok is false for another track's
// traf or one that says nothing.
func trafFirstSync(traf []byte, vt videoTrack) (syncState, bool) {
	tfhd, ok := child(traf, "tfhd")
	if !ok || len(tfhd) < 8 || binary.BigEndian.Uint32(tfhd[4:]) != vt.id {
		return syncUnknown, false
	}
	flags, hasFlags := vt.defaultFlags, vt.hasDefault
	tf := binary.BigEndian.Uint32(tfhd) & 0xffffff
	off := 8
	for _, f := range []struct {
		bit  uint32
		size int
	}{{0x01, 8}, {0x02, 4}, {0x08, 4}, {0x10, 4}} {
		if tf&f.bit != 0 {
			off += f.size
		}
	}
	if tf&0x20 != 0 {
		if len(tfhd) < off+4 {
			return syncUnknown, false
		}
		flags, hasFlags = binary.BigEndian.Uint32(tfhd[off:]), true
	}
	trun, ok := child(traf, "trun")
	if !ok || len(trun) < 8 || binary.BigEndian.Uint32(trun[4:]) == 0 {
		return syncUnknown, false
	}
	rf := binary.BigEndian.Uint32(trun) & 0xffffff
	off = 8
	if rf&0x01 != 0 {
		off += 4
	}
	switch {
	case rf&0x04 != 0:
		if len(trun) < off+4 {
			return syncUnknown, false
		}
		flags, hasFlags = binary.BigEndian.Uint32(trun[off:]), true
	case rf&0x400 != 0:
		if rf&0x100 != 0 {
			off += 4
		}
		if rf&0x200 != 0 {
			off += 4
		}
		if len(trun) < off+4 {
			return syncUnknown, false
		}
		flags, hasFlags = binary.BigEndian.Uint32(trun[off:]), true
	}
	if !hasFlags {
		return syncUnknown, false
	}
	if flags&sampleIsNonSync != 0 {
		return syncNo, true
	}
	return syncYes, true
}
