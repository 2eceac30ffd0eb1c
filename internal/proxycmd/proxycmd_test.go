package proxycmd

import (
	"errors"
	"io"
	"log/slog"
	"testing"
)

// TestFlagErrors checks that the command refuses what it cannot run with
// exit code 2, before it dials anything, in both of its shapes.
func TestFlagErrors(t *testing.T) {
	shapes := map[string]Options{
		"gitmesh-proxy": {Use: "gitmesh-proxy"},
		"gitmesh proxy": {Use: "proxy", Logger: func(w io.Writer) (*slog.Logger, error) {
			return slog.New(slog.NewTextHandler(w, nil)), nil
		}},
	}
	cases := []struct {
		name string
		args []string
	}{
		{"no id", []string{"--xds", "127.0.0.1:1"}},
		{"bad labels", []string{"--id", "a", "--labels", "novalue"}},
		{"inbound without app", []string{"--id", "a", "--inbound", "127.0.0.1:0"}},
		{"token without CA", []string{"--id", "a", "--join-token-file", "/nonexistent"}},
		{"CA without token", []string{"--id", "a", "--xds-ca-file", "/nonexistent"}},
	}
	for shape, o := range shapes {
		for _, c := range cases {
			t.Run(shape+"/"+c.name, func(t *testing.T) {
				t.Setenv("GITMESH_XDS_CA", "")
				cmd := New(o)
				cmd.SetOut(io.Discard)
				cmd.SetErr(io.Discard)
				cmd.SetArgs(c.args)
				err := cmd.ExecuteContext(t.Context())
				var ee *ExitError
				if !errors.As(err, &ee) || ee.Code != 2 {
					t.Fatalf("got %v; want exit code 2", err)
				}
			})
		}
	}
}

// TestOwnLogFlags checks that the command adds the log flags only when the
// binary does not provide a logger.
func TestOwnLogFlags(t *testing.T) {
	if New(Options{Use: "gitmesh-proxy"}).Flags().Lookup("log-level") == nil {
		t.Error("gitmesh-proxy has no --log-level")
	}
	withLogger := New(Options{Use: "proxy", Logger: func(io.Writer) (*slog.Logger, error) { return slog.Default(), nil }})
	if withLogger.Flags().Lookup("log-level") != nil {
		t.Error("proxy under gitmesh defines --log-level again")
	}
}
