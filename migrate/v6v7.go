package migrate

// Version 7 adds one kind, state.KindHTTPConn: a viewer's keep-alive
// connection to the media listener, moved between two requests, with the
// head of a request that was waiting for its answer (a blocking playlist
// reload or a preload hint) to be read again in the new process. LL-HLS
// viewers keep their connection across an upgrade instead of reconnecting.
// No existing payload changes, so the step from 6 has no functions.
//
// Up has nothing to do: a version-6 build parked no HTTP connection, and
// the kinds it did park are version-7 payloads as they are.
//
// Down has nothing to do for the existing kinds either. An HTTP connection
// has no version-6 form (see introduced), and none has to go down: the
// old process parks HTTP connections only for a build that reads version 7
// or later; for an older one it answers and closes them itself, as before
// version 7, and the viewers reconnect to the new process.
