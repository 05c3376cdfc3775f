package relay

// setDataFrame is the AMF0 string "@setDataFrame": marker 0x02, a 16-bit
// length, the bytes.
const setDataFrame = "\x02\x00\x0d@setDataFrame"

// SetDataFrame turns the payload of a stored "onMetaData" data message
// (AMF0 "onMetaData" followed by its properties, as a publisher's
// @setDataFrame arrives after the server strips the first value) into the
// "@setDataFrame", "onMetaData", properties payload a publishing client
// sends. It returns a new slice.
func SetDataFrame(onMetaData []byte) []byte {
	out := make([]byte, 0, len(setDataFrame)+len(onMetaData))
	out = append(out, setDataFrame...)
	return append(out, onMetaData...)
}
