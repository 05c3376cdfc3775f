package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// drainRequestTimeout bounds the POST to /api/drain. As a preStop hook the
// command spends the pod's grace period: a wedged admin endpoint must not
// eat into the time the graceful stop that follows needs.
const drainRequestTimeout = 5 * time.Second

// drainReply is what POST /api/drain answers.
type drainReply struct {
	Draining bool `json:"draining"`
	Sessions int  `json:"sessions"`
}

// drainFlags defines the flags of `mediad drain`. The deployment test parses
// the Kubernetes preStop hook with it, so the hook can only use flags that
// exist.
func drainFlags(stderr io.Writer) (fs *flag.FlagSet, addr *string, wait *time.Duration) {
	fs = flag.NewFlagSet("mediad drain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr = fs.String("http", "127.0.0.1:8080", "admin address of the running mediad")
	wait = fs.Duration("wait", 10*time.Second, "after draining, wait this long for load balancers to stop sending new clients (0: return at once)")
	return fs, addr, wait
}

// runDrainCommand is `mediad drain`: it marks the running mediad as draining
// (its /readyz turns 503, so it leaves load-balancer rotation, while every
// connection, old or new, is still served) and then waits --wait, because
// endpoints and kube-proxy rules are updated asynchronously and new clients
// keep arriving for a while. It is meant as a Kubernetes preStop hook: when
// it returns, the kubelet sends SIGTERM and the graceful stop begins.
func runDrainCommand(args []string, stdout, stderr io.Writer) int {
	fs, addr, wait := drainFlags(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mediad drain: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *wait < 0 {
		fmt.Fprintf(stderr, "mediad drain: -wait must not be negative, got %s\n", *wait)
		return 2
	}
	reply, err := postDrain(*addr)
	if err != nil {
		fmt.Fprintln(stderr, "mediad drain:", err)
		return 1
	}
	fmt.Fprintf(stdout, "mediad draining: not ready any more, %d sessions still served; waiting %s for load balancers\n", reply.Sessions, *wait)
	time.Sleep(*wait)
	return 0
}

// postDrain asks the mediad whose admin endpoint listens on addr to drain.
func postDrain(addr string) (drainReply, error) {
	u := url.URL{Scheme: "http", Host: addr, Path: "/api/drain"}
	client := &http.Client{Timeout: drainRequestTimeout}
	resp, err := client.Post(u.String(), "application/json", nil)
	if err != nil {
		return drainReply{}, fmt.Errorf("cannot reach the admin endpoint of mediad at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return drainReply{}, fmt.Errorf("reading the answer of %s: %w", u.String(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return drainReply{}, fmt.Errorf("%s answered %s: %s", u.String(), resp.Status, strings.TrimSpace(string(body)))
	}
	var r drainReply
	if err := json.Unmarshal(body, &r); err != nil {
		return drainReply{}, fmt.Errorf("%s answered %s with an unexpected body: %w", u.String(), resp.Status, err)
	}
	if !r.Draining {
		return drainReply{}, fmt.Errorf("%s answered, but mediad does not report draining: %s", u.String(), strings.TrimSpace(string(body)))
	}
	return r, nil
}
