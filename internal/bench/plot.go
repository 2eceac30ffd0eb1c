package bench

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// renderPlots draws the PNGs docs/performance.md embeds into dir, for the
// parts res holds.
func renderPlots(dir string, res *Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	var draws []func(string) error
	if res.DataPlane != nil && len(res.DataPlane.Saturation) > 0 {
		draws = append(draws,
			func(d string) error { return plotDataPlaneRPS(d, res.DataPlane) },
			func(d string) error { return plotDataPlaneLatency(d, res.DataPlane) })
	}
	if len(res.Compiler) > 0 {
		draws = append(draws, func(d string) error { return plotCompiler(d, res.Compiler) })
	}
	if len(res.ControlPlane) > 0 {
		draws = append(draws, func(d string) error { return plotControlPlane(d, res.ControlPlane) })
	}
	for _, draw := range draws {
		if err := draw(dir); err != nil {
			return err
		}
	}
	return nil
}

var protoNames = []string{"http1", "h2c"}

// groupedBars draws one bar group per category with one bar per series.
func groupedBars(p *plot.Plot, cats []string, series []string, value func(cat, series string) float64) error {
	w := vg.Points(14)
	for i, s := range series {
		vals := make(plotter.Values, len(cats))
		for k, c := range cats {
			vals[k] = value(c, s)
		}
		b, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return fmt.Errorf("drawing bars: %w", err)
		}
		b.LineStyle.Width = 0
		b.Color = plotutil.Color(i)
		b.Offset = vg.Length(float64(i)-float64(len(series)-1)/2) * w
		p.Add(b)
		p.Legend.Add(s, b)
	}
	p.NominalX(cats...)
	p.Legend.Top = true
	return nil
}

func plotDataPlaneRPS(dir string, dp *DataPlaneResult) error {
	p := plot.New()
	p.Title.Text = "Max requests/s (1 thread, 16 connections, 1 KiB)"
	p.Y.Label.Text = "requests/s"
	err := groupedBars(p, dpTargets, protoNames, func(t, proto string) float64 {
		if s := dp.find(t, proto); s != nil {
			return s.RPS
		}
		return 0
	})
	if err != nil {
		return err
	}
	return save(p, 8, 4, filepath.Join(dir, "dataplane-rps.png"))
}

func plotDataPlaneLatency(dir string, dp *DataPlaneResult) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Latency at %d requests/s, open loop, HTTP/1.1 and h2c", dp.FixedRate)
	p.Y.Label.Text = "ms"
	series := []string{"p50 http1", "p99 http1", "p50 h2c", "p99 h2c"}
	err := groupedBars(p, dpTargets, series, func(t, s string) float64 {
		for _, f := range dp.Fixed {
			if f.Target != t {
				continue
			}
			switch s {
			case "p50 " + f.Proto:
				return f.P50MS
			case "p99 " + f.Proto:
				return f.P99MS
			}
		}
		return 0
	})
	if err != nil {
		return err
	}
	return save(p, 8, 4, filepath.Join(dir, "dataplane-latency.png"))
}

func plotCompiler(dir string, cs []CompilerResult) error {
	p := plot.New()
	p.Title.Text = "Compiler: full compile and one-VirtualService recompile"
	p.X.Label.Text = "services"
	p.Y.Label.Text = "ms"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	full, re := plotter.XYs{}, plotter.XYs{}
	for _, c := range cs {
		full = append(full, plotter.XY{X: float64(c.Services), Y: max(c.FullMS, 0.1)})
		re = append(re, plotter.XY{X: float64(c.Services), Y: max(c.RecompileMS, 0.1)})
	}
	if err := plotutil.AddLinePoints(p, "full compile", full, "recompile after one VirtualService", re); err != nil {
		return fmt.Errorf("drawing lines: %w", err)
	}
	targets := plotter.XYs{{X: 10000, Y: 2000}}
	tre := plotter.XYs{{X: 10000, Y: 20}}
	if err := addTargets(p, "target: full", targets, "target: recompile", tre); err != nil {
		return err
	}
	p.Legend.Top, p.Legend.Left = true, true
	return save(p, 7, 4, filepath.Join(dir, "compiler.png"))
}

func plotControlPlane(dir string, cs []CPResult) error {
	push := plot.New()
	push.Title.Text = "Control plane: one route changed, commit seen to last ACK"
	push.X.Label.Text = "proxies"
	push.Y.Label.Text = "ms (max across proxies)"
	conn := plot.New()
	conn.Title.Text = "Control plane: connect (all proxies ACKed the first snapshot)"
	conn.X.Label.Text = "proxies"
	conn.Y.Label.Text = "ms"
	for _, p := range []*plot.Plot{push, conn} {
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
		p.Legend.Top, p.Legend.Left = true, true
	}
	var pushArgs, connArgs []any
	for _, s := range []int{3, 1000} {
		for _, delta := range []bool{false, true} {
			var pp, cp plotter.XYs
			for _, c := range cs {
				if c.Services != s || c.Delta != delta || c.Error != "" {
					continue
				}
				cp = append(cp, plotter.XY{X: float64(c.Proxies), Y: max(c.ConnectMS, 1)})
				if len(c.Changes) > 0 {
					pp = append(pp, plotter.XY{X: float64(c.Proxies), Y: max(c.Changes[0].MaxMS, 1)})
				}
			}
			name := fmt.Sprintf("%d services, %s", s, map[bool]string{false: "SotW", true: "delta"}[delta])
			if len(pp) > 0 {
				pushArgs = append(pushArgs, name, pp)
			}
			if len(cp) > 0 {
				connArgs = append(connArgs, name, cp)
			}
		}
	}
	if len(pushArgs) > 0 {
		if err := plotutil.AddLinePoints(push, pushArgs...); err != nil {
			return fmt.Errorf("drawing lines: %w", err)
		}
	}
	if len(connArgs) > 0 {
		if err := plotutil.AddLinePoints(conn, connArgs...); err != nil {
			return fmt.Errorf("drawing lines: %w", err)
		}
	}
	if err := addTargets(push, "target: 1,000 proxies", plotter.XYs{{X: 1000, Y: 300}}, "target: 5,000 proxies", plotter.XYs{{X: 5000, Y: 500}}); err != nil {
		return err
	}
	if err := addTargets(conn, "target: 1,000 x 1,000", plotter.XYs{{X: 1000, Y: 2000}}); err != nil {
		return err
	}
	if err := save(push, 7, 4, filepath.Join(dir, "controlplane-push.png")); err != nil {
		return err
	}
	return save(conn, 7, 4, filepath.Join(dir, "controlplane-connect.png"))
}

// addTargets marks target points (name, XYs pairs) as red crosses.
func addTargets(p *plot.Plot, args ...any) error {
	for i := 0; i+1 < len(args); i += 2 {
		s, err := plotter.NewScatter(args[i+1].(plotter.XYs))
		if err != nil {
			return fmt.Errorf("drawing targets: %w", err)
		}
		s.GlyphStyle.Color = color.RGBA{R: 200, A: 255}
		s.GlyphStyle.Shape = draw.CrossGlyph{}
		s.GlyphStyle.Radius = vg.Points(5)
		p.Add(s)
		p.Legend.Add(args[i].(string), s)
	}
	return nil
}

// save writes p as a PNG of w x h inches.
func save(p *plot.Plot, w, h float64, file string) error {
	if err := p.Save(vg.Length(w)*vg.Inch, vg.Length(h)*vg.Inch, file); err != nil {
		return fmt.Errorf("saving %s: %w", file, err)
	}
	return nil
}
