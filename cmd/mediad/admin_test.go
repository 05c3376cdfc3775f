package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mediad/mediad/ingest"
)

func TestReadyz(t *testing.T) {
	srv := ingest.NewServer(ingest.Config{})
	defer srv.Close()
	var ready atomic.Bool
	h := adminHandler(srv, newUpgrader(nil, srv, zerolog.Nop(), time.Second), time.Now(), ready.Load)
	for _, tc := range []struct {
		ready bool
		path  string
		want  int
	}{
		{false, "/readyz", http.StatusServiceUnavailable},
		{true, "/readyz", http.StatusOK},
		{false, "/healthz", http.StatusOK},
		{false, "/api/status", http.StatusOK},
	} {
		ready.Store(tc.ready)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("GET %s with ready=%v: %d, want %d", tc.path, tc.ready, rec.Code, tc.want)
		}
	}
}
