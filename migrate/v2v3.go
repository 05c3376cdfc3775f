package migrate

// Version 3 adds one kind, state.KindProcess: the service's counters,
// histograms and upgrade history, sent once per handoff beside the
// sessions. No session changes, so the step from 2 has no functions and
// takes conn, publisher and player payloads across as they are.
//
// The process kind has no version-2 form: an older build would count from
// zero anyway, so there is nothing to translate it into. Convert refuses it
// below version 3 (see introduced); an old process offering v2 to a new one,
// or a new one negotiating v2 with an old one, simply sends no process
// envelope.
