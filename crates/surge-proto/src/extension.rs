//! The extension seam (RFC 6455 §9), between frames and messages: the extension negotiated
//! in the opening handshake decides which RSV bits a message's first frame may carry, and
//! transforms payloads on receive and on send. [`NoExtension`] is the default and costs
//! nothing: every RSV bit is refused, payloads pass as they are, and a message that arrives
//! whole is still handed out borrowed from the input.
//!
//! # What an extension must provide
//!
//! permessage-deflate (RFC 7692) is the one this seam is shaped for:
//!
//! - [`Extension::allowed_rsv`]: the bits a message's first frame may set (RSV1, `0b100`).
//!   Continuation and control frames must carry none (RFC 7692 §6.1, §6): the connection
//!   refuses them with 1002 without asking.
//! - [`Extension::decodes`]: whether a message whose first frame carries these bits is
//!   transformed (RSV1 set: compressed).
//! - [`Extension::decode`]: called with each piece of a transformed message's payload as it
//!   arrives (unmasked, in order; `last` on the final one), appending what it decodes to the
//!   caller's assembly buffer. It must work in bounded chunks and refuse with
//!   [`ProtocolError::MessageTooLarge`] as soon as the decoded message would pass `max_len`,
//!   so that the cap holds on the inflated size, not the compressed one (a deflate bomb
//!   stops at the cap). Text is validated on the decoded bytes.
//! - [`Extension::encode`]: given a whole message's payload, append its transformed form and
//!   return the RSV bits for its first frame, or append nothing and return `None` to send it
//!   as it is (a message too small to compress). Only the first frame carries the bits.
//!   An encoder that keeps no state between messages (deflate with `no_context_takeover`)
//!   produces the same bytes for every connection with the same parameters, so a broadcast
//!   is encoded once per parameter set, by one instance, and the frame shared.
//!
//! ```
//! use surge_proto::extension::{Extension, NoExtension};
//!
//! let none = NoExtension;
//! assert_eq!(none.allowed_rsv(), 0);
//! assert!(!none.decodes(0b100));
//! ```

use crate::error::ProtocolError;

/// A negotiated extension; see the [module documentation](self).
pub trait Extension {
    /// The RSV bits (`FrameHeader::rsv`: RSV1 is `0b100`) a message's first frame may carry.
    fn allowed_rsv(&self) -> u8;

    /// Whether a message whose first frame carries `rsv` has a transformed payload.
    fn decodes(&self, rsv: u8) -> bool;

    /// Appends the decoded form of `input`, the next piece of a transformed message's
    /// payload (`last`: its final piece), to `out`, keeping `out` at most `max_len` bytes.
    fn decode(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), ProtocolError>;

    /// Whether [`Extension::encode`] can ever transform a payload: when false, sending
    /// takes the direct path (and a server may write a large payload straight from the
    /// caller's buffer).
    fn transforms_output(&self) -> bool;

    /// Appends the transformed form of a whole message's `payload` to `out` and returns the
    /// RSV bits of its first frame; or appends nothing and returns `None` to send it as it
    /// is.
    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Option<u8>;
}

/// No extension negotiated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoExtension;

impl Extension for NoExtension {
    fn allowed_rsv(&self) -> u8 {
        0
    }

    fn decodes(&self, _rsv: u8) -> bool {
        false
    }

    fn decode(
        &mut self,
        input: &[u8],
        _last: bool,
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), ProtocolError> {
        // Never called (no message is transformed), but correct if it were: the identity.
        if out.len() + input.len() > max_len {
            return Err(ProtocolError::MessageTooLarge);
        }
        out.extend_from_slice(input);
        Ok(())
    }

    fn transforms_output(&self) -> bool {
        false
    }

    fn encode(&mut self, _payload: &[u8], _out: &mut Vec<u8>) -> Option<u8> {
        None
    }
}

/// An extension negotiated on some connections only: `None` behaves as [`NoExtension`].
///
/// ```
/// use surge_proto::extension::{Extension, NoExtension};
///
/// let maybe: Option<NoExtension> = None;
/// assert_eq!(maybe.allowed_rsv(), 0);
/// assert!(!maybe.transforms_output());
/// ```
impl<E: Extension> Extension for Option<E> {
    #[inline]
    fn allowed_rsv(&self) -> u8 {
        self.as_ref().map_or(0, E::allowed_rsv)
    }

    #[inline]
    fn decodes(&self, rsv: u8) -> bool {
        self.as_ref().is_some_and(|e| e.decodes(rsv))
    }

    fn decode(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), ProtocolError> {
        match self {
            Some(e) => e.decode(input, last, out, max_len),
            None => NoExtension.decode(input, last, out, max_len),
        }
    }

    #[inline]
    fn transforms_output(&self) -> bool {
        self.as_ref().is_some_and(E::transforms_output)
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Option<u8> {
        self.as_mut().and_then(|e| e.encode(payload, out))
    }
}

/// An extension kept out of line: the connection pays a pointer for it.
impl<E: Extension + ?Sized> Extension for Box<E> {
    #[inline]
    fn allowed_rsv(&self) -> u8 {
        (**self).allowed_rsv()
    }

    #[inline]
    fn decodes(&self, rsv: u8) -> bool {
        (**self).decodes(rsv)
    }

    fn decode(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), ProtocolError> {
        (**self).decode(input, last, out, max_len)
    }

    #[inline]
    fn transforms_output(&self) -> bool {
        (**self).transforms_output()
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Option<u8> {
        (**self).encode(payload, out)
    }
}
