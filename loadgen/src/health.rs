//! Self-health: whether the load generator itself was the limit of a run, so that a saturated
//! client is never read as a slow server.
//!
//! Two signs: a client thread busy past [`BUSY_LIMIT`] of its core while measuring (it could
//! not have gone faster, whatever the server did), and in open loop the client's own send lag
//! (how late it sent messages it had room to send on time) past [`SEND_LAG_LIMIT_US`] at p99 (the
//! corrected latency then includes the client's lateness, not only the server's).

use serde::{Deserialize, Serialize};

use crate::stats::Percentiles;

/// A client thread busier than this share of one core was the limit.
pub const BUSY_LIMIT: f64 = 0.90;
/// Open-loop send lag above this at p99 means the client, not the server, made messages late.
pub const SEND_LAG_LIMIT_US: f64 = 1000.0;

/// One way the tool was the limit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SelfLimit {
    /// A client thread was busy past [`BUSY_LIMIT`] of its core while measuring.
    CpuBusy {
        /// Its busy share of one core, percent.
        busy_pct: f64,
    },
    /// The client sent on-time messages late, past [`SEND_LAG_LIMIT_US`] at p99.
    SendLag {
        /// The send lag's p99, µs.
        p99_us: f64,
    },
}

/// The tool's own health over a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// The busiest client thread's share of one core while measuring, percent.
    pub busiest_thread_pct: f64,
    /// The ways the tool was the limit (empty: it was not).
    pub limits: Vec<SelfLimit>,
}

impl Health {
    /// Judges a run from its busiest thread's CPU time and its send lag.
    pub fn judge(busiest_cpu_s: f64, measured_s: f64, send_lag: &Percentiles) -> Self {
        let busy = if measured_s > 0.0 { busiest_cpu_s / measured_s } else { 0.0 };
        let mut limits = Vec::new();
        if busy > BUSY_LIMIT {
            limits.push(SelfLimit::CpuBusy { busy_pct: 100.0 * busy });
        }
        if send_lag.count > 0 && send_lag.p99 > SEND_LAG_LIMIT_US {
            limits.push(SelfLimit::SendLag { p99_us: send_lag.p99 });
        }
        Health { busiest_thread_pct: 100.0 * busy, limits }
    }

    /// Whether the tool was the limit.
    pub fn client_limited(&self) -> bool {
        !self.limits.is_empty()
    }

    /// One line for the summary.
    pub fn line(&self) -> String {
        if self.limits.is_empty() {
            return format!(
                "  self-health   ok: the busiest client thread was {:.0}% busy (limit {:.0}%)\n",
                self.busiest_thread_pct,
                100.0 * BUSY_LIMIT
            );
        }
        let why: Vec<String> = self
            .limits
            .iter()
            .map(|l| match l {
                SelfLimit::CpuBusy { busy_pct } => {
                    format!(
                        "a client thread was {busy_pct:.0}% busy (over {:.0}%)",
                        100.0 * BUSY_LIMIT
                    )
                }
                SelfLimit::SendLag { p99_us } => {
                    format!("its send lag p99 was {p99_us:.0} µs (over {SEND_LAG_LIMIT_US:.0} µs)")
                }
            })
            .collect();
        format!(
            "  self-health   THE LOAD GENERATOR WAS THE LIMIT: {}; these figures describe the \
             client as much as the server (add --threads, cores or machines)\n",
            why.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_or_late_clients_are_named() {
        let quiet = Percentiles::default();
        assert!(!Health::judge(0.5, 1.0, &quiet).client_limited());
        let h = Health::judge(0.95, 1.0, &quiet);
        assert_eq!(h.limits, [SelfLimit::CpuBusy { busy_pct: 95.0 }]);
        assert!(h.line().contains("WAS THE LIMIT") && h.line().contains("95% busy"));
        let late = Percentiles { count: 10, p99: 2500.0, ..Percentiles::default() };
        let h = Health::judge(0.1, 1.0, &late);
        assert!(matches!(h.limits[..], [SelfLimit::SendLag { p99_us }] if p99_us == 2500.0));
    }
}
