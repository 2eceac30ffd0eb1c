// Command gitmesh is the gitmesh CLI: the controller, the bundled proxy,
// the all-in-one local mesh (up), and the tools for people (validate,
// status). It holds wiring only; the logic lives in the packages it calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gitmesh/gitmesh/internal/proxycmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	os.Exit(exitCode(err))
}

// exitError carries a command's exit code. Code 2 always means "could not
// do what was asked"; other codes are documented per command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// exitCode maps a command error to the process exit code, printing it.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "error:", ee.err)
		}
		return ee.code
	}
	var pe *proxycmd.ExitError
	if errors.As(err, &pe) {
		if pe.Err != nil {
			fmt.Fprintln(os.Stderr, "error:", pe.Err)
		}
		return pe.Code
	}
	fmt.Fprintln(os.Stderr, "error:", err)
	return 2
}
