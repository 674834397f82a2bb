//! `--find-rate 'p99<1ms'`: the highest open-loop rate that holds a latency (or error) target.
//!
//! Each step is a whole open-loop run at one rate, its steady measured window after the
//! connections are up and warmed: a step *holds* when every condition holds on it and the
//! target received the rate (at least [`DELIVERED`] of it answered inside the window, so that a
//! rate nobody could send or answer never "holds" a condition such as `errors==0`). From the
//! starting rate the search doubles while steps hold (or halves while they fail), then bisects
//! between the highest rate that held and the lowest that did not until they are within the
//! precision of each other. The answer is the highest rate that held.

use std::fmt::Write as _;

use serde::Serialize;

use crate::config::{Pacing, RunConfig};
use crate::error::Error;
use crate::report::RunResult;
use crate::run::{self, RunOptions};
use crate::stats::decode_histogram;
use crate::target::Target;
use crate::threshold::{self, Check, Threshold};

/// The share of the asked rate a step must have answered in its window to count as holding.
pub const DELIVERED: f64 = 0.95;

/// How the search goes.
#[derive(Debug, Clone)]
pub struct SearchPlan {
    /// What a step must hold.
    pub conditions: Vec<Threshold>,
    /// The first rate tried, messages per second.
    pub start_rate: f64,
    /// Stop bisecting when the highest held and the lowest failed rates are within this
    /// fraction of each other (0.05: 5 %).
    pub precision: f64,
    /// The most steps to run.
    pub max_steps: usize,
}

/// One step of the search.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The rate asked for, messages per second.
    pub rate: f64,
    /// Whether the step held.
    pub held: bool,
    /// Why not, when it did not.
    pub reason: Option<String>,
    /// The step's run.
    pub result: RunResult,
}

/// The search and its answer: what `--json` writes with `--find-rate`.
#[derive(Debug, Clone, Serialize)]
pub struct Search {
    /// The conditions, as given.
    pub conditions: Vec<String>,
    /// Every step in the order run.
    pub steps: Vec<Step>,
    /// The highest rate that held, messages per second (None: none did).
    pub answer: Option<f64>,
}

impl Step {
    /// One line for the terminal.
    pub fn line(&self, number: usize) -> String {
        let r = &self.result;
        let mut s = format!(
            "step {number:>2}: {:>10.0} msg/s asked, {:>10.0} answered, p99 {}, errors {}",
            self.rate,
            r.msgs_per_sec,
            threshold::format_ns(r.latency_us.p99 * 1e3),
            r.errors.values().sum::<u64>()
        );
        let _ = match &self.reason {
            None => write!(s, ": held"),
            Some(why) => write!(s, ": not held ({why})"),
        };
        s
    }
}

fn judge(rate: f64, result: RunResult, conditions: &[Threshold]) -> Result<Step, Error> {
    let latency = decode_histogram(&result.histograms.latency)?;
    let (_, breaches) = threshold::evaluate(conditions, Some(&result), &latency);
    let reason = if let Some(b) = breaches {
        let failed: Vec<String> = b.0.iter().map(describe).collect();
        Some(failed.join(", "))
    } else if result.msgs_per_sec < DELIVERED * rate {
        Some(format!("only {:.0}% of the rate answered", 100.0 * result.msgs_per_sec / rate))
    } else {
        None
    };
    // A step the client could not carry says nothing about the server: say so.
    let reason = reason.map(|why| {
        if result.health.client_limited() {
            format!("{why}; the load generator itself was the limit")
        } else {
            why
        }
    });
    Ok(Step { rate, held: reason.is_none(), reason, result })
}

fn describe(c: &Check) -> String {
    format!("{} was {}", c.threshold, c.threshold.show(c.value))
}

/// Runs the search against `target`, each step `base` with an open-loop rate; `report` sees
/// every step as it finishes.
pub fn search(
    base: &RunConfig,
    target: &Target,
    plan: &SearchPlan,
    mut report: impl FnMut(&Step, usize),
) -> Result<Search, Error> {
    let mut steps: Vec<Step> = Vec::new();
    let mut held: Option<f64> = None;
    let mut failed: Option<f64> = None;
    let mut rate = plan.start_rate;
    while steps.len() < plan.max_steps {
        let config = RunConfig { pacing: Pacing::Open { rate }, ..base.clone() };
        let outcome = run::run(&config, target, RunOptions::default())?;
        let interrupted = outcome.result.interrupted;
        let step = judge(rate, outcome.result, &plan.conditions)?;
        if step.held {
            held = Some(held.map_or(rate, |h: f64| h.max(rate)));
        } else {
            failed = Some(failed.map_or(rate, |f: f64| f.min(rate)));
        }
        report(&step, steps.len() + 1);
        steps.push(step);
        if interrupted {
            break;
        }
        rate = match (held, failed) {
            (Some(h), Some(f)) if f / h <= 1.0 + plan.precision => break,
            (Some(h), Some(f)) => (h + f) / 2.0,
            (Some(h), None) => h * 2.0,
            (None, Some(f)) if f < 1.0 => break,
            (None, Some(f)) => f / 2.0,
            (None, None) => unreachable!("a step either held or failed"),
        };
    }
    Ok(Search {
        conditions: plan.conditions.iter().map(Threshold::to_string).collect(),
        steps,
        answer: held,
    })
}

/// The answer in one line.
pub fn answer_line(s: &Search) -> String {
    let conditions = s.conditions.join(" and ");
    match s.answer {
        Some(rate) => {
            let next = s
                .steps
                .iter()
                .filter(|st| !st.held && st.rate > rate)
                .map(|st| st.rate)
                .fold(f64::INFINITY, f64::min);
            let above = if next.is_finite() {
                format!(" ({next:.0} msg/s did not)")
            } else {
                " (no rate tried above it failed: raise the starting --rate)".to_owned()
            };
            format!(
                "highest rate holding {conditions}: {rate:.0} msg/s{above}, {} steps",
                s.steps.len()
            )
        }
        None => format!(
            "no rate held {conditions}, down to {:.0} msg/s",
            s.steps.iter().map(|st| st.rate).fold(f64::INFINITY, f64::min)
        ),
    }
}
