//! The `surge` binary as a child process: started on an ephemeral loopback port, measured
//! through `/proc`, killed when dropped (also when a test panics).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the server may take to start and say where it listens.
const STARTUP: Duration = Duration::from_secs(20);

/// How long descriptors may take to come back after an attack ends.
pub const FD_SETTLE: Duration = Duration::from_secs(10);

/// Lines of the server's log kept for failure messages.
const LOG_LINES: usize = 40;

/// The flags every test server gets unless a test overrides them: one loop (so that the
/// attacker and the witness share it: an attack that stalls the loop starves the witness),
/// short timeouts, a small message cap, no idle timeout (a test that wants one asks).
const DEFAULTS: [(&str, &str); 6] = [
    ("--threads", "1"),
    ("--handshake-timeout", "1s"),
    ("--close-timeout", "1s"),
    ("--idle-timeout", "off"),
    ("--max-message", "64KiB"),
    ("--log", "info"),
];

/// The message cap the defaults set.
pub const MAX_MESSAGE: usize = 64 << 10;

/// A running `surge echo`.
pub struct Surge {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Surge {
    /// Starts `surge echo` with the defaults.
    pub fn start() -> Surge {
        Surge::with(&[])
    }

    /// Starts `surge echo` with the defaults, each flag in `flags` replacing the default of
    /// the same name.
    pub fn with(flags: &[(&str, &str)]) -> Surge {
        let mut args: Vec<(&str, &str)> = DEFAULTS
            .iter()
            .filter(|(name, _)| !flags.iter().any(|(n, _)| n == name))
            .copied()
            .collect();
        args.extend_from_slice(flags);
        // The backend under test (`SURGE_TEST_BACKEND`), unless the test chose one.
        let backend = std::env::var("SURGE_TEST_BACKEND").unwrap_or_else(|_| "auto".into());
        if !args.iter().any(|(name, _)| *name == "--backend") {
            args.push(("--backend", &backend));
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_surge"));
        command.args(["echo", "--listen", "127.0.0.1:0"]);
        for (name, value) in &args {
            command.args([name, value]);
        }
        let mut child = command
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the surge binary");
        let stderr = child.stderr.take().expect("the server's stderr is piped");
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (found, address) = mpsc::channel();
        let keep = Arc::clone(&log);
        // Drains the log for the life of the process (the pipe must never fill), and reports
        // the address from the "listening on ws://ADDR" line.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening_address(&line) {
                    let _ = found.send(addr);
                }
                let mut log = keep.lock().expect("log lock");
                if log.len() == LOG_LINES {
                    log.pop_front();
                }
                log.push_back(line);
            }
        });
        let mut server = Surge { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), log };
        match address.recv_timeout(STARTUP) {
            Ok(addr) => server.addr = addr,
            Err(_) => panic!("surge did not report its address:\n{}", server.log_tail()),
        }
        server
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the server logged.
    pub fn log_tail(&self) -> String {
        let log = self.log.lock().expect("log lock");
        log.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }

    /// Panics unless the server process is still running.
    pub fn assert_alive(&mut self, after: &str) {
        match self.child.try_wait() {
            Ok(None) => {}
            Ok(Some(status)) => {
                panic!("surge exited ({status}) after {after}; its log:\n{}", self.log_tail())
            }
            Err(error) => panic!("cannot wait on surge: {error}"),
        }
    }

    /// Asks for a graceful shutdown (SIGTERM).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits at most `wait` for the process to exit.
    pub fn wait_exit(&mut self, wait: Duration) -> Option<ExitStatus> {
        let give_up = Instant::now() + wait;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait on surge") {
                return Some(status);
            }
            if Instant::now() >= give_up {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
    fn status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}"))
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// The peak of resident memory since the last [`reset_peak`](Self::reset_peak), in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.status_kib("VmHWM")
    }

    /// Restarts the peak at the current resident size (`/proc/PID/clear_refs`, Linux 4.0+).
    /// Where that is refused the peak stays the process's lifetime peak, which only makes
    /// the bounds measured with it stricter.
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    /// Open descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("list /proc/PID/fd").count()
    }

    /// Waits (at most [`FD_SETTLE`]) for the descriptor count to come back to `expected`.
    pub fn settle_fds(&self, expected: usize, after: &str) {
        let give_up = Instant::now() + FD_SETTLE;
        loop {
            let now = self.fds();
            if now == expected {
                return;
            }
            assert!(
                Instant::now() < give_up,
                "after {after}: {now} descriptors open, {expected} before ({FD_SETTLE:?} later)"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Surge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in a "listening on ws://ADDR" (or wss://) log line, colours or not.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on ")?;
    let rest = rest.strip_prefix("ws://").or_else(|| rest.strip_prefix("wss://"))?;
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}
