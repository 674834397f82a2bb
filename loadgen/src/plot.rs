//! Inline SVG charts for the self-contained HTML reports (no scripts, no network).

use std::fmt::Write as _;

const W: f64 = 860.0;
const H: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
/// Series colours (colour-blind friendly, Okabe-Ito).
const COLORS: [&str; 8] =
    ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];

/// One line on a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points in data coordinates (on a log axis, already the log10 of the value).
    pub points: Vec<(f64, f64)>,
}

/// Escapes text for HTML and SVG.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Axis ticks for log10 values between `lo` and `hi` (1, 2, 5 times powers of ten).
pub fn log_ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let mut ticks = Vec::new();
    let mut decade = lo.floor() as i32;
    while f64::from(decade) <= hi.ceil() {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(decade);
            let l = v.log10();
            if l >= lo - 1e-9 && l <= hi + 1e-9 {
                ticks.push((l, number(v)));
            }
        }
        decade += 1;
    }
    ticks
}

/// Ticks for a linear axis from 0 to `hi`.
pub fn linear_ticks(hi: f64) -> Vec<(f64, String)> {
    if hi <= 0.0 {
        return vec![(0.0, "0".into())];
    }
    let raw = hi / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(raw);
    (0..=((hi / step).ceil() as usize))
        .map(|i| (i as f64 * step, number(i as f64 * step)))
        .collect()
}

fn number(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A line chart: `x_ticks` and `y_ticks` give the axes' ranges and labels.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_ticks: &[(f64, String)],
    y_ticks: &[(f64, String)],
    series: &[Series],
) -> String {
    let range = |t: &[(f64, String)]| {
        let lo = t.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
        let hi = t.iter().map(|t| t.0).fold(f64::NEG_INFINITY, f64::max);
        if hi > lo {
            (lo, hi)
        } else {
            (lo, lo + 1.0)
        }
    };
    let (x0, x1) = range(x_ticks);
    let (y0, y1) = range(y_ticks);
    let px = |x: f64| LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM);
    let mut s = svg_open(title);
    for (x, label) in x_ticks {
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#ddd"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>"##,
            px(*x),
            TOP,
            H - BOTTOM,
            H - BOTTOM + 16.0,
            escape(label)
        );
    }
    for (y, label) in y_ticks {
        let _ = write!(
            s,
            r##"<line x1="{0}" y1="{1:.1}" x2="{2}" y2="{1:.1}" stroke="#ddd"/><text x="{3}" y="{4:.1}" text-anchor="end">{5}</text>"##,
            LEFT,
            py(*y),
            W - RIGHT,
            LEFT - 6.0,
            py(*y) + 4.0,
            escape(label)
        );
    }
    axes(&mut s, x_label, y_label);
    for (i, ser) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut d = String::new();
        for (j, &(x, y)) in ser.points.iter().enumerate() {
            let y = y.clamp(y0, y1);
            let _ = write!(d, "{}{:.1},{:.1}", if j == 0 { "M" } else { " L" }, px(x), py(y));
        }
        let _ = write!(
            s,
            r#"<path class="series" data-name="{}" d="{d}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            escape(&ser.name)
        );
        legend(&mut s, i, &ser.name, color);
    }
    s.push_str("</svg>");
    s
}

/// A bar chart with one bar per label.
pub fn bar_chart(title: &str, y_label: &str, labels: &[String], values: &[f64]) -> String {
    let hi = values.iter().copied().fold(0.0, f64::max);
    let ticks = linear_ticks(hi);
    let top = ticks.last().map_or(1.0, |t| t.0).max(f64::MIN_POSITIVE);
    let py = |y: f64| H - BOTTOM - y / top * (H - TOP - BOTTOM);
    let mut s = svg_open(title);
    for (y, label) in &ticks {
        let _ = write!(
            s,
            r##"<line x1="{0}" y1="{1:.1}" x2="{2}" y2="{1:.1}" stroke="#ddd"/><text x="{3}" y="{4:.1}" text-anchor="end">{5}</text>"##,
            LEFT,
            py(*y),
            W - RIGHT,
            LEFT - 6.0,
            py(*y) + 4.0,
            escape(label)
        );
    }
    let n = labels.len().max(1) as f64;
    let slot = (W - LEFT - RIGHT) / n;
    let best = values.iter().copied().enumerate().fold(None, |b: Option<(usize, f64)>, (i, v)| {
        if b.is_none_or(|(_, bv)| v > bv) {
            Some((i, v))
        } else {
            b
        }
    });
    for (i, (label, &v)) in labels.iter().zip(values).enumerate() {
        let x = LEFT + i as f64 * slot + slot * 0.15;
        let color = if best.is_some_and(|(b, _)| b == i) { COLORS[1] } else { COLORS[0] };
        let _ = write!(
            s,
            r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}: {}</title></rect><text x="{:.1}" y="{}" text-anchor="middle" font-size="10">{}</text>"#,
            py(v),
            slot * 0.7,
            (H - BOTTOM - py(v)).max(0.0),
            escape(label),
            number(v),
            x + slot * 0.35,
            H - BOTTOM + 14.0,
            escape(label)
        );
    }
    axes(&mut s, "", y_label);
    s.push_str("</svg>");
    s
}

fn svg_open(title: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif" font-size="12"><text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        W / 2.0,
        escape(title)
    )
}

fn axes(s: &mut String, x_label: &str, y_label: &str) {
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#444"/><text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}</text>"##,
        W - LEFT - RIGHT,
        H - TOP - BOTTOM,
        (LEFT + W - RIGHT) / 2.0,
        H - 14.0,
        escape(x_label),
        (TOP + H - BOTTOM) / 2.0,
        escape(y_label)
    );
}

fn legend(s: &mut String, i: usize, name: &str, color: &str) {
    let y = TOP + 16.0 + 16.0 * i as f64;
    let _ = write!(
        s,
        r#"<rect x="{}" y="{}" width="12" height="3" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
        LEFT + 12.0,
        y - 4.0,
        LEFT + 30.0,
        y,
        escape(name)
    );
}

/// Wraps body HTML in a complete, self-contained page.
pub fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.up {{ color: #0a0; font-weight: bold; }} .down {{ color: #c00; font-weight: bold; }}
.note {{ color: #666; font-size: 90%; }}
</style></head>
<body><h1>{t}</h1>
{body}
</body></html>
"#,
        t = escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks() {
        let t = log_ticks(0.0, 2.0);
        let labels: Vec<&str> = t.iter().map(|t| t.1.as_str()).collect();
        assert_eq!(labels, ["1", "2", "5", "10", "20", "50", "100"]);
        let t = linear_ticks(93_000.0);
        assert_eq!(t.last().unwrap().1, "100k");
    }

    #[test]
    fn charts_are_svg() {
        let s = line_chart(
            "t",
            "x",
            "y",
            &[(0.0, "a".into()), (1.0, "b".into())],
            &[(0.0, "0".into()), (1.0, "1".into())],
            &[Series { name: "<run>".into(), points: vec![(0.0, 0.0), (1.0, 1.0)] }],
        );
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("&lt;run&gt;") && s.contains(r#"class="series""#));
        let b = bar_chart("t", "y", &["a".into(), "b".into()], &[1.0, 2.0]);
        assert_eq!(b.matches(r#"class="bar""#).count(), 2);
    }
}
