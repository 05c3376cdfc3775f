package flv

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func fileOf(t testing.TB, tags ...Tag) []byte {
	t.Helper()
	b := AppendFileHeader(nil, true, true)
	for _, tag := range tags {
		var err error
		if b, err = AppendTag(b, tag); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func readTags(t testing.TB, r io.Reader) []Tag {
	t.Helper()
	fr, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	var tags []Tag
	for {
		tag, err := fr.Next()
		if err == io.EOF {
			return tags
		}
		if err != nil {
			t.Fatalf("after %d tags: %v", len(tags), err)
		}
		tags = append(tags, tag)
	}
}

func tagsEqual(a, b Tag) bool {
	return a.Type == b.Type && a.Timestamp == b.Timestamp && bytes.Equal(a.Data, b.Data)
}

func TestReaderVectors(t *testing.T) {
	for _, tc := range tagVectors {
		t.Run(tc.name, func(t *testing.T) {
			in := append(AppendFileHeader(nil, true, false), unhex(t, tc.hex)...)
			tags := readTags(t, bytes.NewReader(in))
			if len(tags) != 1 || !tagsEqual(tags[0], tc.tag) {
				t.Fatalf("read %+v, want [%+v]", tags, tc.tag)
			}
		})
	}
}

func TestReaderAllVectorsInOneFile(t *testing.T) {
	var want []Tag
	for _, tc := range tagVectors {
		want = append(want, tc.tag)
	}
	fr, err := NewReader(bytes.NewReader(fileOf(t, want...)))
	if err != nil {
		t.Fatal(err)
	}
	if !fr.HasAudio() || !fr.HasVideo() {
		t.Errorf("flags audio=%v video=%v, want both", fr.HasAudio(), fr.HasVideo())
	}
	for i, w := range want {
		got, err := fr.Next()
		if err != nil || !tagsEqual(got, w) {
			t.Fatalf("tag %d = %+v, %v; want %+v", i, got, err, w)
		}
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Fatalf("after last tag: %v, want io.EOF", err)
	}
}

func TestReaderHeaderExtension(t *testing.T) {
	// A data offset of 12 puts three unknown bytes between header and
	// PreviousTagSize0; they are skipped.
	in := unhex(t, "464c5601 05 0000000c aabbcc 00000000")
	in = append(in, unhex(t, tagVectors[0].hex)...)
	tags := readTags(t, bytes.NewReader(in))
	if len(tags) != 1 || !tagsEqual(tags[0], tagVectors[0].tag) {
		t.Fatalf("read %+v", tags)
	}
}

func TestReaderErrors(t *testing.T) {
	header := "464c5601 05 00000009 00000000"
	for _, tc := range []struct {
		name     string
		hex      string
		max      int
		headerOK bool
		want     error
	}{
		{"empty", "", 0, false, io.ErrUnexpectedEOF},
		{"short header", "464c56", 0, false, io.ErrUnexpectedEOF},
		{"bad signature", "464c5801 05 00000009 00000000", 0, false, ErrFormat},
		{"bad version", "464c5602 05 00000009 00000000", 0, false, ErrFormat},
		{"data offset below 9", "464c5601 05 00000008 00000000", 0, false, ErrFormat},
		{"absurd data offset", "464c5601 05 7fffffff 00000000", 0, false, ErrFormat},
		{"no PreviousTagSize0", "464c5601 05 00000009 0000", 0, false, io.ErrUnexpectedEOF},
		{"truncated tag header", header + "08 000003 0000", 0, true, io.ErrUnexpectedEOF},
		{"truncated data", header + "08 000003 000000 00 000000 af01", 0, true, io.ErrUnexpectedEOF},
		{"no PreviousTagSize", header + "08 000003 000000 00 000000 af0121 0000", 0, true, io.ErrUnexpectedEOF},
		{"data size over limit", header + "09 000011 000000 00 000000", 16, true, ErrFormat},
		{"16 MiB claim, 1 byte sent", header + "09 ffffff 000000 00 000000 17", MaxDataSize, true, io.ErrUnexpectedEOF},
		{"encrypted tag", header + "28 000001 000000 00 000000 aa 0000000c", 0, true, ErrFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr, err := NewReader(bytes.NewReader(unhex(t, tc.hex)))
			if !tc.headerOK {
				if !errors.Is(err, tc.want) {
					t.Fatalf("NewReader err = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewReader: %v", err)
			}
			fr.SetMaxDataSize(tc.max)
			if _, err := fr.Next(); !errors.Is(err, tc.want) {
				t.Fatalf("Next err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestReaderLargeTag(t *testing.T) {
	// Larger than exactAllocLimit: read by growing with the data.
	big := Tag{Type: TagVideo, Timestamp: 40, Data: bytes.Repeat([]byte{0x17, 1, 2, 3}, (exactAllocLimit+12345)/4)}
	tags := readTags(t, bytes.NewReader(fileOf(t, big, tagVectors[0].tag)))
	if len(tags) != 2 || !tagsEqual(tags[0], big) || !tagsEqual(tags[1], tagVectors[0].tag) {
		t.Fatalf("large tag did not round-trip (%d tags)", len(tags))
	}
	in := fileOf(t, big)
	if _, err := readFirst(in[:len(in)-100]); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated large tag: err = %v, want io.ErrUnexpectedEOF", err)
	}
}

// readFirst reads the first tag of in, allowing any tag size.
func readFirst(in []byte) (Tag, error) {
	fr, err := NewReader(bytes.NewReader(in))
	if err != nil {
		return Tag{}, err
	}
	fr.SetMaxDataSize(MaxDataSize)
	return fr.Next()
}

// FuzzReader checks that no input makes the reader or the payload
// classifiers panic, and that every tag read re-encodes to bytes that read
// back the same.
func FuzzReader(f *testing.F) {
	var all []Tag
	for _, tc := range tagVectors {
		f.Add(append(AppendFileHeader(nil, true, true), unhex(f, tc.hex)...))
		all = append(all, tc.tag)
	}
	f.Add(fileOf(f, all...))
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := NewReader(bytes.NewReader(in))
		if err != nil {
			return
		}
		fr.SetMaxDataSize(1 << 16)
		var tags []Tag
		for len(tags) < 1000 {
			tag, err := fr.Next()
			if err != nil {
				break
			}
			IsVideoKeyframe(tag.Data)
			IsSequenceHeader(tag.Type, tag.Data)
			tags = append(tags, tag)
		}
		again := readTags(t, bytes.NewReader(fileOf(t, tags...)))
		if len(again) != len(tags) {
			t.Fatalf("re-read %d tags, want %d", len(again), len(tags))
		}
		for i := range tags {
			if !tagsEqual(again[i], tags[i]) {
				t.Fatalf("tag %d re-read as %+v, want %+v", i, again[i], tags[i])
			}
		}
	})
}
