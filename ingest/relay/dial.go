package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/mediad/mediad/ingest/chunk"
)

// Defaults for Options.
const (
	DefaultChunkSize = 4096
	DefaultFlashVer  = "FMLE/3.0 (compatible; mediad)"
)

// Options tune Dial. Zero values mean the defaults.
type Options struct {
	// ChunkSize is the outbound chunk size announced before connect. Zero
	// means DefaultChunkSize.
	ChunkSize uint32
	// FlashVer is sent as connect's flashVer. Empty means DefaultFlashVer.
	FlashVer string
	// TLSConfig is the base configuration for rtmps (tests set RootCAs).
	// Its ServerName is always replaced by the endpoint's. Nil means the
	// system roots and Go's defaults.
	TLSConfig *tls.Config
	// Dialer makes the TCP connection. Nil means a zero net.Dialer.
	Dialer *net.Dialer
}

// Conn is a connection on which handshake, connect,
// releaseStream/FCPublish, createStream and publish have completed and the
// server answered NetStream.Publish.Start. Everything read so far has been
// fed to Reader (so a partial chunk that arrived after the status stays in
// Reader's state); Writer has the announced chunk size. NetConn has no
// deadline set.
type Conn struct {
	NetConn   net.Conn
	Reader    *chunk.Reader
	Writer    *chunk.Writer
	StreamID  uint32 // message stream id from createStream; media and @setDataFrame go on it
	AckWindow uint32 // window acknowledgement size the server announced (0 if none)
	LastAck   uint64 // bytes read that we have acknowledged
}

// Close closes the network connection.
func (c *Conn) Close() error { return c.NetConn.Close() }

// RefusedError is a server's explicit no: an _error result, or an onStatus
// at level "error" such as NetStream.Publish.BadName or
// NetStream.Publish.Unauthorized. Retrying at once will usually get the
// same answer.
type RefusedError struct {
	Step        string // "connect", "createStream" or "publish"
	Code        string // the status code, e.g. NetStream.Publish.BadName; may be empty
	Description string // the server's description; may be empty
}

func (e *RefusedError) Error() string {
	code := e.Code
	if code == "" {
		code = "no status code"
	}
	if e.Description == "" {
		return fmt.Sprintf("%s refused: %s", e.Step, code)
	}
	return fmt.Sprintf("%s refused: %s (%s)", e.Step, code, e.Description)
}

// longAgo is a deadline in the past: setting it interrupts blocked I/O.
var longAgo = time.Unix(1, 0)

// Dial connects to ep (TCP, or TLS with the server name verified for
// rtmps) and completes the publish exchange before ctx ends. On any failure
// it closes what it opened and returns an error that says which step
// failed; a refusal by the server is a *RefusedError, and when ctx ended
// first the error wraps ctx.Err(). Give ctx a deadline: a server that
// accepts the connection and says nothing is otherwise waited for until ctx
// is cancelled.
func Dial(ctx context.Context, ep Endpoint, opts Options) (*Conn, error) {
	if ep.Addr == "" {
		return nil, errors.New("relay: dial: endpoint has no address")
	}
	d := opts.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	raw, err := d.DialContext(ctx, "tcp", ep.Addr)
	if err != nil {
		return nil, fmt.Errorf("relay: %s: dial: %w", ep.TCURL, err)
	}
	return establish(ctx, raw, ep, opts)
}

// establish runs TLS (for rtmps) and the RTMP exchange on raw, a fresh
// connection to ep, and closes raw on failure. It is Dial minus the dialing,
// so tests and fuzzing can run it over a pipe.
func establish(ctx context.Context, raw net.Conn, ep Endpoint, opts Options) (*Conn, error) {
	fail := func(step string, err error) (*Conn, error) {
		// Closing the TCP connection, not a TLS one over it, so a peer that
		// reads nothing cannot hold us in close_notify.
		raw.Close()
		var refused *RefusedError
		if errors.As(err, &refused) {
			// The refusal names its own step.
			return nil, fmt.Errorf("relay: %s: %w", ep.TCURL, err)
		}
		err = ctxCause(ctx, err)
		if strings.HasPrefix(err.Error(), step+": ") {
			// The handshake package names itself.
			return nil, fmt.Errorf("relay: %s: %w", ep.TCURL, err)
		}
		return nil, fmt.Errorf("relay: %s: %s: %w", ep.TCURL, step, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := raw.SetDeadline(dl); err != nil {
			return fail("set deadline", err)
		}
	}
	// Cancellation without a deadline still has to interrupt a blocked
	// read or write.
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(longAgo) })

	nc := raw
	if ep.TLS {
		cfg := opts.TLSConfig.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		cfg.ServerName = ep.ServerName
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			stop()
			return fail("tls handshake", err)
		}
		nc = tc
	}

	x := newExchange(nc, ep, opts)
	if err := x.run(); err != nil {
		stop()
		return fail(x.step.String(), err)
	}
	if !stop() {
		// The cancellation has fired, or is firing: its deadline may land
		// after any clearing of ours.
		return fail("publish", ctx.Err())
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return fail("clear deadline", err)
	}
	return x.conn(), nil
}

// ctxCause replaces a deadline error caused by ctx (its deadline, or the
// past deadline set on cancellation) with one that wraps ctx.Err(), so that
// callers can tell "ctx ended" from "the network failed".
func ctxCause(ctx context.Context, err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if ctx.Err() == nil {
		// The socket's deadline and ctx's timer expire at the same instant
		// but fire separately: wait for ctx once the instant has passed.
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			<-ctx.Done()
		}
	}
	if ctx.Err() == nil {
		return err
	}
	return fmt.Errorf("%w (%v)", ctx.Err(), err)
}
