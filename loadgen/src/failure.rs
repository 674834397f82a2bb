//! Commands that ran to the end but whose result failed what it was held to.

use crate::compare::Slowdown;
use crate::threshold::Breaches;

/// What a command's result failed: the binary prints it as one line and exits 1 (an error of
/// the tool itself exits 2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// `--threshold` conditions the result broke.
    #[error("{0}")]
    Thresholds(Breaches),
    /// `compare --fail-if-slower`: a side got slower than the baseline.
    #[error("{0}")]
    Slower(Slowdown),
    /// `--find-rate`: not even the lowest rate tried held the conditions (given).
    #[error("find-rate: no rate held {0}")]
    NoRateHeld(String),
}
