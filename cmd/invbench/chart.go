package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// writeChart draws, for every case, throughput and p99 latency against
// workers, one line per target, both axes logarithmic, and writes it to
// file as PNG or SVG by its extension.
func writeChart(file string, o *outcome, m meta) error {
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(file)), ".")
	if format != "png" && format != "svg" {
		return fmt.Errorf("chart %s: the name must end in .png or .svg", file)
	}
	gs := groups(o, m.Targets)
	if len(gs) == 0 {
		return fmt.Errorf("chart %s: no results to draw", file)
	}
	var plots [][]*plot.Plot
	legend := plot.NewLegend()
	legend.Top = true
	legend.TextStyle.Font.Size = vg.Points(12)
	legend.ThumbnailWidth = vg.Points(28)
	inLegend := map[string]bool{}
	for _, rs := range gs {
		title := caseTitle(rs[0], m)
		thr := newChartPlot(title, "throughput (carts decided/s)", rs)
		lat := newChartPlot(title, "p99 Reserve latency (ms)", rs)
		for _, name := range m.Targets {
			var tp, lp plotter.XYs
			for _, r := range rs {
				if r.Target != name || r.Decided == 0 {
					continue
				}
				if r.Throughput > 0 {
					tp = append(tp, plotter.XY{X: float64(r.Workers), Y: r.Throughput})
				}
				if r.P99 > 0 {
					lp = append(lp, plotter.XY{X: float64(r.Workers), Y: r.P99})
				}
			}
			i := slices.Index(m.Targets, name)
			thumbs, err := addSeries(thr, name, i, tp)
			if err != nil {
				return err
			}
			if _, err := addSeries(lat, name, i, lp); err != nil {
				return err
			}
			if thumbs != nil && !inLegend[name] {
				inLegend[name] = true
				legend.Add(name, thumbs...)
			}
		}
		fitLog(thr)
		fitLog(lat)
		plots = append(plots, []*plot.Plot{thr, lat})
	}

	// Two columns of plots, one row per case, and the legend in a narrow
	// column on the right, where it hides no data.
	const tileW, tileH, legendW = 6.5 * vg.Inch, 4.2 * vg.Inch, 1.6 * vg.Inch
	c, err := draw.NewFormattedCanvas(2*tileW+legendW, vg.Length(len(plots))*tileH, format)
	if err != nil {
		return err
	}
	dc := draw.New(c)
	plotArea := dc
	plotArea.Max.X -= legendW
	legendArea := dc
	legendArea.Min.X = dc.Max.X - legendW
	legendArea.Max.X -= vg.Inch / 8
	legendArea.Max.Y -= vg.Inch / 3
	tiles := draw.Tiles{Rows: len(plots), Cols: 2, PadX: vg.Inch / 4, PadY: vg.Inch / 4,
		PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	canvases := plot.Align(plots, tiles, plotArea)
	for i := range plots {
		for j := range plots[i] {
			plots[i][j].Draw(canvases[i][j])
		}
	}
	legend.Draw(legendArea)
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// newChartPlot makes a log-log plot with a tick at every worker count.
func newChartPlot(title, ylabel string, rs []*Result) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "workers"
	p.Y.Label.Text = ylabel
	p.X.Scale = plot.LogScale{}
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	var ticks plot.ConstantTicks
	for _, r := range rs {
		if !slices.ContainsFunc(ticks, func(t plot.Tick) bool { return t.Value == float64(r.Workers) }) {
			ticks = append(ticks, plot.Tick{Value: float64(r.Workers), Label: strconv.Itoa(r.Workers)})
		}
	}
	p.X.Tick.Marker = ticks
	p.Add(plotter.NewGrid())
	return p
}

// fitLog widens the ranges of a log-log plot around its data by a margin,
// so that one point alone still makes a positive range.
func fitLog(p *plot.Plot) {
	if math.IsInf(p.X.Min, 0) || math.IsInf(p.Y.Min, 0) || p.X.Min <= 0 || p.Y.Min <= 0 { // no data
		p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 1, 10, 1, 10
		return
	}
	p.X.Min, p.X.Max = p.X.Min/1.3, p.X.Max*1.3
	p.Y.Min, p.Y.Max = p.Y.Min/1.5, p.Y.Max*1.5
}

// addSeries draws one target's points and returns what stands for it in a
// legend (nil when it has no points). The raw baselines are grey and
// dashed, so the strategies stand out against them.
func addSeries(p *plot.Plot, name string, i int, xys plotter.XYs) ([]plot.Thumbnailer, error) {
	if len(xys) == 0 {
		return nil, nil
	}
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return nil, err
	}
	c := plotutil.Color(i)
	l.Width = vg.Points(1.5)
	if strings.HasPrefix(name, "raw-") {
		c = color.Gray{Y: 100}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		if name == rawRedisName {
			l.Dashes = []vg.Length{vg.Points(1), vg.Points(2)}
		}
	}
	l.Color = c
	pts.Color = c
	pts.Shape = plotutil.Shape(i)
	p.Add(l, pts)
	return []plot.Thumbnailer{l, pts}, nil
}
