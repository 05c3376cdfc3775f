package migrate

// Version 4 adds viewers in a browser: a publisher's stream may carry its
// LL-HLS muxer (stream.hls, an index of files that stay on disk), and one
// kind appears, state.KindFLVPlayer, an HTTP-FLV viewer.
//
// Up adds nothing: a version-3 stream had no muxer, and an absent hls field
// is a stream without one, which starts its playlist at the next keyframe.
// Down drops the muxer: a version-3 build serves no HLS, so its viewers
// lose the playlist whatever we send, and the files stay behind in the
// muxer's directory until a later build cleans it. An HTTP-FLV viewer has
// no version-3 form (see introduced): a downgrade below 4 is refused while
// one is connected, rather than handing a build that speaks no HTTP-FLV a
// socket it would write RTMP chunks to.

func downPublisher4(m map[string]any) error {
	stream, err := submap(m, "stream")
	if err != nil {
		return err
	}
	delete(stream, "hls")
	return nil
}
