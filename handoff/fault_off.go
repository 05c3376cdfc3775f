//go:build !faultinject

package handoff

// Fault is the hook for injected faults. Without the faultinject build
// tag it does nothing, and the compiler inlines it away.
func Fault(string) error { return nil }
