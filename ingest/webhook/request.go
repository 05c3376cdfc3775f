package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// maxAnswer is how much of an answer's body is read. Reading a small answer
// to its end lets the connection be reused; a longer one is cut off and its
// connection dropped, so a receiver that streams cannot hold a sender.
const maxAnswer = 64 << 10

// body is the JSON of one call: the event's own fields with the common ones
// over them, so that a field cannot pass for the subject or the event.
// encoding/json sorts map keys, so the bytes depend on the values only.
func (h *Hooks) body(ev Event, id string, s Subject, at time.Time, fields map[string]any) ([]byte, error) {
	m := make(map[string]any, len(fields)+9)
	for k, v := range fields {
		m[k] = v
	}
	m["event"] = string(ev)
	m["id"] = id
	m["app"] = s.App
	m["key"] = s.Key
	m["query"] = s.Query
	m["addr"] = s.Addr
	m["stream_id"] = s.StreamID
	m["server_id"] = h.cfg.ServerID
	m["time"] = Timestamp(at)
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("webhook %s: body: %w", ev, err)
	}
	return b, nil
}

func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (h *Hooks) request(ctx context.Context, url, id string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mediad")
	req.Header.Set("Idempotency-Key", id)
	if h.cfg.Secret != "" {
		req.Header.Set("X-Mediad-Signature", sign(h.cfg.Secret, body))
	}
	return req, nil
}

// send posts req and returns the answer's status; an error means no
// answer came.
func (h *Hooks) send(req *http.Request) (int, error) {
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, err
	}
	// The status is the answer; the body matters only for reusing the
	// connection, so an error reading it changes nothing.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	resp.Body.Close()
	return resp.StatusCode, nil
}

func ok(status int) bool { return status >= 200 && status < 300 }
