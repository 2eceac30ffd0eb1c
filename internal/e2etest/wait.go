package e2etest

import (
	"errors"
	"testing"
	"time"
)

// Eventually polls cond every 20ms until it returns "" or timeout passes,
// then fails the test with what and cond's last reason.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	Poll(t, timeout, 20*time.Millisecond, what, func() error {
		if why := cond(); why != "" {
			return errors.New(why)
		}
		return nil
	})
}

// Poll calls cond every interval until it returns nil or timeout passes,
// then fails the test with what and cond's last error.
func Poll(t testing.TB, timeout, interval time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		<-tick.C
	}
}

// Consistently calls cond every 20ms for d and fails the test with what
// and cond's reason as soon as it returns one: for checking that
// something asynchronous does not happen.
func Consistently(t testing.TB, d time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if why := cond(); why != "" {
			t.Fatalf("%s: %s", what, why)
		}
		if time.Now().After(deadline) {
			return
		}
		<-tick.C
	}
}
