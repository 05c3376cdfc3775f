package hls

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/mediad/mediad/state"
)

// Errors of a playlist or file request, each with its HTTP status.
var (
	// ErrNotFound: no such file, or a part that will never exist.
	ErrNotFound = errors.New("no such segment or part")
	// ErrTooFarAhead: a blocking request past what the spec lets a client
	// ask for (RFC 8216bis §6.2.5.2): 400.
	ErrTooFarAhead = errors.New("requested segment or part is too far ahead of the live edge")
	// ErrTimeout: what was asked for did not come within three target
	// durations: 503.
	ErrTimeout = errors.New("requested segment or part did not become available in time")
	// ErrEnded: the broadcast is over.
	ErrEnded = errors.New("the broadcast has ended")
	// ErrStarting: no segment is complete yet.
	ErrStarting = errors.New("the stream has no complete segment yet")
)

// Request is a playlist request's delivery directives.
type Request struct {
	MSN, Part       uint64
	HasMSN, HasPart bool
}

// advancePartLimit is how many parts past the last one a client may ask
// for (RFC 8216bis §6.2.5.2: three).
const advancePartLimit = 3

// Playlist returns the media playlist once it satisfies req, blocking as
// the spec's delivery directives say. moved is set when the stream has
// moved to another process meanwhile: the playlist is what this one last
// had, and the caller should close the connection so that the client's
// next request reaches the new process.
func (m *Muxer) Playlist(ctx context.Context, req Request) (b []byte, moved bool, err error) {
	deadline := time.NewTimer(3 * m.targetDuration())
	defer deadline.Stop()
	for {
		m.mu.Lock()
		if err := m.unsupportedErr(); err != nil {
			m.mu.Unlock()
			return nil, false, err
		}
		// Over, or gone elsewhere: nothing more will come here, so what
		// there is answers every request.
		ready, err := m.ended || m.detached, error(nil)
		if !ready {
			ready, err = m.satisfiedLocked(req)
		}
		if err != nil {
			m.mu.Unlock()
			return nil, false, err
		}
		if ready {
			b, err := m.marshalLocked()
			moved := m.detached
			m.mu.Unlock()
			return b, moved, err
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return nil, false, ErrTimeout
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// satisfiedLocked says whether the playlist holds what req waits for. A
// part index past a complete segment's last part names a part of the next
// segment (RFC 8216bis §6.2.5.2), so the request is moved forward until it
// lands on the live segment or before it.
func (m *Muxer) satisfiedLocked(req Request) (bool, error) {
	segs := m.st.Segments
	closed := 0
	for _, s := range segs {
		if s.Closed {
			closed++
		}
	}
	if closed == 0 {
		return false, nil
	}
	if !req.HasMSN || req.MSN < segs[0].MSN {
		return true, nil
	}
	for _, s := range segs {
		if s.MSN != req.MSN {
			continue
		}
		parts := uint64(len(s.Parts))
		switch {
		case !req.HasPart:
			return s.Closed, nil
		case req.Part < parts:
			return true, nil
		case !s.Closed:
			if req.Part >= parts+advancePartLimit {
				return false, ErrTooFarAhead
			}
			return false, nil
		}
		req.MSN, req.Part = req.MSN+1, req.Part-parts
	}
	// Past every segment listed: the next one may be asked for, and its
	// first parts.
	next := segs[len(segs)-1].MSN + 1
	if req.MSN > next || req.MSN == next && req.HasPart && req.Part >= advancePartLimit {
		return false, ErrTooFarAhead
	}
	return false, nil
}

// targetDuration is EXT-X-TARGETDURATION before any segment is complete.
func (m *Muxer) targetDuration() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return time.Duration(m.targetSecondsLocked()) * time.Second
}

func (m *Muxer) targetSecondsLocked() int {
	t := int(math.Ceil(m.cfg.SegmentTarget.Seconds()))
	for _, s := range m.st.Segments {
		if d := int(math.Round(float64(segDuration(s)) / 1000)); d > t {
			t = d
		}
	}
	return t
}

func segDuration(s state.HLSSegment) int64 {
	var d int64
	for _, p := range s.Parts {
		d += p.DurationMS
	}
	return d
}

func ms(d int64) time.Duration { return time.Duration(d) * time.Millisecond }

func segURI(msn uint64) string { return "s" + strconv.FormatUint(msn, 10) + ".m4s" }

func partURI(msn uint64, i int) string {
	return "s" + strconv.FormatUint(msn, 10) + "." + strconv.Itoa(i) + ".m4s"
}

// marshalLocked is the playlist as it stands. Every viewer of a stream
// asks for the same one after each part, so it is built once per change
// (signalLocked drops it) and shared: callers must not modify it.
func (m *Muxer) marshalLocked() ([]byte, error) {
	if m.playlist == nil {
		m.playlist, m.playlistErr = m.buildLocked()
	}
	return m.playlist, m.playlistErr
}

func (m *Muxer) buildLocked() ([]byte, error) {
	target := m.targetSecondsLocked()
	holdBack := 5 * m.cfg.PartTarget
	pl := playlist.Media{
		Version:        9,
		TargetDuration: target,
		ServerControl:  &playlist.MediaServerControl{CanBlockReload: true, PartHoldBack: &holdBack},
		PartInf:        &playlist.MediaPartInf{PartTarget: m.cfg.PartTarget},
		Endlist:        m.ended,
	}
	// Parts are listed for the segments within three target durations of
	// the live edge, as the spec advises; older ones as whole segments.
	recent := int64(3 * target * 1000)
	var fromEnd int64
	partsFrom := len(m.st.Segments)
	for i := len(m.st.Segments) - 1; i >= 0; i-- {
		fromEnd += segDuration(m.st.Segments[i])
		partsFrom = i
		if fromEnd > recent {
			break
		}
	}
	for i, s := range m.st.Segments {
		if i == 0 {
			pl.MediaSequence = int(s.MSN)
			pl.Map = &playlist.MediaMap{URI: "init" + strconv.FormatUint(uint64(s.Init), 10) + ".mp4"}
		}
		var parts []*playlist.MediaPart
		if i >= partsFrom {
			for k, p := range s.Parts {
				parts = append(parts, &playlist.MediaPart{Duration: ms(p.DurationMS), URI: partURI(s.MSN, k), Independent: p.Independent})
			}
		}
		if !s.Closed {
			pl.Parts = parts
			if !m.ended {
				pl.PreloadHint = &playlist.MediaPreloadHint{URI: partURI(s.MSN, len(s.Parts))}
			}
			continue
		}
		start := time.Unix(0, s.Start).UTC()
		pl.Segments = append(pl.Segments, &playlist.MediaSegment{
			Duration: ms(segDuration(s)), URI: segURI(s.MSN), DateTime: &start,
			Discontinuity: s.Discontinuity && i > 0, Parts: parts,
		})
	}
	if len(pl.Segments) == 0 {
		return nil, ErrStarting
	}
	b, err := pl.Marshal()
	if err != nil {
		return nil, fmt.Errorf("playlist: %w", err)
	}
	return b, nil
}
