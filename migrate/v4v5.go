package migrate

import "fmt"

// Version 5 puts mediad inside a pipeline: one kind appears, state.KindRelay,
// a push relay's connection to a downstream server, and the process
// envelope gains the webhook outbox ("outbox"), the notifications not yet
// delivered.
//
// Up adds nothing: a version-4 process had no relays and no outbox, and an
// absent outbox is an empty one. It removes the keys version 5 gives a
// meaning to (a conn's "pending", a process's "outbox", a stream's "query"
// and "publisher_addr"), which no version-4 build writes: a version-4
// payload that carried one anyway must not come out as a publish waiting
// for a webhook, or a notification to send.
//
// Down cannot make either disappear without losing something, so it
// refuses rather than guess. A relay has no version-4 form (see
// introduced): a build without relays would have to drop the downstream's
// connection, so a downgrade below 5 is refused while a relay is connected
// (remove the push targets with a reload first). A pending notification
// would never be delivered by a build without webhooks, which breaks the
// at-least-once promise: the downgrade is refused until the outbox is
// empty. An empty outbox is dropped. A connection whose publish or play
// waits for its webhook's answer (session "pending") would wait forever in
// a build that does not know it asked: refused too, for the moment it
// takes the receiver to answer. A stream's query and publisher address,
// kept for the webhooks, are dropped.

func downProcess5(m map[string]any) error {
	v, ok := m["outbox"]
	if !ok || v == nil {
		return nil
	}
	box, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("outbox is %T, not a map", v)
	}
	if pending, _ := box["pending"].([]any); len(pending) > 0 {
		return fmt.Errorf("%d webhook notifications are not delivered yet, and a version-4 build has no webhooks to send them: retry once they are", len(pending))
	}
	delete(m, "outbox")
	return nil
}

func downConn5(m map[string]any) error {
	if v, ok := m["pending"]; ok && v != nil {
		return fmt.Errorf("a publish or play is waiting for its webhook's answer, which a version-4 build would never give: retry in a moment")
	}
	delete(m, "pending")
	return nil
}

// dropStreamHookKeys is both directions of the step for a publisher: up
// removes what a v4 build never wrote, down what it cannot read.
func dropStreamHookKeys(m map[string]any) error {
	stream, err := submap(m, "stream")
	if err != nil {
		return err
	}
	delete(stream, "query")
	delete(stream, "publisher_addr")
	return nil
}

func upConn4(m map[string]any) error {
	delete(m, "pending")
	return nil
}

func upProcess4(m map[string]any) error {
	delete(m, "outbox")
	return nil
}
