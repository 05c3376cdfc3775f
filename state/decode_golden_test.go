package state_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/mediad/mediad/migrate"
	"github.com/mediad/mediad/state"
)

// TestDecodeGoldenMatchesReflection: every released session blob, of
// every version, taken to this version as a new process takes it, decodes
// by hand (Decode) to what msgpack's reflection gives. Blobs of older
// versions come out of migrate re-encoded through a generic map; blobs of
// this version are also sent down a version and back up, so that each
// kind is read both as this build writes it and as migrate rewrites it.
// An external test package, since migrate imports state.
func TestDecodeGoldenMatchesReflection(t *testing.T) {
	kinds := map[state.Kind]reflect.Type{
		state.KindConn: reflect.TypeFor[state.Session](), state.KindPublisher: reflect.TypeFor[state.Publisher](),
		state.KindPlayer: reflect.TypeFor[state.Player](), state.KindRelay: reflect.TypeFor[state.Relay](),
		state.KindFLVPlayer: reflect.TypeFor[state.FLVPlayer](), state.KindHTTPConn: reflect.TypeFor[state.HTTPConn](),
	}
	seen := map[state.Kind]int{}
	for v := migrate.Oldest; v <= state.Version; v++ {
		files, err := filepath.Glob(filepath.Join("..", "testdata", "state", fmt.Sprintf("v%d", v), "*.msgpack"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no v%d blobs: %v", v, err)
		}
		for _, file := range files {
			blob, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			env, err := state.UnmarshalEnvelope(blob)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			typ, ok := kinds[env.Kind]
			if !ok {
				continue // the process envelope goes through reflection
			}
			cur, err := migrate.Convert(env, state.Version)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			forms := []state.Envelope{cur}
			if down, err := migrate.Convert(cur, state.Version-1); err == nil {
				up, err := migrate.Convert(down, state.Version)
				if err != nil {
					t.Fatalf("%s: back up: %v", file, err)
				}
				forms = append(forms, up)
			}
			for i, e := range forms {
				got, want := reflect.New(typ), reflect.New(typ)
				if err := state.Decode(e, got.Interface()); err != nil {
					t.Fatalf("%s (form %d): %v", file, i, err)
				}
				if err := msgpack.Unmarshal(e.Payload, want.Interface()); err != nil {
					t.Fatalf("%s (form %d): reflection: %v", file, i, err)
				}
				if !reflect.DeepEqual(got.Interface(), want.Interface()) {
					t.Errorf("%s (form %d): decoders disagree\n hand %+v\n  ref %+v", file, i, got.Interface(), want.Interface())
				}
				seen[e.Kind]++
			}
		}
	}
	for kind := range kinds {
		if seen[kind] == 0 {
			t.Errorf("no released blob of kind %s", kind)
		}
	}
	t.Logf("payloads compared by kind: %v", seen)
}
