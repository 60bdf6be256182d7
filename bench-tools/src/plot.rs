//! The n_bits sweep's figure, drawn with plotters' SVG backend (no fonts or system libraries:
//! text is written as SVG `<text>` and laid out with plotters' approximate metrics).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::sweep::{Point, Sweep};

/// One family's lines, as (n_bits, value) pairs sorted by n_bits.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Series {
    pub family: String,
    /// Legend text: family and model.
    pub label: String,
    pub quantized: Vec<(f64, f64)>,
    pub float: Vec<(f64, f64)>,
    /// Bootstraps per sample, positive values only (log axis).
    pub pbs: Vec<(f64, f64)>,
    /// Whether some point had no bootstrap at all (not drawable on a log axis).
    pub zero_pbs: bool,
    pub input_ciphertexts: Vec<(f64, f64)>,
    /// Execute latency, milliseconds per sample.
    pub latency_ms: Vec<(f64, f64)>,
    /// n_bits measured but not executed.
    pub not_executed: Vec<u8>,
}

/// Groups `points` into one series per family, in first-appearance order.
pub(crate) fn series(points: &[Point]) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    let mut sorted: Vec<&Point> = points.iter().collect();
    sorted.sort_by_key(|p| p.n_bits);
    let mut order: Vec<&str> = Vec::new();
    for p in points {
        if !order.contains(&p.family.as_str()) {
            order.push(&p.family);
        }
    }
    for family in order {
        let mut s = Series { family: family.to_string(), ..Series::default() };
        for p in sorted.iter().filter(|p| p.family == family) {
            if s.label.is_empty() {
                s.label = if p.model == p.family { p.family.clone() } else { format!("{} ({})", p.family, p.model) };
            }
            let x = f64::from(p.n_bits);
            if p.quantized.is_none() {
                continue; // train or eval failed: nothing measured
            }
            s.quantized.extend(p.quantized.map(|y| (x, y)));
            s.float.extend(p.float.map(|y| (x, y)));
            match p.pbs_per_sample {
                Some(0) => s.zero_pbs = true,
                Some(n) => s.pbs.push((x, n as f64)),
                None => {}
            }
            s.input_ciphertexts.extend(p.input_ciphertexts.filter(|&n| n > 0).map(|n| (x, n as f64)));
            match p.execute.as_ref().and_then(|e| e.latency_s).filter(|&l| l > 0.0) {
                Some(l) => s.latency_ms.push((x, 1e3 * l)),
                None => s.not_executed.push(p.n_bits),
            }
        }
        out.push(s);
    }
    out
}

/// A fixed colour per family, so figures compare.
pub(crate) fn color(family: &str) -> RGBColor {
    match family {
        "linear" => RGBColor(31, 119, 180),
        "tree" => RGBColor(44, 160, 44),
        "forest" => RGBColor(140, 86, 75),
        "gbdt" => RGBColor(255, 127, 14),
        "mlp" => RGBColor(214, 39, 40),
        _ => RGBColor(127, 127, 127),
    }
}

/// `[lo, hi]` of the values, padded by 8% (and at least `min_pad`) on both sides.
pub(crate) fn padded_range(values: impl Iterator<Item = f64>, min_pad: f64) -> Option<(f64, f64)> {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return None;
    }
    let pad = (0.08 * (hi - lo)).max(min_pad);
    Some((lo - pad, hi + pad))
}

/// A log axis range covering the positive values, widened to whole decades (at least one).
pub(crate) fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite() && *v > 0.0).fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return (1.0, 10.0);
    }
    let (a, mut b) = (lo.log10().floor(), hi.log10().ceil());
    if b <= a {
        b = a + 1.0;
    }
    (10f64.powf(a), 10f64.powf(b))
}

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("drawing the figure: {e}")
}

/// Labels whole n_bits only.
fn integer_label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-6 { format!("{v:.0}") } else { String::new() }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// One panel: lines per family against n_bits, on a linear or log y axis.
struct Panel<'s> {
    title: String,
    y_desc: String,
    log: bool,
    lines: Vec<(&'s Series, &'s [(f64, f64)])>,
    note: Option<String>,
}

fn draw_panel(area: &Area, bits: (f64, f64), panel: &Panel) -> Result<(), String> {
    let all = || panel.lines.iter().flat_map(|(_, l)| l.iter().map(|p| p.1));
    let x = (bits.0 - 0.4)..(bits.1 + 0.4);
    let ticks = (bits.1 - bits.0) as usize + 1;
    let mut builder = ChartBuilder::on(area);
    builder.caption(&panel.title, ("sans-serif", 18)).margin(12).x_label_area_size(40).y_label_area_size(64);
    if panel.log {
        let (lo, hi) = log_range(all());
        let mut chart = builder.build_cartesian_2d(x.clone(), (lo..hi).log_scale()).map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.04))
            .x_desc("n_bits")
            .y_desc(panel.y_desc.as_str())
            .x_labels(ticks)
            .x_label_formatter(&integer_label)
            .y_label_formatter(&|v| if *v >= 1.0 { format!("{v:.0}") } else { format!("{v:.2}") })
            .draw()
            .map_err(err)?;
        for (s, line) in &panel.lines {
            let c = color(&s.family);
            chart.draw_series(LineSeries::new(line.iter().copied(), c.stroke_width(2))).map_err(err)?;
            chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(err)?;
        }
    } else {
        let (lo, hi) = padded_range(all(), 0.01).unwrap_or((0.0, 1.0));
        let digits = if hi - lo < 0.1 { 3 } else { 2 };
        let y_label = move |v: &f64| format!("{v:.digits$}");
        let mut chart = builder.build_cartesian_2d(x.clone(), lo..hi).map_err(err)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.04))
            .x_desc("n_bits")
            .y_desc(panel.y_desc.as_str())
            .x_labels(ticks)
            .x_label_formatter(&integer_label)
            .y_label_formatter(&y_label)
            .draw()
            .map_err(err)?;
        for (s, line) in &panel.lines {
            let c = color(&s.family);
            chart
                .draw_series(LineSeries::new(line.iter().copied(), c.stroke_width(2)))
                .map_err(err)?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            chart.draw_series(line.iter().map(|&p| Circle::new(p, 4, c.filled()))).map_err(err)?;
        }
        for (i, (s, _)) in panel.lines.iter().enumerate() {
            let c = color(&s.family);
            let series = chart
                .draw_series(DashedLineSeries::new(s.float.iter().copied(), 6, 4, c.stroke_width(1)))
                .map_err(err)?;
            if i == 0 {
                series.label("float model (dashed)").legend(|(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (7, 0)], BLACK)
                        + PathElement::new(vec![(12, 0), (19, 0)], BLACK)
                });
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(err)?;
    }
    if let Some(note) = &panel.note {
        let (_, h) = area.dim_in_pixel();
        area.draw_text(note, &("sans-serif", 13).into_font().color(&BLACK.mix(0.7)), (80, h as i32 - 14))
            .map_err(err)?;
    }
    Ok(())
}

/// Draws the 2×2 figure: score, bootstraps, input ciphertexts and Execute latency against n_bits.
pub fn draw(sweep: &Sweep, path: &Path) -> Result<(), String> {
    let all = series(&sweep.points);
    let measured: Vec<&Series> = all.iter().filter(|s| !s.quantized.is_empty()).collect();
    let bits = sweep.points.iter().map(|p| f64::from(p.n_bits));
    let bits = (bits.clone().fold(f64::INFINITY, f64::min), bits.fold(f64::NEG_INFINITY, f64::max));
    let bits = if bits.0 > bits.1 { (2.0, 8.0) } else { bits };
    let metric = sweep.points.iter().find_map(|p| p.metric.clone()).unwrap_or_else(|| "score".into());

    let root = SVGBackend::new(path, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut title = format!("fheml: {metric} and cost against n_bits, {} (one model per family)", sweep.dataset);
    if sweep.quick {
        title += " [--quick]";
    }
    let root = root.titled(&title, ("sans-serif", 24)).map_err(err)?;
    let (_, h) = root.dim_in_pixel();
    let mut footer = format!("{} | {}", sweep.command, sweep.machine);
    if !sweep.skipped_families.is_empty() {
        footer += &format!(" | not in this fheml build: {}", sweep.skipped_families.join(", "));
    }
    root.draw_text(&footer, &("sans-serif", 12).into_font().color(&BLACK.mix(0.6)), (10, h as i32 - 16))
        .map_err(err)?;
    let body = root.margin(0, 20, 0, 0);
    let panels = body.split_evenly((2, 2));

    let none_without_pbs: Vec<&str> = measured.iter().filter(|s| s.zero_pbs).map(|s| s.family.as_str()).collect();
    let skipped: Vec<String> = measured
        .iter()
        .filter(|s| !s.not_executed.is_empty())
        .map(|s| format!("{} {}", s.family, s.not_executed.iter().map(u8::to_string).collect::<Vec<_>>().join(",")))
        .collect();
    let specs = [
        Panel {
            title: format!("{metric} on the test split (quantized solid, float dashed)"),
            y_desc: metric.clone(),
            log: false,
            lines: measured.iter().map(|s| (*s, s.quantized.as_slice())).collect(),
            note: None,
        },
        Panel {
            title: "bootstraps per sample (log)".into(),
            y_desc: "PBS / sample".into(),
            log: true,
            lines: measured.iter().filter(|s| !s.pbs.is_empty()).map(|s| (*s, s.pbs.as_slice())).collect(),
            note: (!none_without_pbs.is_empty())
                .then(|| format!("no bootstraps (leveled only): {}", none_without_pbs.join(", "))),
        },
        Panel {
            title: "input ciphertexts per sample (log)".into(),
            y_desc: "ciphertexts / sample".into(),
            log: true,
            lines: measured
                .iter()
                .filter(|s| !s.input_ciphertexts.is_empty())
                .map(|s| (*s, s.input_ciphertexts.as_slice()))
                .collect(),
            note: None,
        },
        Panel {
            title: format!(
                "Execute latency, median of {} row{} (log)",
                sweep.exec_rows,
                if sweep.exec_rows == 1 { "" } else { "s" }
            ),
            y_desc: "ms / sample".into(),
            log: true,
            lines: measured
                .iter()
                .filter(|s| !s.latency_ms.is_empty())
                .map(|s| (*s, s.latency_ms.as_slice()))
                .collect(),
            note: (!skipped.is_empty()).then(|| format!("not executed at n_bits: {}", skipped.join("; "))),
        },
    ];
    for (area, panel) in panels.iter().zip(&specs) {
        draw_panel(area, bits, panel)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::sweep::Executed;

    fn point(family: &str, model: &str, n_bits: u8, quantized: Option<f64>, pbs: u64, latency: Option<f64>) -> Point {
        let mut p: Point = serde_json::from_value(serde_json::json!({
            "family": family, "model": model, "settings": [], "n_bits": n_bits, "metric": "accuracy",
            "float": 0.96, "quantized": quantized, "pbs_per_sample": pbs, "max_tlu_bits": 3,
            "parameters": null, "input_ciphertexts": 30 * u64::from(n_bits), "expected_s": null,
            "eval_key_mib": null, "execute": null, "note": null
        }))
        .unwrap();
        p.execute = latency.map(|l| Executed {
            rows: 3,
            agree_with_clear: Some(1.0),
            latency_s: Some(l),
            keygen_s: None,
            eval_key_bytes: None,
        });
        p
    }

    fn points() -> Vec<Point> {
        vec![
            point("tree", "tree", 6, Some(0.95), 5, None),
            point("linear", "logistic", 4, Some(0.93), 0, Some(0.0004)),
            point("tree", "tree", 2, Some(0.77), 5, Some(0.05)),
            point("linear", "logistic", 2, Some(0.90), 0, Some(0.0003)),
            point("mlp", "mlp", 2, None, 0, None),
        ]
    }

    #[test]
    fn groups_by_family_in_order_and_sorts_by_bits() {
        let s = series(&points());
        assert_eq!(s.iter().map(|s| s.family.as_str()).collect::<Vec<_>>(), ["tree", "linear", "mlp"]);
        assert_eq!(s[0].label, "tree");
        assert_eq!(s[1].label, "linear (logistic)");
        assert_eq!(s[0].quantized, vec![(2.0, 0.77), (6.0, 0.95)]);
        assert_eq!(s[0].float, vec![(2.0, 0.96), (6.0, 0.96)]);
        assert_eq!(s[0].pbs, vec![(2.0, 5.0), (6.0, 5.0)]);
        assert_eq!(s[0].input_ciphertexts, vec![(2.0, 60.0), (6.0, 180.0)]);
        assert_eq!(s[0].latency_ms, vec![(2.0, 50.0)]);
        assert_eq!(s[0].not_executed, vec![6]);
        assert!(!s[0].zero_pbs);
    }

    #[test]
    fn zero_bootstraps_and_failed_points_stay_off_the_lines() {
        let s = series(&points());
        assert!(s[1].zero_pbs && s[1].pbs.is_empty());
        assert_eq!(s[1].latency_ms, vec![(2.0, 0.3), (4.0, 0.4)]);
        assert!(s[2].quantized.is_empty() && s[2].not_executed.is_empty());
    }

    #[test]
    fn ranges() {
        assert_eq!(padded_range([0.5, 1.0].into_iter(), 0.01), Some((0.46, 1.04)));
        assert_eq!(padded_range([0.9].into_iter(), 0.01), Some((0.89, 0.91)));
        assert_eq!(padded_range(std::iter::empty(), 0.01), None);
        assert_eq!(log_range([0.0, 4.0, 100.0].into_iter()), (1.0, 100.0));
        assert_eq!(log_range([5.0, 5.0].into_iter()), (1.0, 10.0));
        assert_eq!(log_range([0.3, 120.0].into_iter()), (0.1, 1000.0));
        assert_eq!(log_range(std::iter::empty()), (1.0, 10.0));
    }

    #[test]
    fn draws_an_svg() {
        let sweep = Sweep {
            dataset: "breast_cancer".into(),
            command: "cargo xtask bench --sweep --quick".into(),
            machine: "test".into(),
            quick: true,
            exec_rows: 1,
            max_exec_bits: 6,
            max_exec_seconds: 120.0,
            skipped_families: vec!["mlp".into()],
            points: points(),
        };
        let path = std::env::temp_dir().join(format!("fheml-bench-plot-test-{}.svg", std::process::id()));
        draw(&sweep, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"));
        for text in [
            "bootstraps per sample",
            "linear (logistic)",
            "float model (dashed)",
            "no bootstraps (leveled only): linear",
            "not in this fheml build: mlp",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
    }
}
