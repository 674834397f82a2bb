//! Child processes: servers started under `timeout` and `taskset`, all killed when the runner
//! ends (normally, on SIGINT/SIGTERM, or killed: the children get a parent-death signal);
//! and what /proc says about a process (CPU time, RSS).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Process ids to kill on the way out.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM set a flag that [`sleep`] and the phases check.
pub fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Whether a signal asked us to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Sleeps, waking early on a signal; false if interrupted.
pub fn sleep(d: Duration) -> bool {
    let end = Instant::now() + d;
    while !interrupted() {
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
    false
}

/// Kills every process still registered (SIGKILL): the exit path.
pub fn kill_all() {
    let pids = std::mem::take(&mut *LIVE.lock().unwrap());
    for pid in pids {
        // SAFETY: kill(2) with a pid we started; at worst it is gone (ESRCH).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn register(pid: i32) {
    LIVE.lock().unwrap().push(pid);
}

fn unregister(pid: i32) {
    LIVE.lock().unwrap().retain(|&p| p != pid);
}

/// A command that gets `sig` when the runner dies, so nothing outlives it.
pub fn with_parent_death(cmd: &mut Command, sig: libc::c_int) {
    // SAFETY: prctl is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A free loopback port (the OS's pick; released before the server binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// A started server: `timeout` (the time limit) running `taskset` running the server.
pub struct Server {
    /// The `timeout` process.
    child: Child,
    /// The server itself (the child of `timeout`, after taskset's exec).
    pub pid: i32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The command line, for the record.
    pub command: String,
    log: std::path::PathBuf,
}

impl Server {
    /// Starts `argv` on `cores` for at most `limit`, logging to `log`; waits until it accepts.
    pub fn start(
        argv: &[String],
        cores: &str,
        addr: SocketAddr,
        limit: Duration,
        log: &std::path::Path,
    ) -> Result<Server, String> {
        let mut cmd = Command::new("timeout");
        cmd.arg("-k").arg("5").arg(format!("{}", limit.as_secs().max(1)));
        cmd.arg("taskset").arg("-c").arg(cores).args(argv);
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // timeout passes SIGTERM on to the server.
        with_parent_death(&mut cmd, libc::SIGTERM);
        let command = format!("taskset -c {cores} {}", argv.join(" "));
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {command}: {e}"))?;
        register(child.id() as i32);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut pid = None;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                unregister(child.id() as i32);
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("{command} exited ({status}): {}", last_lines(&tail, 5)));
            }
            if pid.is_none() {
                pid = child_of(child.id() as i32);
                if let Some(p) = pid {
                    register(p);
                }
            }
            if let Some(p) = pid {
                // taskset has exec'd the server once the command name is no longer taskset's.
                let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
                if comm.trim() != "taskset"
                    && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                {
                    return Ok(Server { child, pid: p, addr, command, log: log.to_owned() });
                }
            }
            if Instant::now() > deadline || interrupted() {
                let mut s = Server { child, pid: pid.unwrap_or(0), addr, command, log: log.into() };
                s.stop();
                return Err(format!("{} did not start listening on {addr}", s.command));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of its output.
    pub fn log_tail(&self) -> String {
        last_lines(&std::fs::read_to_string(&self.log).unwrap_or_default(), 5)
    }

    /// SIGTERM, then SIGKILL after two seconds.
    pub fn stop(&mut self) {
        if self.pid > 0 {
            // SAFETY: kill(2) on the server we started.
            unsafe { libc::kill(self.pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.pid > 0 {
            // SAFETY: as above; ESRCH if it has gone.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        unregister(self.pid);
        unregister(self.child.id() as i32);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// The (single) child process of `pid`.
fn child_of(pid: i32) -> Option<i32> {
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        return s.split_whitespace().next().and_then(|p| p.parse().ok());
    }
    // No CONFIG_PROC_CHILDREN: scan for the parent id.
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(p) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        if stat_field(&stat, 4).and_then(|f| f.parse::<i32>().ok()) == Some(pid) {
            return Some(p);
        }
    }
    None
}

/// Field `n` (1-based, as in proc(5)) of a /proc/PID/stat line.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    // The command name (field 2) may hold spaces; it ends at the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(n - 3)
}

/// utime + stime of a process (all its threads), seconds.
pub fn cpu_seconds(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let utime: f64 = stat_field(&stat, 14)?.parse().ok()?;
    let stime: f64 = stat_field(&stat, 15)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) / hz)
}

/// Busy time (user, nice, system, irq, softirq) of `cores` from /proc/stat, seconds; and
/// the time stolen by the hypervisor from them.
pub fn cores_busy(cores: &[usize]) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let (mut busy, mut steal) = (0.0, 0.0);
    for line in stat.lines() {
        let mut f = line.split_whitespace();
        let Some(name) = f.next() else { continue };
        let Some(n) = name.strip_prefix("cpu").and_then(|n| n.parse::<usize>().ok()) else {
            continue;
        };
        if !cores.contains(&n) {
            continue;
        }
        let v: Vec<f64> = f.filter_map(|x| x.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal
        if v.len() >= 8 {
            busy += v[0] + v[1] + v[2] + v[5] + v[6];
            steal += v[7];
        }
    }
    Some((busy / hz, steal / hz))
}

/// VmRSS of a process, bytes.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs a command to the end, capturing stdout and stderr, killed after `limit`.
pub fn run_captured(cmd: &mut Command, limit: Duration) -> Result<(bool, String, String), String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    with_parent_death(cmd, libc::SIGKILL);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let pid = child.id() as i32;
    register(pid);
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline || interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    unregister(pid);
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = reader.join().unwrap_or_default();
    match status {
        Some(s) => Ok((s.success(), stdout, stderr)),
        None => Err(format!(
            "{cmd:?} ran past {limit:?} or was interrupted: {}",
            last_lines(&stderr, 5)
        )),
    }
}

/// A process started in the background and waited for later (the load generator).
pub struct Background {
    child: Child,
}

impl Background {
    /// Starts `cmd`, its output to `log`.
    pub fn start(cmd: &mut Command, log: &std::path::Path) -> Result<Background, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        with_parent_death(cmd, libc::SIGKILL);
        let child = cmd.spawn().map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        register(child.id() as i32);
        Ok(Background { child })
    }

    /// Waits for the end, killing it after `limit`; true if it exited with success.
    pub fn wait(mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let pid = self.child.id() as i32;
        let ok = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.success();
            }
            if Instant::now() > deadline || interrupted() {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        unregister(pid);
        ok
    }
}

/// A client that asks a server for `GET /metrics` every `every` (a Prometheus server's
/// scrape) until dropped; counts the answers that were 200.
pub struct Scraper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Scraper {
    pub fn start(addr: SocketAddr, every: Duration) -> Scraper {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut ok = 0;
            let request =
                format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            while !flag.load(Ordering::Relaxed) {
                let next = Instant::now() + every;
                let mut answer = Vec::new();
                let scraped = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                    .and_then(|mut s| {
                        s.set_read_timeout(Some(Duration::from_secs(1)))?;
                        s.write_all(request.as_bytes())?;
                        s.read_to_end(&mut answer)
                    });
                if scraped.is_ok() && answer.starts_with(b"HTTP/1.1 200 ") {
                    ok += 1;
                }
                while Instant::now() < next && !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            ok
        });
        Scraper { stop, thread: Some(thread) }
    }

    /// Stops; the scrapes answered 200.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}
