package main

import (
	"fmt"
	"os"
	"testing"
)

// TestMain keeps the tests away from the developer's client configuration:
// HOME and XDG_CONFIG_HOME point into a temporary directory.
func TestMain(m *testing.M) {
	home, err := os.MkdirTemp("", "gitmesh-cli-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Setenv("HOME", home)
	os.Setenv("XDG_CONFIG_HOME", home+"/.config")
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}
