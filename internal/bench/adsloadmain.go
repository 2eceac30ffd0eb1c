package bench

import (
	"context"
	"flag"
	"io"
	"time"

	"github.com/gitmesh/gitmesh/internal/bench/adsload"
)

// ADSLoadMain runs the ADS load client with command-line args (the
// harness's own flags for it), after raising the open-file limit.
func ADSLoadMain(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("adsload", flag.ContinueOnError)
	var cfg adsload.Config
	fs.StringVar(&cfg.XDSAddr, "xds", "", "the controller's ADS address")
	fs.IntVar(&cfg.N, "n", 100, "simulated proxies")
	fs.BoolVar(&cfg.Delta, "delta", false, "incremental xDS (default state of the world)")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", time.Minute, "deadline for every proxy's first snapshot")
	fs.DurationVar(&cfg.ConvergeTimeout, "converge-timeout", time.Minute, "deadline for a change to reach every proxy")
	fs.DurationVar(&cfg.Quiet, "quiet", 500*time.Millisecond, "quiet time before a change is reported")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := raiseNoFile(uint64(cfg.N)*2 + 1024); err != nil {
		return err
	}
	return adsload.Run(ctx, cfg, stdin, stdout)
}
