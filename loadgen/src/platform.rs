//! Every call into the operating system the tool makes outside mio and std: the `timerfd`
//! behind open-loop sends, timer slack, the descriptor limit, CPU-time accounting, the Ctrl-C
//! flag and socket options. Each call checks its result and reports failure as an
//! [`io::Error`]: a timer that failed to arm is an error, never a silent delay.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Maps a libc return value (negative on failure, errno set) to a result.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A one-shot `timerfd` on the monotonic clock, with nanosecond resolution (epoll's own
/// timeouts are whole milliseconds, too coarse for open-loop slots).
#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
    armed: Option<Instant>,
}

impl Timer {
    /// A new, disarmed, non-blocking timer.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with valid flags.
        let fd = check(unsafe {
            libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        })?;
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(Timer { fd: unsafe { OwnedFd::from_raw_fd(fd) }, armed: None })
    }

    /// The descriptor, to register with a poll instance.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Fires at `at` (relative to `now`); re-arms only when the deadline changed.
    pub fn arm(&mut self, at: Instant, now: Instant) -> io::Result<()> {
        if self.armed == Some(at) {
            return Ok(());
        }
        let rel = at.saturating_duration_since(now).max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: rel.as_secs() as libc::time_t,
                tv_nsec: rel.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid timerfd and itimerspec; the old value is not asked for.
        check(unsafe { libc::timerfd_settime(self.raw(), 0, &spec, std::ptr::null_mut()) })?;
        self.armed = Some(at);
        Ok(())
    }

    /// Consumes the expiration so that the next one is a fresh edge.
    pub fn clear(&mut self) -> io::Result<()> {
        self.armed = None;
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes into an 8-byte buffer from our own descriptor.
        let n = unsafe { libc::read(self.raw(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0.. => Ok(()),
            _ => match io::Error::last_os_error() {
                // Woken by an event that raced the expiration: nothing to consume.
                e if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                e => Err(e),
            },
        }
    }
}

/// Sets the calling thread's timer slack (the kernel's default 50 µs would round every
/// open-loop wake-up late).
pub fn set_timer_slack(slack: Duration) -> io::Result<()> {
    let ns = libc::c_ulong::try_from(slack.as_nanos()).unwrap_or(libc::c_ulong::MAX).max(1);
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches no memory.
    check(unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns) }).map(drop)
}

/// Pins the calling thread to `core`.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `cpu_set_t` is plain old data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core` is below CPU_SETSIZE (checked), so CPU_SET stays inside `set`.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size given.
    check(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })
        .map(drop)
}

/// Raises the soft descriptor limit to the hard one; returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `raised` is a valid rlimit that asks for no more than the hard limit.
        check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) })?;
        return Ok(lim.rlim_max);
    }
    Ok(lim.rlim_cur)
}

fn rusage(who: libc::c_int) -> io::Result<Duration> {
    // SAFETY: `rusage` is plain old data; an all-zero value is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage and `who` a valid selector.
    check(unsafe { libc::getrusage(who, &mut ru) })?;
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// CPU time (user + system) the calling thread has used.
pub fn thread_cpu_time() -> io::Result<Duration> {
    rusage(libc::RUSAGE_THREAD)
}

/// CPU time (user + system) the whole process has used.
pub fn process_cpu_time() -> io::Result<Duration> {
    rusage(libc::RUSAGE_SELF)
}

/// The kernel's name, release and machine, as `uname` reports them.
pub fn kernel() -> io::Result<String> {
    // SAFETY: `utsname` is plain old data; an all-zero value is valid, and uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    check(unsafe { libc::uname(&mut uts) })?;
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok(format!("{} {} {}", field(&uts.sysname), field(&uts.release), field(&uts.machine)))
}

/// Fresh keys for a WebSocket client connection (handshake nonce, masking seed), from the
/// operating system's random source.
pub fn random_keys() -> Result<surge_client::Keys, getrandom::Error> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce)?;
    Ok(surge_client::Keys { nonce, mask_seed: getrandom::u64()? })
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    // SAFETY: signal(2) is async-signal-safe; a second Ctrl-C then ends the process.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
}

/// Whether Ctrl-C was pressed since [`install_interrupt_handler`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Makes the first Ctrl-C set the [`interrupted`] flag (a run then ends early with a summary
/// of what was measured) and a second one end the process.
pub fn install_interrupt_handler() -> io::Result<()> {
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    // SAFETY: the handler only stores to an atomic and calls signal(2).
    let previous = unsafe { libc::signal(libc::SIGINT, handler as libc::sighandler_t) };
    if previous == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lets the kernel pick the source port at connect time from the whole 4-tuple, so that many
/// more than one ephemeral range of connections fit per source address.
pub fn set_bind_address_no_port(sock: &impl AsRawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: valid socket, option and a c_int-sized value.
    check(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_arms_fires_and_clears() {
        let mut t = Timer::new().unwrap();
        let now = Instant::now();
        t.arm(now + Duration::from_millis(1), now).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        t.clear().unwrap();
        // Nothing pending any more: clearing again is not an error.
        t.clear().unwrap();
    }

    #[test]
    fn accounting_calls_answer() {
        assert!(raise_fd_limit().unwrap() > 0);
        thread_cpu_time().unwrap();
        process_cpu_time().unwrap();
        assert!(!kernel().unwrap().is_empty());
        set_timer_slack(Duration::from_nanos(1)).unwrap();
        assert!(pin_current_thread(libc::CPU_SETSIZE as usize).is_err());
    }
}
