package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/mediad/mediad/ingest"
)

// statusReply is what GET /api/status answers.
type statusReply struct {
	Version string `json:"version"`
	Ready   bool   `json:"ready"`
	PID     int    `json:"pid"`
	// Started is this process's start; ServiceStart the first process's,
	// Generation how many processes the service has run through upgrades.
	Started      time.Time     `json:"started"`
	ServiceStart time.Time     `json:"service_started"`
	Generation   uint64        `json:"generation"`
	Sessions     int           `json:"sessions"`
	Totals       ingest.Totals `json:"totals"`
	// GOPCacheBytes is what every stream's GOP cache holds, in all.
	GOPCacheBytes int64               `json:"gop_cache_bytes"`
	Streams       []ingest.StreamInfo `json:"streams"`
	Upgrades      []Verdict           `json:"upgrades"`
	UpgradeCounts map[string]uint64   `json:"upgrade_counts"`
}

// upgradesReply is what GET /api/upgrades answers.
type upgradesReply struct {
	PID      int       `json:"pid"`
	Upgrades []Verdict `json:"upgrades"`
}

// runStatusCommand is `mediad status`: a readable table of the streams and
// the last upgrades of the running mediad.
func runStatusCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mediad status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http", "127.0.0.1:8080", "admin address of the running mediad")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + *addr + "/api/status")
	if err != nil {
		fmt.Fprintln(stderr, "mediad status:", err)
		return 1
	}
	defer resp.Body.Close()
	var st statusReply
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		fmt.Fprintf(stderr, "mediad status: HTTP %d: %v\n", resp.StatusCode, err)
		return 1
	}
	printStatus(stdout, st, time.Now())
	return 0
}

func printStatus(w io.Writer, st statusReply, now time.Time) {
	state := "serving"
	if !st.Ready {
		state = "NOT READY"
	}
	fmt.Fprintf(w, "mediad %s  pid %d  %s  up %s (service up %s, process %d)  %d sessions\n",
		st.Version, st.PID, state, now.Sub(st.Started).Round(time.Second), now.Sub(st.ServiceStart).Round(time.Second), st.Generation, st.Sessions)
	fmt.Fprintf(w, "received %s  sent %s  upgrades: %d succeeded, %d failed, %d refused\n\n",
		humanBytes(st.Totals.BytesIn), humanBytes(st.Totals.BytesOut), st.UpgradeCounts["success"], st.UpgradeCounts["failed"], st.UpgradeCounts["refused"])
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tLIVE\tFOR\tPLAYERS\tKBIT/S\tVIDEO\tAUDIO\tKEYFRAMES\tRECEIVED\tENCODER")
	for _, s := range st.Streams {
		live, dur := "no", "-"
		if s.Live {
			live = "yes"
			dur = now.Sub(s.Started).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%d\t%.0f\t%d\t%d\t%d\t%s\t%s\n", s.App, s.Key, live, dur, s.Players, s.Stats.BitrateKbps,
			s.Stats.VideoFrames, s.Stats.AudioFrames, s.Stats.Keyframes, humanBytes(s.Stats.BytesIn), s.Stats.Encoder)
	}
	if len(st.Streams) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	tw.Flush()
	relays := 0
	for _, s := range st.Streams {
		relays += len(s.Relays)
	}
	if relays > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RELAY\tSTREAM\tSTATE\tSENT\tDROPS\tRECONNECTS\tLAST ERROR")
		for _, s := range st.Streams {
			for _, r := range s.Relays {
				fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%d\t%d\t%s\n", r.URL, s.App, s.Key, r.State, humanBytes(r.BytesOut), r.Drops, r.Reconnects, r.LastError)
			}
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "UPGRADE\tOUTCOME\tVERSIONS\tPIDS\tSESSIONS\tDURATION\tWORST STALL\tERROR")
	ups := st.Upgrades
	if len(ups) > 5 {
		ups = ups[len(ups)-5:]
	}
	for _, u := range ups {
		fmt.Fprintf(tw, "%s\t%s\t%s -> %s\t%d -> %d\t%d\t%.1f ms\t%.1f ms\t%s\n", u.Started.Local().Format("2006-01-02 15:04:05"), u.Outcome,
			u.OldVersion, u.NewVersion, u.OldPID, u.NewPID, u.SessionsMoved, u.DurationMS, u.WorstStallMS, u.Error)
	}
	if len(ups) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	tw.Flush()
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
