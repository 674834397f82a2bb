//! The randomness rustls draws through the provider (`CryptoProvider::secure_random`: each
//! handshake's server random, TLS 1.2 session ids, TLS 1.3 ticket nonces and age offsets),
//! served from a per-thread buffer that one getrandom(2) call fills, where ring's
//! `SystemRandom` makes one call per value (five per full TLS 1.3 handshake with two tickets).
//!
//! Each byte is served once and zeroed as it goes, so what is still buffered is only what no
//! one has had yet. A failure of the kernel's source is the draw's error (rustls fails that
//! handshake), never zeroes or stale bytes.
//!
//! Across fork(2): the child is a copy of the forking thread, buffer included, so without care
//! parent and child would serve the same bytes. A handler registered once with
//! `pthread_atfork` counts forks in the child; a buffer filled before the count moved is
//! dropped unserved, and the child's first draw refills from the kernel. (A process made by
//! a raw `clone(2)` that skips libc's fork handlers is not covered; `posix_spawn`, vfork and
//! fork-then-exec children never draw.) Where the handler cannot be registered, every draw
//! goes to the kernel as ring's does.
//!
//! What this does not reach: ring's own `SystemRandom`, which rustls' ring provider hands to
//! the X25519 key generation, ECDSA signing and the ticketer's nonces. ring takes it as
//! `&dyn ring::rand::SecureRandom`, a sealed trait, so those stay one getrandom(2) each
//! without a fork of ring.
//!
//! `unsafe` here: registering the fork handler (libc), and the fork test.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rustls::crypto::{GetRandomFailed, SecureRandom};

/// Bytes one refill draws from the kernel: about 39 full handshakes' worth (104 bytes each).
const BUFFER: usize = 4096;

/// rustls' [`SecureRandom`], served from the calling thread's buffer.
#[derive(Debug)]
pub(crate) struct BufferedRandom;

/// The one instance a provider points to (`secure_random` is `&'static`).
pub(crate) static BUFFERED_RANDOM: BufferedRandom = BufferedRandom;

impl SecureRandom for BufferedRandom {
    fn fill(&self, out: &mut [u8]) -> Result<(), GetRandomFailed> {
        if !*FORKS_WATCHED.get_or_init(watch_forks) {
            return kernel(out);
        }
        let forks = FORKS.load(Ordering::Relaxed);
        BUFFERED.with_borrow_mut(|buffered| buffered.serve(out, forks, kernel))
    }
}

/// Forks this process has been the child of (counted by the `pthread_atfork` handler).
static FORKS: AtomicU64 = AtomicU64::new(0);

/// Whether forks are counted (the handler is registered).
static FORKS_WATCHED: OnceLock<bool> = OnceLock::new();

thread_local! {
    static BUFFERED: RefCell<Buffered> = const { RefCell::new(Buffered::EMPTY) };
}

extern "C" fn forked() {
    // In the child, on the only thread it has: an atomic add is async-signal-safe.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

fn watch_forks() -> bool {
    // SAFETY: registers `forked`, a function that lives as long as the program and only adds
    // to an atomic, as the handler libc runs in the child after fork(2); no prepare or
    // parent handler. pthread_atfork has no other precondition.
    unsafe { libc::pthread_atfork(None, None, Some(forked)) == 0 }
}

/// The kernel's source (getrandom(2), or what the `getrandom` crate falls back to).
fn kernel(out: &mut [u8]) -> Result<(), GetRandomFailed> {
    getrandom::fill(out).map_err(|_| GetRandomFailed)
}

/// A thread's buffer: `bytes[at..]` not served yet.
struct Buffered {
    bytes: [u8; BUFFER],
    at: usize,
    /// The fork count when `bytes` was filled.
    forks: u64,
}

impl Buffered {
    const EMPTY: Buffered = Buffered { bytes: [0; BUFFER], at: BUFFER, forks: 0 };

    /// Fills `out` from the buffer, refilling it from `source` as it runs out; bytes filled
    /// under another fork count than `forks` are dropped first.
    fn serve(
        &mut self,
        out: &mut [u8],
        forks: u64,
        mut source: impl FnMut(&mut [u8]) -> Result<(), GetRandomFailed>,
    ) -> Result<(), GetRandomFailed> {
        if forks != self.forks {
            self.bytes[self.at..].fill(0);
            self.at = BUFFER;
            self.forks = forks;
        }
        let mut done = 0;
        while done < out.len() {
            if self.at == BUFFER {
                // Marked empty until the source has filled it all: a failed refill serves
                // nothing of what it may have written.
                source(&mut self.bytes)?;
                self.at = 0;
            }
            let n = (out.len() - done).min(BUFFER - self.at);
            let served = &mut self.bytes[self.at..self.at + n];
            out[done..done + n].copy_from_slice(served);
            served.fill(0);
            self.at += n;
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A source that counts its calls and fills with its call number (1, 2, ...).
    fn counting(calls: &mut u8) -> impl FnMut(&mut [u8]) -> Result<(), GetRandomFailed> + '_ {
        move |buf| {
            *calls += 1;
            buf.fill(*calls);
            Ok(())
        }
    }

    #[test]
    fn draws_differ_and_each_byte_is_served_once() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        BUFFERED_RANDOM.fill(&mut a).unwrap();
        BUFFERED_RANDOM.fill(&mut b).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0; 32]);
        // What was served is gone from the buffer.
        BUFFERED.with_borrow(|buffered| {
            assert!(buffered.at >= 64);
            assert!(buffered.bytes[..buffered.at].iter().all(|&byte| byte == 0));
        });
    }

    #[test]
    fn draws_differ_between_threads() {
        let draw = || {
            let mut bytes = [0u8; 32];
            BUFFERED_RANDOM.fill(&mut bytes).unwrap();
            bytes
        };
        let other = std::thread::spawn(draw).join().unwrap();
        assert_ne!(draw(), other);
    }

    #[test]
    fn refills_once_the_buffer_runs_out_and_serves_across_the_refill() {
        let mut calls = 0;
        let mut buffered = Buffered::EMPTY;
        let mut out = vec![0u8; BUFFER - 8];
        buffered.serve(&mut out, 0, counting(&mut calls)).unwrap();
        assert!(out.iter().all(|&byte| byte == 1));
        // 8 left from the first fill, 8 from the second.
        let mut across = [0u8; 16];
        buffered.serve(&mut across, 0, counting(&mut calls)).unwrap();
        assert_eq!(across, [[1; 8], [2; 8]].concat()[..]);
        // A draw larger than the buffer takes as many refills as it needs.
        let mut large = vec![0u8; 2 * BUFFER];
        buffered.serve(&mut large, 0, counting(&mut calls)).unwrap();
        assert_eq!(calls, 4);
        assert!(large[BUFFER - 8..2 * BUFFER - 8].iter().all(|&byte| byte == 3));
    }

    #[test]
    fn a_failing_source_is_an_error_and_nothing_it_wrote_is_served() {
        let mut buffered = Buffered::EMPTY;
        let mut out = [7u8; 16];
        let failing = |buf: &mut [u8]| {
            buf[..8].fill(9); // a partial fill, then the failure
            Err(GetRandomFailed)
        };
        assert!(buffered.serve(&mut out, 0, failing).is_err());
        assert_eq!(out, [7; 16], "no zeroes, no partial bytes handed out");
        let mut calls = 0;
        buffered.serve(&mut out, 0, counting(&mut calls)).unwrap();
        assert_eq!((out, calls), ([1; 16], 1), "the next draw refills");
    }

    #[test]
    fn a_new_fork_count_drops_what_was_buffered() {
        let mut calls = 0;
        let mut buffered = Buffered::EMPTY;
        let mut out = [0u8; 16];
        buffered.serve(&mut out, 0, counting(&mut calls)).unwrap();
        buffered.serve(&mut out, 1, counting(&mut calls)).unwrap();
        assert_eq!((out, calls), ([2; 16], 2));
    }

    /// A real fork after this thread's buffer was filled: the child's next bytes are not the
    /// parent's next bytes.
    #[test]
    fn a_forked_child_draws_bytes_of_its_own() {
        let mut warm = [0u8; 8];
        BUFFERED_RANDOM.fill(&mut warm).unwrap();
        let (mut from_child, mut to_parent) = std::io::pipe().unwrap();
        // SAFETY: the child runs only async-signal-safe work on this thread's state: a draw
        // (an atomic load, this thread's buffer, getrandom(2)), a write(2) to the pipe and
        // _exit(2); it never returns into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mut bytes = [0u8; 32];
            let ok =
                BUFFERED_RANDOM.fill(&mut bytes).is_ok() && to_parent.write_all(&bytes).is_ok();
            // SAFETY: ends the child at once, without running the parent's exit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        drop(to_parent);
        let mut ours = [0u8; 32];
        BUFFERED_RANDOM.fill(&mut ours).unwrap();
        let mut theirs = [0u8; 32];
        from_child.read_exact(&mut theirs).unwrap();
        let mut status = 0;
        // SAFETY: waits for the child forked above; `status` is a valid place to write.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child failed");
        assert_ne!(ours, theirs, "parent and child served the same bytes");
    }
}
