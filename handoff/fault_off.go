//go:build !faultinject

package handoff

// Fault is the hook for injected faults. Without the faultinject build
// tag it does nothing, and the compiler inlines it away.
func Fault(string) error { return nil }

// ArmChild arms nothing without the faultinject build tag.
func ArmChild(string) (disarm func()) { return func() {} }
