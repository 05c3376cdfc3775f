package webhook

import (
	"container/list"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Hooks calls the configured webhooks. Its methods are safe for concurrent
// use. A Hooks made from a Config without URLs is the "no webhooks" form:
// it starts no goroutine, its decisions allow and Notify returns at once.
type Hooks struct {
	cfg    Config
	urls   map[Event]string
	log    zerolog.Logger
	client *http.Client
	// transport is the client's transport when this package made it, to
	// close its idle connections on Close.
	transport *http.Transport

	// backoffUnit and backoffMax shape the retry delays: backoffUnit
	// doubling per failed attempt, capped at backoffMax. Tests shorten
	// them.
	backoffUnit, backoffMax time.Duration

	ctx       context.Context // cancelled by Close, ends attempts and senders
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	allowed, refused, decideErrs atomic.Uint64

	// mu guards the outbox below. It is held only to change or copy it,
	// never across a request, so Notify and Export never wait on a
	// receiver.
	mu sync.Mutex
	// dests has one entry per distinct notification URL, fixed by New;
	// each has its own lanes and senders, so a receiver that hangs holds
	// up nothing but itself.
	dests map[string]*dest
	// all holds every pending *item in arrival order: Front is the oldest,
	// the first to go when the outbox is full.
	all      list.List
	byID     map[string]*item
	started  bool
	closed   bool
	paused   bool
	inflight int
	// idle is closed when inflight falls to zero; nil while it is zero.
	idle chan struct{}

	delivered, retries, dropped uint64
	// Overflow drops are logged once per overflowEvery with their count,
	// since a dead receiver under load would otherwise log each one.
	overflowLogged time.Time
	overflowQuiet  uint64
}

const overflowEvery = 10 * time.Second

// New makes a Hooks from cfg. Nothing is sent before Start.
func New(cfg Config) *Hooks {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = DefaultRetryFor
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.Senders <= 0 {
		cfg.Senders = DefaultSenders
	}
	h := &Hooks{
		cfg:         cfg,
		urls:        make(map[Event]string),
		log:         cfg.Log,
		backoffUnit: time.Second,
		backoffMax:  30 * time.Second,
		dests:       make(map[string]*dest),
		byID:        make(map[string]*item),
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	for ev, u := range cfg.URLs {
		switch {
		case u == "":
			continue
		case !ev.decision() && !ev.notification():
			h.log.Warn().Str("event", string(ev)).Msg("webhook: unknown event, ignored")
			continue
		}
		h.urls[ev] = u
		if ev.notification() && h.dests[u] == nil {
			h.dests[u] = &dest{url: u, lanes: make(map[string]*lane), kick: make(chan struct{}, 1)}
		}
	}
	// A caller's client is copied, not changed: it may serve others that
	// do follow redirects.
	if cfg.Client != nil {
		c := *cfg.Client
		h.client = &c
	} else {
		h.transport = http.DefaultTransport.(*http.Transport).Clone()
		h.transport.MaxIdleConnsPerHost = 32
		h.client = &http.Client{Transport: h.transport}
	}
	// A 3xx is an answer like any other non-2xx: following it would let a
	// receiver send us anywhere, or round in circles until the timeout.
	h.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return h
}

// Start starts the senders: Senders goroutines per notification URL, all
// stopped by Close. Notifications queued or restored before Start wait for
// it. Start after Close does nothing.
func (h *Hooks) Start() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started || h.closed {
		return
	}
	h.started = true
	for _, d := range h.dests {
		for range h.cfg.Senders {
			h.wg.Add(1)
			go h.sender(d)
		}
		d.signal()
	}
}

// Close stops the senders, interrupting attempts in flight, and waits for
// them. It keeps the outbox, which Export still returns, and logs how many
// notifications were pending: as left to the next process if Close finds
// the Hooks paused, as undelivered otherwise. Close is idempotent.
func (h *Hooks) Close() {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		h.cancel()
		h.wg.Wait()
		if h.transport != nil {
			h.transport.CloseIdleConnections()
		}
		h.mu.Lock()
		n, paused := h.all.Len(), h.paused
		h.mu.Unlock()
		switch {
		case n == 0:
		case paused:
			h.log.Info().Int("pending", n).Msg("webhook: stopped while paused; pending notifications left to the next process")
		default:
			h.log.Warn().Int("pending", n).Msg("webhook: stopped with notifications not delivered")
		}
	})
}

// Decide asks ev's receiver whether s may go ahead. A 2xx answer allows;
// any other answer refuses, and so does no answer within Timeout unless
// FailOpen is set; an event without a URL allows. The error says why the
// answer was not a 2xx, for the log: a *StatusError for a refusing
// answer, the transport's error otherwise. With FailOpen it can come with
// allowed true. A cancelled ctx refuses, FailOpen or not: the caller no
// longer wants the session.
func (h *Hooks) Decide(ctx context.Context, ev Event, s Subject) (allowed bool, err error) {
	if !ev.decision() {
		return false, fmt.Errorf("webhook %s: %w", ev, ErrNotDecision)
	}
	u := h.urls[ev]
	if u == "" {
		return true, nil
	}
	id := rand.Text()
	body, err := h.body(ev, id, s, time.Now(), nil)
	if err != nil {
		h.decideErrs.Add(1)
		return false, err
	}
	rctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	req, err := h.request(rctx, u, id, body)
	if err != nil {
		h.decideErrs.Add(1)
		return false, fmt.Errorf("webhook %s: %w", ev, err)
	}
	status, err := h.send(req)
	switch {
	case err == nil && ok(status):
		h.allowed.Add(1)
		return true, nil
	case err == nil:
		h.refused.Add(1)
		return false, &StatusError{Event: ev, Status: status}
	case ctx.Err() != nil:
		h.decideErrs.Add(1)
		return false, fmt.Errorf("webhook %s: caller gave up: %w", ev, err)
	default:
		h.decideErrs.Add(1)
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %v: %w", h.cfg.Timeout, err)
		}
		return h.cfg.FailOpen, fmt.Errorf("webhook %s (fail open: %t): %w", ev, h.cfg.FailOpen, err)
	}
}

// Stats are the counters for /metrics. Pending includes the notifications
// in flight.
type Stats struct {
	Pending, InFlight           int
	Delivered, Retries, Dropped uint64
	// Decisions by outcome: a 2xx answer, any other answer, no answer
	// (whatever FailOpen then decided).
	DecideAllowed, DecideRefused, DecideErrors uint64
}

// Stats returns the counters, including those restored from the previous
// processes.
func (h *Hooks) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{
		Pending: h.all.Len(), InFlight: h.inflight,
		Delivered: h.delivered, Retries: h.retries, Dropped: h.dropped,
		DecideAllowed: h.allowed.Load(), DecideRefused: h.refused.Load(), DecideErrors: h.decideErrs.Load(),
	}
}
