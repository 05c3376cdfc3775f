package flv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	// DefaultMaxDataSize bounds a tag read by Reader unless SetMaxDataSize
	// says otherwise. Real keyframes stay well under it; a corrupt DataSize
	// then costs an error, not 16 MiB of memory.
	DefaultMaxDataSize = 8 << 20

	// maxHeaderExtra bounds the bytes a file header may claim beyond its 9.
	maxHeaderExtra = 1 << 16

	// exactAllocLimit is the largest payload allocated in one piece before
	// its bytes have arrived; larger claims grow with the data actually read,
	// so a truncated input cannot make the reader allocate the full claim.
	exactAllocLimit = 1 << 20

	flagFilter = 0x20
)

// ErrFormat is wrapped by every error about malformed FLV input.
var ErrFormat = errors.New("flv: malformed input")

// Reader reads the tags of an FLV stream. It is not safe for concurrent use.
type Reader struct {
	r       io.Reader
	maxData int
	hdr     [TagHeaderSize]byte
	audio   bool // the file header's advisory stream flags
	video   bool
}

// NewReader reads and checks the FLV file header and PreviousTagSize0 from r.
func NewReader(r io.Reader) (*Reader, error) {
	var h [FileHeaderSize + 4]byte
	if _, err := io.ReadFull(r, h[:FileHeaderSize]); err != nil {
		return nil, fmt.Errorf("flv: read file header: %w", noEOF(err))
	}
	if h[0] != 'F' || h[1] != 'L' || h[2] != 'V' {
		return nil, fmt.Errorf("flv: file header signature %q: %w", h[:3], ErrFormat)
	}
	if h[3] != 1 {
		return nil, fmt.Errorf("flv: file header version %d: %w", h[3], ErrFormat)
	}
	off := binary.BigEndian.Uint32(h[5:9])
	if off < FileHeaderSize || off-FileHeaderSize > maxHeaderExtra {
		return nil, fmt.Errorf("flv: file header data offset %d: %w", off, ErrFormat)
	}
	if extra := int64(off - FileHeaderSize); extra > 0 {
		if _, err := io.CopyN(io.Discard, r, extra); err != nil {
			return nil, fmt.Errorf("flv: skip file header extension: %w", noEOF(err))
		}
	}
	// PreviousTagSize0 is always 0 but nothing depends on it, so its value
	// is not checked.
	if _, err := io.ReadFull(r, h[FileHeaderSize:]); err != nil {
		return nil, fmt.Errorf("flv: read PreviousTagSize0: %w", noEOF(err))
	}
	return &Reader{
		r:       r,
		maxData: DefaultMaxDataSize,
		audio:   h[4]&flagAudio != 0,
		video:   h[4]&flagVideo != 0,
	}, nil
}

// SetMaxDataSize sets the largest tag payload Next accepts (at most
// MaxDataSize); n <= 0 restores DefaultMaxDataSize.
func (r *Reader) SetMaxDataSize(n int) {
	switch {
	case n <= 0:
		r.maxData = DefaultMaxDataSize
	case n > MaxDataSize:
		r.maxData = MaxDataSize
	default:
		r.maxData = n
	}
}

// HasAudio reports the file header's audio flag, which encoders do not always
// set truthfully.
func (r *Reader) HasAudio() bool { return r.audio }

// HasVideo reports the file header's video flag; see HasAudio.
func (r *Reader) HasVideo() bool { return r.video }

// Next returns the next tag. Its Data is freshly allocated and owned by the
// caller. Next returns io.EOF when the stream ends cleanly between tags and
// an error wrapping io.ErrUnexpectedEOF when it ends inside one. After any
// other error the reader has lost its place in the stream.
func (r *Reader) Next() (Tag, error) {
	n, err := io.ReadFull(r.r, r.hdr[:])
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return Tag{}, io.EOF
		}
		return Tag{}, fmt.Errorf("flv: read tag header: %w", noEOF(err))
	}
	h := &r.hdr
	if h[0]&flagFilter != 0 {
		return Tag{}, fmt.Errorf("flv: tag with encryption filter: %w", ErrFormat)
	}
	var t Tag
	var size int
	t.Type, size, t.Timestamp = tagHeaderFields(h[:])
	if size > r.maxData {
		return Tag{}, fmt.Errorf("flv: tag type %d at %d ms: data size %d exceeds limit %d: %w",
			t.Type, t.Timestamp, size, r.maxData, ErrFormat)
	}
	if t.Data, err = r.readData(size); err != nil {
		return Tag{}, fmt.Errorf("flv: read tag type %d at %d ms (%d bytes): %w", t.Type, t.Timestamp, size, err)
	}
	// Writers disagree about PreviousTagSize (some write 0, some count
	// differently), so like ffmpeg the reader skips it without checking.
	if _, err := io.ReadFull(r.r, h[:4]); err != nil {
		return Tag{}, fmt.Errorf("flv: read PreviousTagSize: %w", noEOF(err))
	}
	return t, nil
}

func (r *Reader) readData(size int) ([]byte, error) {
	if size <= exactAllocLimit {
		b := make([]byte, size)
		if _, err := io.ReadFull(r.r, b); err != nil {
			return nil, noEOF(err)
		}
		return b, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.r, int64(size)))
	if err != nil {
		return nil, err
	}
	if len(b) < size {
		return nil, io.ErrUnexpectedEOF
	}
	return b, nil
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF: it is only called where the
// stream may not end.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
