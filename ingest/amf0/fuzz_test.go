package amf0

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzDecode from the vector table")

// FuzzDecode checks that decoding is total (a value or a *DecodeError,
// never a panic) and that whatever decodes re-encodes to bytes that decode
// to the same value.
func FuzzDecode(f *testing.F) {
	for _, tc := range vectors {
		if !tc.large {
			f.Add(tc.bytes)
		}
	}
	for _, tc := range nonCanonical {
		f.Add(tc.bytes)
	}
	for _, tc := range decodeErrors {
		f.Add(tc.bytes)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, n, err := Decode(b)
		if err != nil {
			checkDecodeError(t, err, len(b))
		} else {
			if n < 1 || n > len(b) {
				t.Fatalf("Decode consumed %d of %d bytes", n, len(b))
			}
			enc, err := Append(nil, v)
			if err != nil {
				t.Fatalf("Append of decoded %s: %v", show(v), err)
			}
			v2, n2, err := Decode(enc)
			if err != nil || n2 != len(enc) || !equal(v, v2) {
				t.Fatalf("re-decode: got %s (%d of %d bytes, err %v), want %s", show(v2), n2, len(enc), err, show(v))
			}
		}

		vs, err := DecodeAll(b)
		if err != nil {
			checkDecodeError(t, err, len(b))
			return
		}
		enc, err := AppendAll(nil, vs...)
		if err != nil {
			t.Fatalf("AppendAll of decoded %s: %v", show(vs), err)
		}
		vs2, err := DecodeAll(enc)
		if err != nil || !equalSlices(vs, vs2) {
			t.Fatalf("re-decode all: got %s (err %v), want %s", show(vs2), err, show(vs))
		}
	})
}

func checkDecodeError(t *testing.T, err error, size int) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %T (%v) is not a *DecodeError", err, err)
	}
	if de.Offset < 0 || de.Offset > size {
		t.Fatalf("error offset %d outside input of %d bytes", de.Offset, size)
	}
	if de.Err == nil || de.Reason == "" {
		t.Fatalf("error lacks sentinel or reason: %#v", de)
	}
}

// corpusFile renders b in the format of Go's fuzzing corpus files.
func corpusFile(b []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b)
}

// corpusName turns a vector name into a file name: lower-case letters and
// digits, other runs of characters replaced by one dash.
func corpusName(vectorName string) string {
	var b strings.Builder
	b.WriteString("vector")
	dash := true
	for _, r := range strings.ToLower(vectorName) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash {
				b.WriteByte('-')
				dash = false
			}
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	return b.String()
}

// TestFuzzSeedCorpus keeps the committed corpus in step with the vector
// table. Extra files (regressions saved by the fuzzer) are left alone.
func TestFuzzSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	for _, tc := range vectors {
		if tc.large {
			continue
		}
		path := filepath.Join(dir, corpusName(tc.name))
		want := corpusFile(tc.bytes)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (regenerate with: go test -run TestFuzzSeedCorpus -update-corpus)", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale (regenerate with: go test -run TestFuzzSeedCorpus -update-corpus)", path)
		}
	}
}
