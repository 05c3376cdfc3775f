package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{args: nil},
		{args: []string{"-url", "http://h:1/app/", "-n", "3", "-first", "2", "-viewers", "1", "-flv"}},
		{args: []string{"-url", "rtmp://h/live"}, wantErr: "want http://"},
		{args: []string{"-url", "http://h:1"}, wantErr: "no application"},
		{args: []string{"-n", "0"}, wantErr: "-n 0"},
		{args: []string{"-viewers", "0"}, wantErr: "-viewers 0"},
		{args: []string{"-first", "-1"}, wantErr: "-first"},
		{args: []string{"-duration", "0s"}, wantErr: "positive"},
		{args: []string{"-ramp", "-1s"}, wantErr: "negative"},
		{args: []string{"extra"}, wantErr: "unexpected argument"},
	}
	for _, tt := range tests {
		cfg, _, err := parseFlags(tt.args, &bytes.Buffer{})
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.args, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%q: error %v, want %q", tt.args, err, tt.wantErr)
		}
		_ = cfg
	}
	cfg, _, _ := parseFlags([]string{"-url", "http://h:1/app/"}, &bytes.Buffer{})
	if got := cfg.base.JoinPath("k", "index.m3u8").String(); got != "http://h:1/app/k/index.m3u8" {
		t.Errorf("playlist URL %s", got)
	}
}

func TestRunMainReport(t *testing.T) {
	f := newFakeOrigin(t)
	seed(f)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 7; ; i++ {
			select {
			case <-tick.C:
				f.add(i%5 == 4, time.Now())
			case <-stop:
				return
			}
		}
	}()
	var out, errOut bytes.Buffer
	code := runMain(context.Background(), []string{"-url", f.url(), "-key-prefix", "k", "-n", "2", "-viewers", "2",
		"-duration", "800ms", "-ramp", "0s", "-json"}, &out, &errOut)
	close(stop)
	<-done
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errOut.String(), out.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if rep.Kind != "final" || rep.Viewers.OK != 4 || len(rep.ViewerList) != 4 || rep.PartsReceived == 0 ||
		rep.ErrorsTotal != 0 || rep.Join.Decodable != 4 || rep.PartDelayMs.Count == 0 || rep.Connections > 8 {
		t.Errorf("report: %s", out.String())
	}
	if rep.ViewerList[3].Key != "k-1" || rep.ViewerList[3].Viewer != 1 {
		t.Errorf("viewer list %+v", rep.ViewerList[3])
	}
}
