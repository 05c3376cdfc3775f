package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/mediad/mediad/ingest"
)

// adminHandler serves the admin API. ready reports whether this process
// serves: a new process answers on the shared listener while it takes
// over, before it does.
func adminHandler(srv *ingest.Server, u *upgrader, started time.Time, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	// /readyz is 200 only while this process serves: not while it starts
	// or takes sessions over, not once it stops or has handed over.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
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
		writeJSON(w, http.StatusOK, map[string]any{
			"version":        buildVersion(),
			"ready":          ready(),
			"pid":            os.Getpid(),
			"started":        started.UTC(),
			"sessions":       srv.SessionCount(),
			"streams":        srv.Registry().List(),
			"upgrades":       u.History(),
			"upgrade_counts": u.Counts(),
		})
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
