package bench

import "context"

type dpEnv struct {
	gitmesh string
	tmp     string
	logf    func(string, ...any)
	quick   bool
}

func runDataPlane(ctx context.Context, env dpEnv) (*DataPlaneResult, error) { return nil, nil }
