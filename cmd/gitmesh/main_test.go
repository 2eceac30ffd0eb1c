package main

import (
	"fmt"
	"os"
	"testing"
)

// TestMain keeps the tests away from the developer's client configuration:
// XDG_CONFIG_HOME points into a temporary directory. HOME stays: the chart
// tests find helm under ~/.cache/gitmesh, and go's build cache is there.
func TestMain(m *testing.M) {
	home, err := os.MkdirTemp("", "gitmesh-cli-config-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Setenv("XDG_CONFIG_HOME", home+"/.config")
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}
