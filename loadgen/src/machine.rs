//! The machine a run happened on, the process's descriptor limit, and CPU-time accounting.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Surge's version, from the workspace's package version.
pub const SURGE_VERSION: &str = env!("CARGO_PKG_VERSION");
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
    /// Surge's version.
    pub surge_version: String,
    /// The git commit the tool was built from.
    pub git_commit: String,
}

impl MachineInfo {
    /// Reads the current machine's description.
    pub fn current() -> Self {
        MachineInfo {
            cpu_model: cpu_model().unwrap_or_else(|| "unknown".to_owned()),
            cores: available_cores(),
            kernel: kernel(),
            surge_version: SURGE_VERSION.to_owned(),
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

fn kernel() -> String {
    // SAFETY: `utsname` is plain old data; an all-zero value is valid, and uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".to_owned();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!("{} {} {}", field(&uts.sysname), field(&uts.release), field(&uts.machine))
}

/// Raises the soft descriptor limit to the hard one; returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `raised` is a valid rlimit that asks for no more than the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return lim.rlim_max;
        }
    }
    lim.rlim_cur
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

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: `rusage` is plain old data; an all-zero value is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage and `who` a valid selector.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time (user + system) the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    rusage(libc::RUSAGE_THREAD)
}

/// CPU time (user + system) the whole process has used.
pub fn process_cpu_time() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_info_is_filled() {
        let m = MachineInfo::current();
        assert!(m.cores >= 1);
        assert!(!m.kernel.is_empty());
        assert_eq!(m.surge_version, SURGE_VERSION);
        assert!(!m.git_commit.is_empty());
    }

    #[test]
    fn fd_budget() {
        assert!(check_fd_budget(19_000, 20_000).is_ok());
        let err = check_fd_budget(30_000, 20_000).unwrap_err();
        assert!(err.to_string().contains("19936"), "{err}");
    }
}
