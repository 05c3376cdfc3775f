package handoff

import (
	"bytes"
	"fmt"
	"os"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/mediad/mediad/state"
)

// Item is one unit of state with the descriptors that belong to it (a
// connection, a recording file), in the order the receiver expects them:
// Borrowed first, then Files.
type Item struct {
	Envelope state.Envelope
	// Borrowed are descriptor numbers a sender lends for the send: a live
	// connection's own, which it keeps open until SendItems returns and
	// which nobody here closes. Sending them needs no duplicate, which
	// would double the old process's descriptors for the whole upgrade.
	// A received item has none: the kernel gave the receiver its own
	// copies, in Files.
	Borrowed []int
	Files    []*os.File
}

// NumFDs is the number of descriptors the item carries.
func (it Item) NumFDs() int { return len(it.Borrowed) + len(it.Files) }

// CloseItems closes every file of items, for a receiver that will not use
// them.
func CloseItems(items []Item) {
	for _, it := range items {
		for _, f := range it.Files {
			if f != nil {
				_ = f.Close()
			}
		}
	}
}

// Hello is the new process's introduction, its first message.
type Hello struct {
	// Build identifies the new binary (version, commit), for logs.
	Build string
	// ReadsMin and ReadsMax bound the state versions the new binary reads.
	ReadsMin, ReadsMax uint32
	// PID is the new process's id.
	PID int
	// NoFileLimit is the new process's RLIMIT_NOFILE soft limit.
	NoFileLimit uint64
	// OpenFDs is how many descriptors the new process had open when it
	// said hello.
	OpenFDs int
	// OpenPlan says the new process takes an open Plan, whose totals come
	// with End: the old process may then send each session as it parks.
	// Builds before it leave it out, and are sent a closed Plan.
	OpenPlan bool
}

// Plan is the old process's answer to Hello when the handoff goes ahead.
type Plan struct {
	// Version is the state version of every envelope that will be sent.
	Version uint32
	// Items and FDs are the exact totals that the batches will carry; the
	// receiver refuses a stream that exceeds or falls short of them. In an
	// open Plan they are bounds, and End brings the exact totals.
	Items int
	FDs   int
	// Open: the batches start before the old process knows how many
	// sessions it will send (it sends each as it parks). Only for a new
	// process whose Hello says OpenPlan.
	Open bool
}

// Report is the new process's account of a committed upgrade, sent once
// its restored publishers have read again: the stall each saw between the
// old process's last read and its own first one. Old processes of earlier
// builds wait for it before their verdict; one of this build has already
// given its verdict and exited, and the new process keeps the figures
// itself (upgrade.Verdict.StallsPending).
type Report struct {
	Stalls       int
	StallP50MS   float64
	StallP99MS   float64
	WorstStallMS float64
}

// RejectError reports that the new process rejected the handoff.
type RejectError struct{ Reason string }

func (e *RejectError) Error() string { return "handoff: new process rejected the state: " + e.Reason }

// RefusedError reports that the old process refused the new one at hello.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "handoff: old process refused the upgrade: " + e.Reason }

// AbortedError reports that the old process abandoned the handoff before
// committing; the new process must not touch any descriptor it received.
type AbortedError struct{ Reason string }

func (e *AbortedError) Error() string { return "handoff: old process aborted: " + e.Reason }

// maxReason bounds the reasons sent in Refuse, Reject and Abort: enough for
// any error chain, small enough to keep those frames one packet.
const maxReason = 4 << 10

// Messages are a sealed set; encodeBody and decodeBody hold the one switch
// each that maps them to and from the wire.
type message interface{ msgType() msgType }

type (
	refuseMsg struct{ reason string }
	rejectMsg struct{ reason string }
	abortMsg  struct{ reason string }
	// endMsg carries the totals sent when the plan was open; a closed
	// plan's End is an empty map, as builds before open plans send it.
	endMsg struct {
		open       bool
		items, fds int
	}
	commitMsg   struct{}
	preparedMsg struct{ items int }
	// syncMsg asks the child to finish building every item sent so far
	// (items) before the park; syncedMsg says it has (state version 8:
	// the bases).
	syncMsg   struct{ items int }
	syncedMsg struct{ items int }
	// batchMsg is a received batch; items carry NFiles, the files arrive as
	// the frame's descriptors. Sending encodes []Item directly.
	batchMsg struct{ items []wireItem }
)

type wireItem struct {
	env    state.Envelope
	nfiles int
}

func (Hello) msgType() msgType       { return typeHello }
func (Plan) msgType() msgType        { return typePlan }
func (refuseMsg) msgType() msgType   { return typeRefuse }
func (batchMsg) msgType() msgType    { return typeBatch }
func (endMsg) msgType() msgType      { return typeEnd }
func (preparedMsg) msgType() msgType { return typePrepared }
func (rejectMsg) msgType() msgType   { return typeReject }
func (commitMsg) msgType() msgType   { return typeCommit }
func (abortMsg) msgType() msgType    { return typeAbort }
func (Report) msgType() msgType      { return typeReport }
func (syncMsg) msgType() msgType     { return typeSync }
func (syncedMsg) msgType() msgType   { return typeSynced }

// Every body is a msgpack map with string keys, so that a later build can
// add fields an older one skips. Key names are part of the wire format.
// Batch: {"items": [{"env": {"kind", "v", "payload"}, "nfiles"}...]}; the
// envelope map uses state.Envelope's own msgpack names.

// encodeBody appends m's body to buf.
func encodeBody(buf *bytes.Buffer, m message) error {
	e := msgpack.NewEncoder(buf)
	var err error
	switch m := m.(type) {
	case Hello:
		n := 6
		if m.OpenPlan {
			n++
		}
		err = firstErr(
			e.EncodeMapLen(n),
			e.EncodeString("build"), e.EncodeString(m.Build),
			e.EncodeString("reads_min"), e.EncodeUint(uint64(m.ReadsMin)),
			e.EncodeString("reads_max"), e.EncodeUint(uint64(m.ReadsMax)),
			e.EncodeString("pid"), e.EncodeInt(int64(m.PID)),
			e.EncodeString("nofile"), e.EncodeUint(m.NoFileLimit),
			e.EncodeString("open_fds"), e.EncodeInt(int64(m.OpenFDs)),
		)
		if err == nil && m.OpenPlan {
			err = firstErr(e.EncodeString("open_plan"), e.EncodeBool(true))
		}
	case Plan:
		n := 3
		if m.Open {
			n++
		}
		err = firstErr(
			e.EncodeMapLen(n),
			e.EncodeString("version"), e.EncodeUint(uint64(m.Version)),
			e.EncodeString("items"), e.EncodeInt(int64(m.Items)),
			e.EncodeString("fds"), e.EncodeInt(int64(m.FDs)),
		)
		if err == nil && m.Open {
			err = firstErr(e.EncodeString("open"), e.EncodeBool(true))
		}
	case endMsg:
		if !m.open {
			err = e.EncodeMapLen(0)
			break
		}
		err = firstErr(
			e.EncodeMapLen(2),
			e.EncodeString("items"), e.EncodeInt(int64(m.items)),
			e.EncodeString("fds"), e.EncodeInt(int64(m.fds)),
		)
	case refuseMsg:
		err = encodeReason(e, m.reason)
	case rejectMsg:
		err = encodeReason(e, m.reason)
	case abortMsg:
		err = encodeReason(e, m.reason)
	case preparedMsg:
		err = firstErr(e.EncodeMapLen(1), e.EncodeString("items"), e.EncodeInt(int64(m.items)))
	case syncMsg:
		err = firstErr(e.EncodeMapLen(1), e.EncodeString("items"), e.EncodeInt(int64(m.items)))
	case syncedMsg:
		err = firstErr(e.EncodeMapLen(1), e.EncodeString("items"), e.EncodeInt(int64(m.items)))
	case Report:
		// Microseconds as integers: the wire format has no floats.
		err = firstErr(
			e.EncodeMapLen(4),
			e.EncodeString("stalls"), e.EncodeInt(int64(m.Stalls)),
			e.EncodeString("p50_us"), e.EncodeUint(msToUS(m.StallP50MS)),
			e.EncodeString("p99_us"), e.EncodeUint(msToUS(m.StallP99MS)),
			e.EncodeString("worst_us"), e.EncodeUint(msToUS(m.WorstStallMS)),
		)
	case commitMsg:
		err = e.EncodeMapLen(0)
	default:
		err = fmt.Errorf("no encoding for %T", m)
	}
	if err != nil {
		return fmt.Errorf("handoff: encode %s: %w", m.msgType(), err)
	}
	return nil
}

func encodeReason(e *msgpack.Encoder, reason string) error {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	return firstErr(e.EncodeMapLen(1), e.EncodeString("reason"), e.EncodeString(reason))
}

// encodeBatchParts encodes the body of a Batch carrying items as parts to
// send one after the other: what surrounds each payload is appended to
// buf, and the payloads themselves are not copied. parts is reused; the
// parts alias buf and the items' payloads.
func encodeBatchParts(buf *bytes.Buffer, items []Item, parts [][]byte) ([][]byte, error) {
	e := msgpack.NewEncoder(buf)
	if err := firstErr(e.EncodeMapLen(1), e.EncodeString("items"), e.EncodeArrayLen(len(items))); err != nil {
		return nil, fmt.Errorf("handoff: encode Batch: %w", err)
	}
	// Where each payload goes in the framing, known only once buf stops
	// growing.
	cuts := make([]int, len(items))
	for i := range items {
		env := &items[i].Envelope
		err := firstErr(
			e.EncodeMapLen(2),
			e.EncodeString("env"), e.EncodeMapLen(3),
			e.EncodeString("kind"), e.EncodeString(string(env.Kind)),
			e.EncodeString("v"), e.EncodeUint(uint64(env.Version)),
			e.EncodeString("payload"), e.EncodeBytesLen(len(env.Payload)),
		)
		cuts[i] = buf.Len()
		if err == nil {
			err = firstErr(e.EncodeString("nfiles"), e.EncodeInt(int64(items[i].NumFDs())))
		}
		if err != nil {
			return nil, fmt.Errorf("handoff: encode Batch item %d: %w", i, err)
		}
	}
	framing := buf.Bytes()
	parts = parts[:0]
	prev := 0
	for i, cut := range cuts {
		parts = append(parts, framing[prev:cut])
		if p := items[i].Envelope.Payload; len(p) > 0 {
			parts = append(parts, p)
		}
		prev = cut
	}
	return append(parts, framing[prev:]), nil
}

// batchItemOverhead bounds the bytes an item adds to a Batch body beyond
// its kind and payload.
const batchItemOverhead = 64

func msToUS(ms float64) uint64 {
	if ms <= 0 {
		return 0
	}
	return uint64(ms * 1000)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeBody decodes a frame body of type t from untrusted bytes. nfds is
// the number of descriptors that came with the frame; a Batch must account
// for exactly that many. Byte strings in the result alias body.
func decodeBody(t msgType, body []byte, nfds int) (message, error) {
	r := &mpReader{b: body}
	var m message
	var err error
	switch t {
	case typeHello:
		m, err = decodeHello(r)
	case typePlan:
		m, err = decodePlan(r)
	case typeRefuse:
		var s string
		s, err = decodeReason(r)
		m = refuseMsg{s}
	case typeReject:
		var s string
		s, err = decodeReason(r)
		m = rejectMsg{s}
	case typeAbort:
		var s string
		s, err = decodeReason(r)
		m = abortMsg{s}
	case typePrepared, typeSync, typeSynced:
		var n int
		err = decodeFields(r, func(key []byte) (err error) {
			if string(key) == "items" {
				n, err = r.count(maxCount)
				return err
			}
			return r.skip()
		})
		switch t {
		case typePrepared:
			m = preparedMsg{n}
		case typeSync:
			m = syncMsg{n}
		default:
			m = syncedMsg{n}
		}
	case typeEnd:
		var end endMsg
		err = decodeFields(r, func(key []byte) (err error) {
			switch string(key) {
			case "items":
				end.open = true
				end.items, err = r.count(maxCount)
			case "fds":
				end.open = true
				end.fds, err = r.count(maxCount)
			default:
				err = r.skip()
			}
			return err
		})
		m = end
	case typeCommit:
		err = decodeFields(r, func([]byte) error { return r.skip() })
		m = commitMsg{}
	case typeBatch:
		m, err = decodeBatch(r, nfds)
	case typeReport:
		var rep Report
		err = decodeFields(r, func(key []byte) (err error) {
			var us uint64
			switch string(key) {
			case "stalls":
				rep.Stalls, err = r.count(maxCount)
			case "p50_us":
				us, err = r.uint64()
				rep.StallP50MS = float64(us) / 1000
			case "p99_us":
				us, err = r.uint64()
				rep.StallP99MS = float64(us) / 1000
			case "worst_us":
				us, err = r.uint64()
				rep.WorstStallMS = float64(us) / 1000
			default:
				err = r.skip()
			}
			return err
		})
		m = rep
	default:
		err = fmt.Errorf("unknown message")
	}
	if err == nil && r.left() != 0 {
		err = fmt.Errorf("%d bytes after the body", r.left())
	}
	if err == nil && nfds != 0 && t != typeBatch {
		err = fmt.Errorf("%d descriptors attached", nfds)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", t, err)
	}
	return m, nil
}

// maxCount bounds item and descriptor counts: far above any real server,
// low enough that sums cannot overflow.
const maxCount = 1 << 30

// decodeFields walks a map, calling field with each key; field must consume
// the value.
func decodeFields(r *mpReader, field func(key []byte) error) error {
	n, err := r.mapLen()
	if err != nil {
		return err
	}
	for range n {
		key, err := r.strBytes()
		if err != nil {
			return fmt.Errorf("key: %w", err)
		}
		if err := field(key); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

func decodeHello(r *mpReader) (Hello, error) {
	var h Hello
	err := decodeFields(r, func(key []byte) (err error) {
		switch string(key) {
		case "build":
			h.Build, err = r.str()
		case "reads_min":
			h.ReadsMin, err = r.uint32()
		case "reads_max":
			h.ReadsMax, err = r.uint32()
		case "pid":
			h.PID, err = r.count(maxCount)
		case "nofile":
			h.NoFileLimit, err = r.uint64()
		case "open_fds":
			h.OpenFDs, err = r.count(maxCount)
		case "open_plan":
			h.OpenPlan, err = r.bool()
		default:
			err = r.skip()
		}
		return err
	})
	return h, err
}

func decodePlan(r *mpReader) (Plan, error) {
	var p Plan
	err := decodeFields(r, func(key []byte) (err error) {
		switch string(key) {
		case "version":
			p.Version, err = r.uint32()
		case "items":
			p.Items, err = r.count(maxCount)
		case "fds":
			p.FDs, err = r.count(maxCount)
		case "open":
			p.Open, err = r.bool()
		default:
			err = r.skip()
		}
		return err
	})
	return p, err
}

func decodeReason(r *mpReader) (string, error) {
	var s string
	err := decodeFields(r, func(key []byte) (err error) {
		if string(key) == "reason" {
			s, err = r.str()
			return err
		}
		return r.skip()
	})
	return s, err
}

func decodeBatch(r *mpReader, nfds int) (batchMsg, error) {
	var b batchMsg
	seen := false
	err := decodeFields(r, func(key []byte) error {
		if string(key) != "items" {
			return r.skip()
		}
		if seen {
			return fmt.Errorf("repeated")
		}
		seen = true
		n, err := r.arrayLen()
		if err != nil {
			return err
		}
		b.items = make([]wireItem, 0, n) // arrayLen bounded n by the bytes left
		for i := range n {
			it, err := decodeItem(r)
			if err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
			b.items = append(b.items, it)
		}
		return nil
	})
	if err != nil {
		return batchMsg{}, err
	}
	total := 0
	for _, it := range b.items {
		total += it.nfiles
		if total > nfds {
			break
		}
	}
	if total != nfds {
		return batchMsg{}, fmt.Errorf("items account for %d descriptors, %d arrived", total, nfds)
	}
	return b, nil
}

func decodeItem(r *mpReader) (wireItem, error) {
	var it wireItem
	err := decodeFields(r, func(key []byte) (err error) {
		switch string(key) {
		case "env":
			return decodeFields(r, func(key []byte) (err error) {
				switch string(key) {
				case "kind":
					var k string
					k, err = r.str()
					it.env.Kind = state.Kind(k)
				case "v":
					it.env.Version, err = r.uint32()
				case "payload":
					it.env.Payload, err = r.bin()
				default:
					err = r.skip()
				}
				return err
			})
		case "nfiles":
			it.nfiles, err = r.count(MaxFDsPerFrame)
		default:
			err = r.skip()
		}
		return err
	})
	if err == nil && it.env.Kind == "" {
		err = fmt.Errorf("envelope without a kind")
	}
	return it, err
}
