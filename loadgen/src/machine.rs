//! The machine a run happened on, and the descriptor budget of a run.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::platform;

/// This tool's version (the workspace's package version; the server's is not known to it).
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit this binary was built from ("unknown" when built without git).
pub const GIT_COMMIT: &str = env!("SURGE_GIT_COMMIT");

/// Descriptors the process keeps for itself besides connections (poll instances, wakers, files,
/// the standard streams, a listener).
pub const FD_RESERVE: u64 = 64;

/// What a run records about the machine, so that runs can be compared knowingly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MachineInfo {
    /// CPU model from `/proc/cpuinfo` ("unknown" elsewhere).
    pub cpu_model: String,
    /// Logical CPUs this process may use.
    pub cores: usize,
    /// Kernel name, release and machine, as `uname` reports them.
    pub kernel: String,
    /// The load generator's own version (format 1 called it `surge_version`, though it never
    /// was the server's).
    #[serde(alias = "surge_version")]
    pub tool_version: String,
    /// The git commit the tool was built from.
    pub git_commit: String,
}

impl MachineInfo {
    /// Reads the current machine's description.
    pub fn current() -> Self {
        MachineInfo {
            cpu_model: cpu_model().unwrap_or_else(|| "unknown".to_owned()),
            cores: available_cores(),
            kernel: platform::kernel().unwrap_or_else(|_| "unknown".to_owned()),
            tool_version: TOOL_VERSION.to_owned(),
            git_commit: GIT_COMMIT.to_owned(),
        }
    }
}

/// Logical CPUs available to this process (at least 1).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| {
            l.starts_with("model name") || l.starts_with("Model") || l.starts_with("cpu model")
        })
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// Checks that `connections` sockets (plus `FD_RESERVE`) fit under the descriptor `limit`.
pub fn check_fd_budget(connections: u64, limit: u64) -> Result<(), Error> {
    if connections.saturating_add(FD_RESERVE) > limit {
        return Err(Error::FdLimit {
            needed: connections + FD_RESERVE,
            limit,
            max_connections: limit.saturating_sub(FD_RESERVE),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_info_is_filled() {
        let m = MachineInfo::current();
        assert!(m.cores >= 1);
        assert!(!m.kernel.is_empty());
        assert_eq!(m.tool_version, TOOL_VERSION);
        assert!(!m.git_commit.is_empty());
    }

    #[test]
    fn fd_budget() {
        assert!(check_fd_budget(19_000, 20_000).is_ok());
        let err = check_fd_budget(30_000, 20_000).unwrap_err();
        assert!(err.to_string().contains("19936"), "{err}");
    }
}
