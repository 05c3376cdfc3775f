//go:build !faultinject

package main

// setFaultEnv injects nothing in a production build.
func setFaultEnv(string) func() { return func() {} }
