//! Close codes and the Close frame's payload (RFC 6455 §5.5.1, §7.4).
#![forbid(unsafe_code)]

use core::fmt;

pub use crate::close_code::CloseCode;
use crate::error::ProtocolError;

/// Largest payload of any control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Largest close reason: a control payload less the two bytes of the code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// A control frame's payload, held inline so that control frames never allocate and never
/// borrow the connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ControlPayload {
    len: u8,
    bytes: [u8; MAX_CONTROL_PAYLOAD],
}

impl ControlPayload {
    /// An empty payload.
    pub const EMPTY: ControlPayload = ControlPayload { len: 0, bytes: [0; MAX_CONTROL_PAYLOAD] };

    /// Copies `data`, or `None` when it is longer than 125 bytes.
    pub fn new(data: &[u8]) -> Option<Self> {
        let mut payload = Self::EMPTY;
        payload.bytes.get_mut(..data.len())?.copy_from_slice(data);
        payload.len = data.len() as u8;
        Some(payload)
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Appends what fits of `data` (a control frame arriving in pieces never exceeds 125
    /// bytes: the header decoder refuses longer ones).
    pub(crate) fn extend(&mut self, data: &[u8]) {
        let start = usize::from(self.len);
        let take = data.len().min(MAX_CONTROL_PAYLOAD - start);
        self.bytes[start..start + take].copy_from_slice(&data[..take]);
        self.len += take as u8;
    }
}

impl Default for ControlPayload {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl fmt::Debug for ControlPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ControlPayload").field(&self.as_bytes()).finish()
    }
}

/// The contents of a Close frame: an optional code and a UTF-8 reason of at most 123 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame {
    code: Option<CloseCode>,
    reason_len: u8,
    reason: [u8; MAX_CLOSE_REASON],
}

impl CloseFrame {
    /// A Close frame with a code and a reason; a reason over 123 bytes is cut at the last
    /// character boundary that fits.
    pub fn new(code: CloseCode, reason: &str) -> Self {
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut frame = CloseFrame { code: Some(code), reason_len: end as u8, reason: [0; 123] };
        frame.reason[..end].copy_from_slice(&reason.as_bytes()[..end]);
        frame
    }

    /// A Close frame with no payload at all (reported to the application as 1005).
    pub const fn empty() -> Self {
        CloseFrame { code: None, reason_len: 0, reason: [0; MAX_CLOSE_REASON] }
    }

    /// The code, or `None` when the peer sent an empty Close.
    pub const fn code(&self) -> Option<CloseCode> {
        self.code
    }

    /// The reason text.
    pub fn reason(&self) -> &str {
        // Only ever filled from a `&str` cut at a character boundary.
        core::str::from_utf8(&self.reason[..usize::from(self.reason_len)]).unwrap_or_default()
    }

    /// The frame's payload as it goes on the wire.
    pub fn to_payload(&self) -> ControlPayload {
        let mut payload = ControlPayload::EMPTY;
        if let Some(code) = self.code {
            let reason = &self.reason[..usize::from(self.reason_len)];
            payload.bytes[..2].copy_from_slice(&code.as_u16().to_be_bytes());
            payload.bytes[2..2 + reason.len()].copy_from_slice(reason);
            payload.len = 2 + self.reason_len;
        }
        payload
    }
}

impl fmt::Debug for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseFrame")
            .field("code", &self.code)
            .field("reason", &self.reason())
            .finish()
    }
}

/// A Close frame the peer sent, borrowed from the input that carried it (what the
/// connection's `Event::Close` reports): a code and a UTF-8 reason, or neither.
///
/// ```
/// use surge_proto::close::ReceivedClose;
///
/// let close = ReceivedClose::parse(&[0x03, 0xE8, b'b', b'y', b'e']).unwrap();
/// assert_eq!((close.code().map(|c| c.as_u16()), close.reason()), (Some(1000), "bye"));
/// assert_eq!(ReceivedClose::parse(&[]).unwrap().code(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedClose<'a> {
    code: Option<CloseCode>,
    reason: &'a str,
}

impl<'a> ReceivedClose<'a> {
    /// Parses a received Close payload: empty, or a valid code followed by UTF-8.
    ///
    /// A one-byte payload or a code that may not be sent gives 1002; a reason that is not
    /// UTF-8 gives 1007.
    pub fn parse(payload: &'a [u8]) -> Result<Self, ProtocolError> {
        match payload {
            [] => Ok(ReceivedClose { code: None, reason: "" }),
            [_] => Err(ProtocolError::InvalidClosePayload),
            [hi, lo, reason @ ..] => {
                let code = CloseCode::from(u16::from_be_bytes([*hi, *lo]));
                if !code.is_allowed_on_wire() {
                    return Err(ProtocolError::InvalidCloseCode(code));
                }
                let reason =
                    crate::utf8::validate(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(ReceivedClose { code: Some(code), reason })
            }
        }
    }

    /// The code, or `None` when the peer sent an empty Close.
    pub const fn code(&self) -> Option<CloseCode> {
        self.code
    }

    /// The reason text.
    pub const fn reason(&self) -> &'a str {
        self.reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_rules_follow_rfc_6455_section_7_4() {
        for code in 0..=u16::MAX {
            let allowed = CloseCode::from(code).is_allowed_on_wire();
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(allowed, expected, "{code}");
        }
    }

    #[test]
    fn parse_rejects_what_the_rfc_rejects() {
        assert_eq!(ReceivedClose::parse(&[3]), Err(ProtocolError::InvalidClosePayload));
        assert_eq!(
            ReceivedClose::parse(&999u16.to_be_bytes()),
            Err(ProtocolError::InvalidCloseCode(CloseCode::from(999)))
        );
        assert_eq!(ReceivedClose::parse(&[0x03, 0xe8, 0xff]), Err(ProtocolError::InvalidUtf8));
        let ok = ReceivedClose::parse(&[0x0f, 0xa0, b'h', b'i']).unwrap();
        assert_eq!((ok.code(), ok.reason()), (Some(CloseCode::from(4000)), "hi"));
        assert_eq!(ReceivedClose::parse(&[]).unwrap().code(), None);
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let reason = "é".repeat(100);
        let frame = CloseFrame::new(CloseCode::NORMAL, &reason);
        assert_eq!(frame.reason().len(), 122);
        assert_eq!(frame.to_payload().as_bytes().len(), 124);
        let payload = frame.to_payload();
        let parsed = ReceivedClose::parse(payload.as_bytes()).unwrap();
        assert_eq!((parsed.code(), parsed.reason()), (frame.code(), frame.reason()));
    }
}
