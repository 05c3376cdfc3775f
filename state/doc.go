// Package state is the current schema of everything that crosses a live
// upgrade: plain data with msgpack tags, no behaviour beyond encoding.
//
// Older schemas never live here; they are frozen inside package migrate. A
// change to any type in this package bumps Version in the same commit that
// adds the migration pair and the new golden blobs (see DESIGN.md §5).
//
// Versions so far: 1, the sessions (conn, publisher, player); 2, per-stream
// statistics in a publisher's stream; 3, the process envelope (KindProcess),
// which carries the service's counters, histograms and upgrade history and
// has no form in older versions; 4, a stream's LL-HLS muxer (HLS, an index
// of files that stay on disk) and HTTP-FLV viewers (KindFLVPlayer); 5, push
// relays (KindRelay) and the webhook outbox in the process envelope; 6, the
// LL-HLS samples held back at a park in one file shared by every stream
// (HLS.PendingFile); 7, the media listener's keep-alive connections
// between two requests (KindHTTPConn); 8, a session's static part sent
// before the park (KindBase) and the tails that go at the park
// (KindPublisherTail, KindPlayerTail).
package state

// Version is the schema version this build writes. It is the version of
// every envelope produced by Encode.
const Version = 8
