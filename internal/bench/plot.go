package bench

func renderPlots(dir string, res *Results) error { return nil }
