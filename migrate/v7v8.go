package migrate

// Version 8 adds three kinds: state.KindBase, a publisher's or player's
// static part, sent with its connection's descriptor before the park while
// the session still runs, and state.KindPublisherTail and
// state.KindPlayerTail, what such a session exports at the park: a
// publisher's or player's payload, unchanged in form, with the static
// fields left empty for the new process to fill from the base. No existing
// payload changes, so the step from 7 has no functions.
//
// Up has nothing to do: a version-7 build sent neither bases nor tails,
// and its kinds are version-8 payloads as they are.
//
// Down has nothing to do for the existing kinds. A base or a tail has no
// version-7 form (see introduced), and none has to go down: the old
// process sends bases, and so tails, only to a build that reads version 8
// or later; to an older one every session goes whole at the park, as
// before version 8.
