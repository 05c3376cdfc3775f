package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mediad/mediad/ingest/flv"
)

// An HTTP-FLV viewer (-flv) GETs /APP/KEY.flv and reads the FLV stream.
// Its join figures are the time from the request to the first video tag
// (first part) and to the first keyframe after the video sequence header
// (first decodable frame). Its gaps are between successive video tags,
// and its stall is a gap minus the timestamp difference of the two tags:
// the wait beyond the media's own pace. A dropped stream is an error of
// kind flv_*; the viewer connects again after a backoff.
type flvViewer struct {
	cfg   *runConfig
	m     *meter
	u     *url.URL
	stop  context.Context
	leave bool

	client *http.Client

	joinStart      time.Time
	firstPart      bool
	firstDecodable bool
	lastErr        error

	sawConfig bool
	lastVideo time.Time
	lastTS    uint32
	haveLast  bool
}

func newFLVViewer(cfg *runConfig, key string, m *meter, stop context.Context) *flvViewer {
	u := *cfg.base
	u.Path = cfg.base.JoinPath(key).Path + ".flv"
	return &flvViewer{cfg: cfg, m: m, u: &u, stop: stop, leave: cfg.leaveAfterJoin, client: newHTTPClient(m)}
}

func (v *flvViewer) run() error {
	defer v.client.CloseIdleConnections()
	v.joinStart = time.Now()
	fails := 0
	for v.stop.Err() == nil {
		done, err := v.stream()
		if done || v.stop.Err() != nil {
			break
		}
		v.lastErr = err
		fails++
		t := time.NewTimer(backoff(fails))
		select {
		case <-t.C:
		case <-v.stop.Done():
		}
		t.Stop()
	}
	if v.firstPart {
		return nil
	}
	if v.lastErr != nil {
		return fmt.Errorf("no video received; last error: %w", v.lastErr)
	}
	return errors.New("no video received")
}

// stream reads one HTTP-FLV response until it ends. done says the viewer
// is finished (it left after joining, or the broadcast ended).
func (v *flvViewer) stream() (done bool, err error) {
	req, err := http.NewRequestWithContext(v.stop, http.MethodGet, v.u.String(), nil)
	if err != nil {
		return true, err
	}
	v.m.count(func(t *tally) { t.FLV++ })
	resp, err := v.client.Do(req)
	if err != nil {
		if v.stop.Err() == nil {
			v.m.countError("flv_" + classify(err))
		}
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		v.m.countError("flv_http_" + strconv.Itoa(resp.StatusCode))
		return false, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	// A new connection starts over with its own sequence headers.
	v.sawConfig = false
	body := &countingReader{r: resp.Body}
	defer func() { v.m.count(func(t *tally) { t.Bytes += body.n }) }()
	r, err := flv.NewReader(bufio.NewReaderSize(body, 32<<10))
	if err != nil {
		return false, v.fail(err)
	}
	for {
		tag, err := r.Next()
		if errors.Is(err, io.EOF) {
			// The server ended the stream cleanly: the broadcast is over.
			return true, nil
		}
		if err != nil {
			return false, v.fail(err)
		}
		if tag.Type != flv.TagVideo {
			continue
		}
		now := time.Now()
		v.m.count(func(t *tally) { t.FramesReceived++ })
		if flv.IsSequenceHeader(flv.TagVideo, tag.Data) {
			v.sawConfig = true
			continue
		}
		if v.haveLast {
			gap := now.Sub(v.lastVideo)
			v.m.gap(gap)
			v.m.stall(gap - time.Duration(int32(tag.Timestamp-v.lastTS))*time.Millisecond)
		}
		v.lastVideo, v.lastTS, v.haveLast = now, tag.Timestamp, true
		if v.firstDecodable {
			continue
		}
		j := joinSample{firstPart: -1, startLatency: -1}
		if !v.firstPart {
			v.firstPart = true
			j.firstPart = now.Sub(v.joinStart)
		}
		if v.sawConfig && flv.IsVideoKeyframe(tag.Data) {
			v.firstDecodable = true
			j.decodable = true
			j.firstDecodable = now.Sub(v.joinStart)
		}
		if j.firstPart >= 0 || j.decodable {
			v.m.joined(j)
		}
		if v.leave && v.firstDecodable {
			return true, nil
		}
	}
}

func (v *flvViewer) fail(err error) error {
	if v.stop.Err() == nil {
		if errors.Is(err, flv.ErrFormat) {
			v.m.countError("flv_parse")
		} else {
			v.m.countError("flv_" + classify(err))
		}
	}
	return err
}

type countingReader struct {
	r io.Reader
	n uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	return n, err
}
