package amf0

// lookupInterned returns a preallocated interface value for strings that
// recur in RTMP commands and metadata (command names, connect and
// onMetaData keys, status levels). A constant converted to an interface
// needs no allocation, and switching on string(b) does not copy b, so a
// hit costs no allocation at all.
func lookupInterned(b []byte) (any, bool) {
	switch string(b) {
	case "connect":
		return "connect", true
	case "_result":
		return "_result", true
	case "_error":
		return "_error", true
	case "onStatus":
		return "onStatus", true
	case "onBWDone":
		return "onBWDone", true
	case "createStream":
		return "createStream", true
	case "releaseStream":
		return "releaseStream", true
	case "FCPublish":
		return "FCPublish", true
	case "FCUnpublish":
		return "FCUnpublish", true
	case "onFCPublish":
		return "onFCPublish", true
	case "onFCUnpublish":
		return "onFCUnpublish", true
	case "publish":
		return "publish", true
	case "play":
		return "play", true
	case "play2":
		return "play2", true
	case "pause":
		return "pause", true
	case "seek":
		return "seek", true
	case "deleteStream":
		return "deleteStream", true
	case "closeStream":
		return "closeStream", true
	case "receiveAudio":
		return "receiveAudio", true
	case "receiveVideo":
		return "receiveVideo", true
	case "getStreamLength":
		return "getStreamLength", true
	case "_checkbw":
		return "_checkbw", true
	case "@setDataFrame":
		return "@setDataFrame", true
	case "@clearDataFrame":
		return "@clearDataFrame", true
	case "onMetaData":
		return "onMetaData", true
	case "app":
		return "app", true
	case "type":
		return "type", true
	case "flashVer":
		return "flashVer", true
	case "swfUrl":
		return "swfUrl", true
	case "tcUrl":
		return "tcUrl", true
	case "fpad":
		return "fpad", true
	case "capabilities":
		return "capabilities", true
	case "audioCodecs":
		return "audioCodecs", true
	case "videoCodecs":
		return "videoCodecs", true
	case "videoFunction":
		return "videoFunction", true
	case "pageUrl":
		return "pageUrl", true
	case "objectEncoding":
		return "objectEncoding", true
	case "fourCcList":
		return "fourCcList", true
	case "nonprivate":
		return "nonprivate", true
	case "live":
		return "live", true
	case "record":
		return "record", true
	case "append":
		return "append", true
	case "fmsVer":
		return "fmsVer", true
	case "mode":
		return "mode", true
	case "level":
		return "level", true
	case "code":
		return "code", true
	case "description":
		return "description", true
	case "details":
		return "details", true
	case "clientid":
		return "clientid", true
	case "status":
		return "status", true
	case "error":
		return "error", true
	case "warning":
		return "warning", true
	case "duration":
		return "duration", true
	case "width":
		return "width", true
	case "height":
		return "height", true
	case "videodatarate":
		return "videodatarate", true
	case "framerate":
		return "framerate", true
	case "videocodecid":
		return "videocodecid", true
	case "audiodatarate":
		return "audiodatarate", true
	case "audiosamplerate":
		return "audiosamplerate", true
	case "audiosamplesize":
		return "audiosamplesize", true
	case "stereo":
		return "stereo", true
	case "audiocodecid":
		return "audiocodecid", true
	case "encoder":
		return "encoder", true
	case "filesize":
		return "filesize", true
	}
	return nil, false
}

// internKey returns b as a string, without allocating for well-known keys.
func internKey(b []byte) string {
	if v, ok := lookupInterned(b); ok {
		if s, ok := v.(string); ok {
			return s
		}
	}
	return string(b)
}
