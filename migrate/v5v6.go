package migrate

import "fmt"

// Version 6 changes where a stream's LL-HLS samples held back at a park
// wait for the new process: in one file that every stream of the upgrade
// shares, each at its own offset ("pending_file", "pending_offset" in the
// stream's "hls"), instead of a file of its own in the stream's directory.
// A file created per stream cost every session tens of microseconds of
// file-system work while parked.
//
// Up adds nothing: without "pending_file" the samples are in the stream's
// own file, which version 6 still reads. It removes the two keys, which no
// version-5 build writes, so that a stray one is not taken for a shared
// file.
//
// Down cannot move bytes between files: a migration is a function on
// data. An old process that sends version 5 writes each stream's own
// file, as version 5 did (ingest's Park is told the version), so a
// version-6 payload naming a shared file cannot be taken to version 5 and
// is refused.

// upPublisher5 removes what only version 6 gives a meaning to.
func upPublisher5(m map[string]any) error {
	stream, err := submap(m, "stream")
	if err != nil {
		return err
	}
	if h, ok := stream["hls"].(map[string]any); ok {
		delete(h, "pending_file")
		delete(h, "pending_offset")
	}
	return nil
}

func downPublisher6(m map[string]any) error {
	stream, err := submap(m, "stream")
	if err != nil {
		return err
	}
	h, ok := stream["hls"].(map[string]any)
	if !ok {
		return nil
	}
	if f, _ := h["pending_file"].(string); f != "" {
		return fmt.Errorf("the LL-HLS samples of %v/%v wait in the shared file %s, which a version-5 build cannot read: park for version 5 writes them per stream", stream["app"], stream["key"], f)
	}
	delete(h, "pending_file")
	delete(h, "pending_offset")
	return nil
}
