//go:build !faultinject

package handoff

import "testing"

// Without the tag an armed fault point does nothing.
func TestFaultIsInert(t *testing.T) {
	for _, action := range []string{"crash", "hang", "reject"} {
		for _, point := range FaultPoints {
			t.Setenv(FaultEnv, point+"="+action)
			if err := Fault(point); err != nil {
				t.Fatalf("%s=%s: %v", point, action, err)
			}
		}
	}
}
