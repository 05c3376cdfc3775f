//go:build faultinject

package main

import "os"

// setFaultEnv passes a fault to the new process through its environment
// (read by handoff.Fault) and returns the function that takes it back, so
// the next upgrade starts clean.
func setFaultEnv(fault string) func() {
	if fault == "" {
		return func() {}
	}
	old, had := os.LookupEnv("MEDIAD_FAULT")
	os.Setenv("MEDIAD_FAULT", fault)
	return func() {
		if had {
			os.Setenv("MEDIAD_FAULT", old)
		} else {
			os.Unsetenv("MEDIAD_FAULT")
		}
	}
}
