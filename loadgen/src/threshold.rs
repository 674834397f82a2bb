//! Pass/fail conditions on a result: `p99.9<5ms`, `max<=20ms`, `errors==0`, `mismatches==0`,
//! `msgs/s>=50k`. A run (or a merge of several agents' runs) that breaks one exits 1 with one
//! line naming what failed, so that a CI job can fail a release that got slower.

use std::fmt;
use std::str::FromStr;

use hdrhistogram::Histogram;

use crate::report::RunResult;
use crate::units::{parse_duration, parse_rate};

/// A condition the command line could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// No comparison operator.
    #[error("threshold {0:?}: no comparison (use <, <=, >, >= or ==), e.g. p99<1ms")]
    NoOperator(String),
    /// The left side names nothing measured.
    #[error(
        "threshold {0:?}: unknown quantity (use pN such as p99.9, mean, max, errors, \
         mismatches, unanswered or msgs/s)"
    )]
    UnknownMetric(String),
    /// A percentile outside (0, 100].
    #[error("threshold {0:?}: the percentile must be above 0 and at most 100")]
    Percentile(String),
    /// The right side is not a value of the quantity's kind.
    #[error("threshold {0:?}: the limit must be a {1} (e.g. {2})")]
    Value(String, &'static str, &'static str),
}

/// What a threshold constrains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency percentile (from the scheduled send), in percent: 0 < p <= 100.
    Percentile(f64),
    /// Mean latency.
    Mean,
    /// Largest latency.
    Max,
    /// Failures of any kind (connects, handshakes, lost connections, protocol errors).
    Errors,
    /// Echoes that differed from what was sent.
    Mismatches,
    /// Messages scheduled in the window whose echo never came (sent or not).
    Unanswered,
    /// Throughput.
    MsgsPerSec,
}

impl Metric {
    /// Whether the quantity is a latency (read from the histogram alone).
    pub fn is_latency(self) -> bool {
        matches!(self, Metric::Percentile(_) | Metric::Mean | Metric::Max)
    }

    /// The quantity's value in `r` (latency in ns, read from the full `latency` histogram so
    /// that any percentile is exact to the histogram's precision). Counts without a result
    /// (interval logs alone) are unknown: NaN, which holds no bound.
    pub fn of(self, r: Option<&RunResult>, latency: &Histogram<u64>) -> f64 {
        let Some(r) = r.filter(|_| !self.is_latency()) else {
            return match self {
                Metric::Percentile(p) => latency.value_at_quantile(p / 100.0) as f64,
                Metric::Mean => latency.mean(),
                Metric::Max => latency.max() as f64,
                _ => f64::NAN,
            };
        };
        match self {
            Metric::Percentile(_) | Metric::Mean | Metric::Max => unreachable!("latencies above"),
            Metric::Errors => r.errors.values().sum::<u64>() as f64,
            Metric::Mismatches => r.mismatches as f64,
            Metric::Unanswered => (r.unanswered + r.backlog) as f64,
            Metric::MsgsPerSec => r.msgs_per_sec,
        }
    }
}

/// How the value is compared with the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
}

impl Op {
    fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            Op::Lt => value < limit,
            Op::Le => value <= limit,
            Op::Gt => value > limit,
            Op::Ge => value >= limit,
            Op::Eq => value == limit,
        }
    }
}

/// One condition, as given (`p99<1ms`).
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    text: String,
    /// What is constrained.
    pub metric: Metric,
    /// The comparison.
    pub op: Op,
    /// The limit: ns for latencies, a count or a rate otherwise.
    pub limit: f64,
}

impl FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(s: &str) -> Result<Self, ThresholdError> {
        let text: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let (at, op, len) =
            [("<=", Op::Le), (">=", Op::Ge), ("==", Op::Eq), ("<", Op::Lt), (">", Op::Gt)]
                .iter()
                .find_map(|&(sym, op)| text.find(sym).map(|at| (at, op, sym.len())))
                .ok_or_else(|| ThresholdError::NoOperator(s.to_owned()))?;
        let (name, value) = (&text[..at], &text[at + len..]);
        let metric = match name.to_ascii_lowercase().as_str() {
            "mean" => Metric::Mean,
            "max" => Metric::Max,
            "errors" => Metric::Errors,
            "mismatches" => Metric::Mismatches,
            "unanswered" => Metric::Unanswered,
            "msgs/s" | "rate" | "throughput" => Metric::MsgsPerSec,
            p if p.starts_with('p') => {
                let pct: f64 =
                    p[1..].parse().map_err(|_| ThresholdError::UnknownMetric(s.to_owned()))?;
                if !(pct > 0.0 && pct <= 100.0) {
                    return Err(ThresholdError::Percentile(s.to_owned()));
                }
                Metric::Percentile(pct)
            }
            _ => return Err(ThresholdError::UnknownMetric(s.to_owned())),
        };
        let limit = if metric.is_latency() {
            let d = parse_duration(value)
                .map_err(|_| ThresholdError::Value(s.to_owned(), "duration", "5ms"))?;
            d.as_nanos() as f64
        } else if metric == Metric::MsgsPerSec {
            parse_rate(value).map_err(|_| ThresholdError::Value(s.to_owned(), "rate", "50k"))?
        } else {
            value.parse::<u64>().map_err(|_| ThresholdError::Value(s.to_owned(), "count", "0"))?
                as f64
        };
        Ok(Threshold { text, metric, op, limit })
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A threshold checked against a result.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The condition.
    pub threshold: Threshold,
    /// What the result had.
    pub value: f64,
    /// Whether the condition held.
    pub held: bool,
}

impl Threshold {
    /// Checks the condition against `r`, whose full latency histogram is `latency`.
    pub fn check(&self, r: Option<&RunResult>, latency: &Histogram<u64>) -> Check {
        let value = self.metric.of(r, latency);
        // A run with no latency recorded cannot hold a latency bound.
        let held =
            self.op.holds(value, self.limit) && !(self.metric.is_latency() && latency.is_empty());
        Check { threshold: self.clone(), value, held }
    }

    /// The value in the threshold's own terms: `1.23ms`, `3`, `50000/s`.
    pub fn show(&self, value: f64) -> String {
        if self.metric.is_latency() {
            format_ns(value)
        } else if self.metric == Metric::MsgsPerSec {
            format!("{value:.0}/s")
        } else {
            format!("{value:.0}")
        }
    }
}

/// A latency in ns as the most readable unit.
pub fn format_ns(ns: f64) -> String {
    match ns {
        n if n >= 1e9 => format!("{:.2}s", n / 1e9),
        n if n >= 1e6 => format!("{:.2}ms", n / 1e6),
        n => format!("{:.1}us", n / 1e3),
    }
}

/// The thresholds a result broke (non-empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Breaches(pub Vec<Check>);

impl fmt::Display for Breaches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|c| format!("{} (was {})", c.threshold, c.threshold.show(c.value)))
            .collect();
        write!(f, "threshold failed: {}", parts.join("; "))
    }
}

/// Checks every threshold; the breaches, if any.
pub fn evaluate(
    thresholds: &[Threshold],
    r: Option<&RunResult>,
    latency: &Histogram<u64>,
) -> (Vec<Check>, Option<Breaches>) {
    let checks: Vec<Check> = thresholds.iter().map(|t| t.check(r, latency)).collect();
    let failed: Vec<Check> = checks.iter().filter(|c| !c.held).cloned().collect();
    (checks, (!failed.is_empty()).then_some(Breaches(failed)))
}

/// One summary line per threshold: held or not, and the value.
pub fn render(checks: &[Check]) -> String {
    checks
        .iter()
        .map(|c| {
            format!(
                "  threshold     {} {} ({})\n",
                c.threshold,
                if c.held { "held" } else { "FAILED" },
                c.threshold.show(c.value)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse() {
        let t: Threshold = "p99.9 < 5ms".parse().unwrap();
        assert_eq!((t.metric, t.op, t.limit), (Metric::Percentile(99.9), Op::Lt, 5e6));
        assert_eq!(t.to_string(), "p99.9<5ms");
        let t: Threshold = "mismatches==0".parse().unwrap();
        assert_eq!((t.metric, t.op, t.limit), (Metric::Mismatches, Op::Eq, 0.0));
        let t: Threshold = "msgs/s>=50k".parse().unwrap();
        assert_eq!((t.metric, t.op, t.limit), (Metric::MsgsPerSec, Op::Ge, 50_000.0));
        let t: Threshold = "max<=250us".parse().unwrap();
        assert_eq!((t.metric, t.op, t.limit), (Metric::Max, Op::Le, 250_000.0));
        assert!(matches!("p99".parse::<Threshold>(), Err(ThresholdError::NoOperator(_))));
        assert!(matches!("p0<1ms".parse::<Threshold>(), Err(ThresholdError::Percentile(_))));
        assert!(matches!("cpu<1".parse::<Threshold>(), Err(ThresholdError::UnknownMetric(_))));
        assert!(matches!("p99<fast".parse::<Threshold>(), Err(ThresholdError::Value(..))));
        assert!(matches!("errors==0.5".parse::<Threshold>(), Err(ThresholdError::Value(..))));
    }

    #[test]
    fn ops_and_units() {
        assert!(Op::Lt.holds(1.0, 2.0) && !Op::Lt.holds(2.0, 2.0) && Op::Le.holds(2.0, 2.0));
        assert!(Op::Eq.holds(0.0, 0.0) && Op::Gt.holds(3.0, 2.0) && !Op::Ge.holds(1.0, 2.0));
        assert_eq!(format_ns(1_234_000.0), "1.23ms");
        assert_eq!(format_ns(12_300.0), "12.3us");
    }
}
