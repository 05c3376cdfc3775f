// Package flv reads and writes the FLV container and records live broadcasts
// into FLV segment files.
//
// The primitives (Tag, Reader, AppendFileHeader, AppendTag) follow the FLV
// 10.1 specification. The tag payloads are the bodies of RTMP audio and video
// messages, so IsVideoKeyframe and IsSequenceHeader classify RTMP media just
// as well as FLV tags; both understand the legacy codec-ID headers and the
// Enhanced RTMP (v1 and v2) extended headers, including ModEx prefixes and
// multitrack packets.
//
// A Recorder writes one broadcast into a directory of segments named after
// the UTC wall-clock time each was opened. Every segment begins with the FLV
// header, the stream's metadata and its sequence headers, so each one is
// playable on its own. Segments are cut on media time only, at a video
// keyframe, so a segment's length never depends on scheduling or on when the
// server flushes. The recorder remembers one video and one audio sequence
// header (the latest of each), which covers single-track streams; Enhanced
// RTMP multitrack streams with one sequence start per track are recorded in
// full, but a later segment repeats only the latest of them.
//
// A Recorder crosses a live upgrade as plain data: State flushes and returns
// a RecorderState plus the open file, and RestoreRecorder continues appending
// to that same file in another process, so the recording stays one
// continuous file.
package flv
