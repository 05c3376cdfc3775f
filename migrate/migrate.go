// Package migrate converts state envelopes between schema versions: the
// code_change of mediad (DESIGN.md §5). Each step v→v+1 has an up and a
// down function, pure and total; old schemas live here, never in state.
package migrate

import (
	"fmt"

	"github.com/mediad/mediad/state"
)

// Oldest is the oldest state version this build reads and writes.
const Oldest uint32 = 1

// Convert takes an envelope of any known version to version to, one step at
// a time. It fails, naming both versions, when either is unknown.
func Convert(e state.Envelope, to uint32) (state.Envelope, error) {
	if e.Version < Oldest || e.Version > state.Version {
		return state.Envelope{}, fmt.Errorf("migrate %s: no migration from v%d to v%d: this build knows v%d to v%d", e.Kind, e.Version, to, Oldest, state.Version)
	}
	if to < Oldest || to > state.Version {
		return state.Envelope{}, fmt.Errorf("migrate %s: no migration from v%d to v%d: this build knows v%d to v%d", e.Kind, e.Version, to, Oldest, state.Version)
	}
	// Version 1 is the only version so far: there is no step to take.
	return e, nil
}
