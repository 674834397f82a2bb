//! Sweep.
use crate::cli::SweepArgs;
use crate::error::Error;
/// Runs `sweep`.
pub fn main(_args: &SweepArgs) -> Result<(), Error> {
    Ok(())
}
