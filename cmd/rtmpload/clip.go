package main

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"

	"github.com/mediad/mediad/ingest/amf0"
	"github.com/mediad/mediad/ingest/flv"
)

// Tag is one audio or video message of a clip. Its Data is shared by every
// publisher and never written after the clip is built.
type Tag struct {
	Type uint8  // flv.TagAudio or flv.TagVideo
	TS   uint32 // milliseconds from the clip's start
	Data []byte
}

// Clip is what every publisher replays: metadata and sequence headers once,
// then Body in a loop, each pass shifted by Loop milliseconds so timestamps
// keep increasing.
type Clip struct {
	// Metadata is "onMetaData" and its properties (AMF0), the body of an FLV
	// script tag; publishers prefix it with "@setDataFrame".
	Metadata []byte
	// Headers are the sequence headers a decoder needs first; sent once,
	// stamped 0.
	Headers []Tag
	// Body is replayed in a loop; its timestamps never decrease.
	Body []Tag
	// Loop is the timestamp offset between two passes of Body: the last
	// timestamp of each track plus one of its frames, whichever is later.
	Loop uint32
}

// maxClipBytes bounds the media kept in memory from an input file; the clip
// loops, so a few minutes of it are as good as hours.
const maxClipBytes = 512 << 20

// LoadClip reads an FLV file into a clip.
func LoadClip(path string) (*Clip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load clip: %w", err)
	}
	defer f.Close()
	c, err := ReadClip(f)
	if err != nil {
		return nil, fmt.Errorf("load clip %s: %w", path, err)
	}
	return c, nil
}

// ReadClip reads FLV tags from r. The first onMetaData script tag becomes
// the metadata and other script tags are dropped; sequence headers before
// the first frame become the clip's headers; end-of-sequence markers are
// dropped; timestamps are rebased so that the first frame is at 0.
func ReadClip(r io.Reader) (*Clip, error) {
	fr, err := flv.NewReader(r)
	if err != nil {
		return nil, err
	}
	var (
		c       Clip
		tags    []flv.Tag
		total   int
		started bool // a frame (not a sequence header) was seen
	)
	for {
		t, err := fr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t.Type {
		case flv.TagScript:
			if c.Metadata == nil && isMetadata(t.Data) {
				c.Metadata = t.Data
			}
			continue
		case flv.TagAudio, flv.TagVideo:
		default:
			continue
		}
		if len(t.Data) == 0 || isSequenceEnd(t.Type, t.Data) {
			// An end of sequence in a loop would tell every player's decoder
			// that the stream ended, once per pass.
			continue
		}
		if total += len(t.Data); total > maxClipBytes {
			return nil, fmt.Errorf("media beyond %d MiB; cut the file shorter", maxClipBytes>>20)
		}
		if !started && flv.IsSequenceHeader(t.Type, t.Data) {
			c.Headers = append(c.Headers, Tag{Type: t.Type, Data: t.Data})
			continue
		}
		started = true
		tags = append(tags, t)
	}
	if len(tags) == 0 {
		return nil, errors.New("no audio or video frames")
	}
	base := tags[0].Timestamp
	c.Body = make([]Tag, len(tags))
	var last uint32
	for i, t := range tags {
		// Writers sometimes step back a millisecond or two between tracks;
		// a replay must not, so timestamps are clamped to never decrease.
		ts := t.Timestamp - base
		if t.Timestamp < base || ts < last {
			ts = last
		}
		last = ts
		c.Body[i] = Tag{Type: t.Type, TS: ts, Data: t.Data}
	}
	c.Loop = loopDuration(c.Body)
	if c.Metadata == nil {
		if c.Metadata, err = buildMetadata(nil); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// isSequenceEnd reports whether a video tag body is an end-of-sequence
// marker: legacy AVC or HEVC packet type 2, or Enhanced RTMP SequenceEnd.
func isSequenceEnd(typ uint8, data []byte) bool {
	if typ != flv.TagVideo || len(data) < 2 {
		return false
	}
	b := data[0]
	if b&0x80 != 0 {
		return b&0x0f == 2
	}
	codec := b & 0x0f
	return (codec == 7 || codec == 12) && data[1] == 2
}

// isMetadata reports whether a script tag body is onMetaData.
func isMetadata(data []byte) bool {
	v, _, err := amf0.Decode(data)
	return err == nil && v == "onMetaData"
}

// loopDuration is where the next pass of body starts: for each track, its
// last timestamp plus its typical frame interval; the later of the two, so
// that neither track steps back.
func loopDuration(body []Tag) uint32 {
	var end uint32
	for _, typ := range []uint8{flv.TagVideo, flv.TagAudio} {
		var ts []uint32
		for _, t := range body {
			if t.Type == typ {
				ts = append(ts, t.TS)
			}
		}
		if len(ts) == 0 {
			continue
		}
		end = max(end, ts[len(ts)-1]+frameInterval(ts))
	}
	return max(end, 1)
}

// frameInterval is the median gap between consecutive timestamps, robust to
// the odd dropped frame; 0 gaps (several tags per frame) are ignored.
func frameInterval(ts []uint32) uint32 {
	gaps := make([]uint32, 0, len(ts))
	for i := 1; i < len(ts); i++ {
		if d := ts[i] - ts[i-1]; d > 0 {
			gaps = append(gaps, d)
		}
	}
	if len(gaps) == 0 {
		// A single frame: one 30 fps frame is as good a guess as any.
		return 33
	}
	slices.Sort(gaps)
	return gaps[len(gaps)/2]
}

// BodyBytes is the payload size of one pass of the body.
func (c *Clip) BodyBytes() int {
	n := 0
	for _, t := range c.Body {
		n += len(t.Data)
	}
	return n
}

// Bitrate is the body's media payload rate in bits per second.
func (c *Clip) Bitrate() float64 {
	return float64(c.BodyBytes()) * 8 / (float64(c.Loop) / 1000)
}

// buildMetadata encodes an onMetaData body from props, with the encoder
// name added.
func buildMetadata(props amf0.ECMAArray) ([]byte, error) {
	props = append(props, amf0.Property{Key: "encoder", Value: "rtmpload"})
	b, err := amf0.AppendAll(nil, "onMetaData", props)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	return b, nil
}

// crcTable is the IEEE polynomial, the CRC-32 of zlib, Python and cksum -a
// crc32b, so that scripts can check a report with common tools.
var crcTable = crc32.IEEETable

// MediaCRC returns the CRC-32 (IEEE) of the audio and video payloads of the
// given FLV files, read in order as one sequence, and how many tags it
// covers. It is what a publisher reports as its crc32 when the files are
// its recording.
func MediaCRC(paths ...string) (crc uint32, tags int, err error) {
	for _, p := range paths {
		crc, tags, err = mediaCRCFile(p, crc, tags)
		if err != nil {
			return 0, 0, err
		}
	}
	return crc, tags, nil
}

func mediaCRCFile(path string, crc uint32, tags int) (uint32, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("checksum: %w", err)
	}
	defer f.Close()
	fr, err := flv.NewReader(f)
	if err != nil {
		return 0, 0, fmt.Errorf("checksum %s: %w", path, err)
	}
	for {
		t, err := fr.Next()
		if errors.Is(err, io.EOF) {
			return crc, tags, nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("checksum %s: %w", path, err)
		}
		if t.Type == flv.TagAudio || t.Type == flv.TagVideo {
			crc = crc32.Update(crc, crcTable, t.Data)
			tags++
		}
	}
}

// WriteFLV writes the clip as an FLV file: metadata, sequence headers and
// one pass of the body, so that other tools (ffprobe, ffmpeg) can read what
// the publishers send.
func (c *Clip) WriteFLV(w io.Writer) error {
	var hasAudio, hasVideo bool
	for _, t := range slices.Concat(c.Headers, c.Body) {
		hasAudio = hasAudio || t.Type == flv.TagAudio
		hasVideo = hasVideo || t.Type == flv.TagVideo
	}
	b := flv.AppendFileHeader(nil, hasAudio, hasVideo)
	b, err := flv.AppendTag(b, flv.Tag{Type: flv.TagScript, Data: c.Metadata})
	if err != nil {
		return fmt.Errorf("write clip: %w", err)
	}
	for _, t := range slices.Concat(c.Headers, c.Body) {
		if b, err = flv.AppendTag(b, flv.Tag{Type: t.Type, Timestamp: t.TS, Data: t.Data}); err != nil {
			return fmt.Errorf("write clip: %w", err)
		}
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write clip: %w", err)
	}
	return nil
}
