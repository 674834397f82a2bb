//! Compare.
use crate::cli::CompareArgs;
use crate::error::Error;
/// Runs `compare`.
pub fn main(_args: &CompareArgs) -> Result<(), Error> {
    Ok(())
}
