package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/mediad/mediad/ingest"
	"github.com/mediad/mediad/ingest/webhook"
)

// adminState is what the admin API reads and acts on.
type adminState struct {
	hooks    *webhook.Hooks
	srv      *ingest.Server
	upgrader *upgrader
	ledger   *ledger
	started  time.Time // this process's start
	// ready: this process serves and is not draining. A new process
	// answers on the shared listener while it takes over, before it does.
	ready func() bool
	// serving: this process serves, draining or not.
	serving func() bool
	// tookOver: a new process holds the old one's counters.
	tookOver func() bool
	// drain takes the process out of rotation.
	drain func()
}

// adminHandler serves the admin API.
func adminHandler(a adminState) http.Handler {
	srv, u, ready := a.srv, a.upgrader, a.ready
	mux := http.NewServeMux()
	// /readyz is 200 only while this process serves: not while it starts
	// or takes sessions over, not once it stops or has handed over.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			msg := "not ready"
			if a.serving() {
				msg = "draining"
			}
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /api/streams", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, srv.Registry().List())
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, _ *http.Request) {
		svcStart, gen := a.ledger.Start()
		writeJSON(w, http.StatusOK, statusReply{
			Version:       buildVersion(),
			Ready:         ready(),
			PID:           os.Getpid(),
			Started:       a.started.UTC(),
			ServiceStart:  svcStart.UTC(),
			Generation:    gen,
			Sessions:      srv.SessionCount(),
			Totals:        srv.Totals(),
			GOPCacheBytes: srv.Registry().GOPCacheBytes(),
			Streams:       srv.Registry().List(),
			Upgrades:      a.ledger.History(),
			UpgradeCounts: a.ledger.Counts(),
		})
	})
	// The upgrade history alone: what `mediad upgrade` asks the new
	// process for, every few milliseconds while its sessions catch up,
	// without the cost of listing every stream.
	mux.HandleFunc("GET /api/upgrades", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, upgradesReply{PID: os.Getpid(), Upgrades: a.ledger.History()})
	})
	// Profiles of the running server, for the operator (the admin listener
	// is loopback by default): go tool pprof http://ADDR/debug/pprof/profile
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	col := newCollector(srv, a.ledger, ready)
	col.hooks = a.hooks
	mux.Handle("GET /metrics", metricsHandler(col, a.tookOver))
	// POST /api/drain takes this process out of rotation before a stop:
	// /readyz fails from now on, so a load balancer sends newcomers
	// elsewhere, while every connection, and any that still arrives, is
	// served until SIGTERM stops them in order.
	mux.HandleFunc("POST /api/drain", func(w http.ResponseWriter, _ *http.Request) {
		a.drain()
		writeJSON(w, http.StatusOK, map[string]any{"draining": true, "sessions": srv.SessionCount()})
	})
	// POST /api/upgrade runs an upgrade and answers with its verdict once it
	// is known: 200 on success, 409 when refused, 500 when it failed and
	// rolled back.
	mux.HandleFunc("POST /api/upgrade", func(w http.ResponseWriter, r *http.Request) {
		v := u.Upgrade(r.URL.Query().Get("fault"))
		code := http.StatusOK
		switch v.Outcome {
		case "refused":
			code = http.StatusConflict
		case "failed":
			code = http.StatusInternalServerError
		}
		writeJSON(w, code, v)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
