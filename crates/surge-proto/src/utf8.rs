//! UTF-8 validation of text message payloads (RFC 6455 §5.6, §8.1).
//!
//! A text message must be valid UTF-8 as a whole, but its bytes arrive in pieces: across
//! fragments and across socket reads, and a code point may be split anywhere. An endpoint should
//! also fail a connection as soon as the bytes received so far can no longer be the start of valid
//! UTF-8, rather than waiting for the end of the message (Autobahn test cases 6.4.x).
//!
//! [`validate`] checks a message that arrived in one piece; [`Utf8Validator`] checks one that
//! arrives in several. Both run the bulk of the work through `simdutf8`; both give the same
//! verdict as [`core::str::from_utf8`], and [`Utf8Validator::feed`] fails at exactly the byte at
//! which `from_utf8` of the prefix seen so far first reports an error with
//! [`error_len`](core::str::Utf8Error::error_len) `Some(_)`.
// One `unsafe` block (`ascii_as_str`), measured and tested under AddressSanitizer.
#![deny(unsafe_code)]

/// The bytes are not valid UTF-8 (or, mid-message, cannot be the start of valid UTF-8).
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
#[error("invalid UTF-8")]
pub struct InvalidUtf8;

/// Checks a whole buffer, e.g. a text message that arrived in a single frame.
///
/// # Errors
///
/// [`InvalidUtf8`] if `bytes` is not valid UTF-8, including when it ends inside a sequence.
#[inline]
pub fn validate(bytes: &[u8]) -> Result<&str, InvalidUtf8> {
    if bytes.len() < SHORT && bytes.is_ascii() {
        return Ok(ascii_as_str(bytes));
    }
    simdutf8::basic::from_utf8(bytes).map_err(|_| InvalidUtf8)
}

/// The `&str` of bytes already known to be ASCII.
///
/// Small text messages are mostly ASCII, and below simdutf8's block size it hands them to
/// `core::str::from_utf8`, an out-of-line call that measured over a third of the time a
/// server spends decoding a 20-byte masked text message (`benches/benches/decode.rs`); the
/// inlined word-wide `is_ascii` check plus this conversion costs a fraction of it. Safe code
/// has no way to get the `&str` without validating twice.
#[allow(unsafe_code)]
#[inline]
fn ascii_as_str(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: the only caller checked `bytes.is_ascii()`: every byte is below 0x80, and a
    // sequence of such bytes is valid UTF-8 (each byte is a one-byte code point).
    unsafe { core::str::from_utf8_unchecked(bytes) }
}

/// Value of `Utf8Validator::len` once the validator has failed: it stays failed until
/// [`Utf8Validator::reset`] or [`Utf8Validator::finish`].
const FAILED: u8 = u8::MAX;

/// Inputs shorter than this are validated by [`core::str::from_utf8`] directly (simdutf8 does
/// the same below its 64-byte SIMD block size).
const SHORT: usize = 64;

/// Streaming UTF-8 validator for a text message that arrives in pieces.
///
/// Feed the pieces in order with [`feed`](Self::feed), then call [`finish`](Self::finish) at
/// the end of the message. A sequence split between two pieces is carried over (at most 3
/// bytes, no allocation). Invalid input is reported by the first `feed` that contains the
/// offending byte, not at the end of the message.
///
/// After an error the validator stays failed: every further `feed` and the next `finish` return
/// [`InvalidUtf8`] until it is reset (`finish` and [`reset`](Self::reset) both reset it).
///
/// ```
/// use surge_proto::utf8::{InvalidUtf8, Utf8Validator};
///
/// let mut v = Utf8Validator::new();
/// // "é" (C3 A9) and "€" (E2 82 AC) split across three pieces.
/// v.feed(b"caf\xC3")?;
/// assert!(!v.is_clean());
/// v.feed(b"\xA9 10 \xE2\x82")?;
/// v.feed(b"\xAC")?;
/// v.finish()?;
///
/// // ED A0 would start a surrogate (U+D800..U+DFFF): rejected at once, mid-message.
/// assert_eq!(v.feed(b"ok \xED"), Ok(()));
/// assert_eq!(v.feed(b"\xA0"), Err(InvalidUtf8));
/// assert_eq!(v.finish(), Err(InvalidUtf8));
///
/// // A message may not end inside a sequence.
/// v.feed(b"\xF0\x9F\x98")?;
/// assert_eq!(v.finish(), Err(InvalidUtf8));
/// assert!(v.is_clean());
/// # Ok::<(), InvalidUtf8>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// Bytes of the incomplete sequence at the end of the input so far, in `carry[..len]`.
    /// Invariant: they are a valid prefix of a sequence of `seq_len(carry[0])` bytes and shorter
    /// than it, so `len <= 3`; the fourth slot lets the sequence be completed in place.
    carry: [u8; 4],
    /// Number of carried bytes (0..=3), or [`FAILED`].
    len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    #[must_use]
    pub const fn new() -> Self {
        Self { carry: [0; 4], len: 0 }
    }

    /// Validates the next piece of the message.
    ///
    /// An incomplete sequence at the end of `bytes` is carried to the next call.
    ///
    /// # Errors
    ///
    /// [`InvalidUtf8`] as soon as the bytes seen so far cannot be the start of valid UTF-8 (an
    /// invalid byte, an overlong form, a surrogate, a code point above U+10FFFF, a continuation
    /// byte where none may be, a sequence cut short by a new one), or if the validator had
    /// already failed.
    #[inline]
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), InvalidUtf8> {
        let rest = if self.len == 0 { bytes } else { self.complete_carry(bytes)? };
        self.feed_aligned(rest)
    }

    /// Ends the message.
    ///
    /// Always leaves the validator reset, ready for the next message.
    ///
    /// # Errors
    ///
    /// [`InvalidUtf8`] if the message ends inside a sequence, or if the validator had failed.
    #[inline]
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let clean = self.is_clean();
        self.reset();
        if clean {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// Returns to the state at the start of a message, forgetting carried bytes and a failure.
    #[inline]
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Whether the validator is at a character boundary: no carried bytes and not failed.
    #[must_use]
    #[inline]
    pub fn is_clean(&self) -> bool {
        self.len == 0
    }

    /// Marks the validator failed and returns the error.
    #[cold]
    fn fail(&mut self) -> InvalidUtf8 {
        self.len = FAILED;
        InvalidUtf8
    }

    /// Completes the carried sequence with the first bytes of `bytes`, or carries more of it.
    /// Returns the bytes after the completed sequence (empty if it is still incomplete).
    #[cold]
    fn complete_carry<'a>(&mut self, bytes: &'a [u8]) -> Result<&'a [u8], InvalidUtf8> {
        if self.len == FAILED {
            return Err(InvalidUtf8);
        }
        let have = usize::from(self.len);
        let take = (seq_len(self.carry[0]) - have).min(bytes.len());
        let (head, rest) = bytes.split_at(take);
        let seq = &mut self.carry[..have + take];
        seq[have..].copy_from_slice(head);
        match core::str::from_utf8(seq) {
            Ok(_) => {
                self.len = 0;
                Ok(rest)
            }
            // Still a valid prefix: `bytes` was too short to complete it (`rest` is empty).
            Err(e) if e.error_len().is_none() => {
                // `have + take < seq_len(carry[0]) <= 4`, so this fits in a `u8`.
                self.len += take as u8;
                Ok(rest)
            }
            Err(_) => Err(self.fail()),
        }
    }

    /// Validates `bytes`, which start at a character boundary; carries an incomplete tail.
    #[inline]
    fn feed_aligned(&mut self, bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if bytes.len() < SHORT {
            // simdutf8 would hand these to `from_utf8` anyway; one pass also finds the tail.
            return self.feed_short(bytes);
        }
        let (body, tail) = bytes.split_at(incomplete_tail_start(bytes));
        // The body ends at the end of `bytes` or just before a lead byte, so an error anywhere in
        // it, even an incomplete sequence at its end, is an error in the input so far.
        if simdutf8::basic::from_utf8(body).is_err() {
            return Err(self.fail());
        }
        if tail.is_empty() {
            return Ok(());
        }
        self.feed_short(tail)
    }

    /// Validates `bytes`, which start at a character boundary, with [`core::str::from_utf8`],
    /// whose `error_len()` tells an invalid sequence (`Some`) from an incomplete one at the end
    /// (`None`), which is carried.
    #[inline]
    fn feed_short(&mut self, bytes: &[u8]) -> Result<(), InvalidUtf8> {
        match core::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                // An incomplete sequence is at most 3 bytes long.
                let tail = &bytes[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(self.fail()),
        }
    }
}

/// Length of the sequence that `lead` starts: 2 to 4 for a lead byte that can start a valid
/// sequence, 1 for anything else (ASCII, continuation bytes, and C0, C1, F5..FF which never
/// appear in UTF-8).
#[inline]
const fn seq_len(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

/// Where the sequence that `bytes` ends inside starts, or `bytes.len()` if `bytes` does not end
/// inside one.
///
/// The lead byte of an incomplete trailing sequence is the last byte that is not a continuation
/// byte (10xxxxxx), and lies within the last 3 bytes.
#[inline]
fn incomplete_tail_start(bytes: &[u8]) -> usize {
    let n = bytes.len();
    match bytes.iter().rev().take(3).position(|&b| b & 0xC0 != 0x80) {
        Some(back) if seq_len(bytes[n - 1 - back]) > back + 1 => n - 1 - back,
        _ => n,
    }
}
