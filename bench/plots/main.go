// Command plots draws the series of bench/results.json (written by
// bench/cmd/ccnp-bench) as PNG files with gonum/plot: each line is the
// median of the repeated runs, with error bars from the minimum to the
// maximum. It is a separate module so that the main module does not depend
// on gonum.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"log"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

type stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

type series struct {
	Title  string    `json:"title"`
	XLabel string    `json:"x_label"`
	YLabel string    `json:"y_label"`
	LogX   bool      `json:"log_x"`
	LogY   bool      `json:"log_y"`
	X      []float64 `json:"x"`
	Lines  []struct {
		Name   string `json:"name"`
		Points []stat `json:"points"`
	} `json:"lines"`
}

// files maps a series key of results.json to its PNG name.
var files = map[string]string{
	"verify_vs_events":              "verify-vs-events.png",
	"ima_vs_entries":                "ima-vs-entries.png",
	"throughput_vs_concurrency":     "throughput-vs-concurrency.png",
	"rss_vs_concurrency":            "rss-vs-concurrency.png",
	"e2e_throughput_vs_concurrency": "e2e-throughput-vs-concurrency.png",
	"e2e_latency_vs_concurrency":    "e2e-latency-vs-concurrency.png",
}

func main() {
	in := flag.String("in", "../results.json", "results.json of ccnp-bench")
	out := flag.String("out", "..", "directory for the PNG files")
	flag.Parse()
	b, err := os.ReadFile(*in)
	if err != nil {
		log.Fatal(err)
	}
	var res struct {
		Series map[string]*series `json:"series"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		log.Fatalf("%s: %v", *in, err)
	}
	for key, name := range files {
		s := res.Series[key]
		if s == nil {
			log.Printf("%s: no series %q, skipped", *in, key)
			continue
		}
		path := filepath.Join(*out, name)
		if err := draw(s, path); err != nil {
			log.Fatalf("%s: %v", path, err)
		}
		log.Printf("wrote %s", path)
	}
}

// errPoints are the points of one line with their min..max spread.
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

func draw(s *series, path string) error {
	p := plot.New()
	p.Title.Text = s.Title
	p.X.Label.Text = s.XLabel
	p.Y.Label.Text = s.YLabel
	if s.LogX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	if s.LogY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Legend.Top = true
	p.Legend.Left = true
	for i, l := range s.Lines {
		var ep errPoints
		for j, x := range s.X {
			if j >= len(l.Points) || l.Points[j].Median <= 0 {
				continue
			}
			pt := l.Points[j]
			ep.XYs = append(ep.XYs, plotter.XY{X: x, Y: pt.Median})
			ep.YErrors = append(ep.YErrors, struct{ Low, High float64 }{pt.Median - pt.Min, pt.Max - pt.Median})
		}
		if len(ep.XYs) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(ep.XYs)
		if err != nil {
			return err
		}
		c := plotutil.Color(i)
		line.Color, points.Color = c, c
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		if !s.LogY {
			bars, err := plotter.NewYErrorBars(ep)
			if err != nil {
				return err
			}
			bars.Color = c
			p.Add(bars)
		}
		p.Legend.Add(l.Name, line, points)
	}
	p.Add(plotter.NewGrid())
	p.BackgroundColor = color.White
	if err := p.Save(22*vg.Centimeter, 14*vg.Centimeter, path); err != nil {
		return fmt.Errorf("saving: %w", err)
	}
	return nil
}
