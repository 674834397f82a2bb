//! Close codes and the Close frame's payload (RFC 6455 §5.5.1, §7.4).
#![forbid(unsafe_code)]

use core::fmt;

use crate::error::ProtocolError;

/// The status code carried by a Close frame.
///
/// An open newtype: every `u16` is representable, the registered codes have names, and
/// [`CloseCode::is_allowed_on_wire`] says whether a peer may send it.
///
/// ```
/// use surge_proto::close::CloseCode;
/// assert_eq!(CloseCode::NORMAL.as_u16(), 1000);
/// assert_eq!(format!("{:?}", CloseCode::from(1009)), "MESSAGE_TOO_BIG(1009)");
/// assert!(CloseCode::from(4000).is_allowed_on_wire());
/// assert!(!CloseCode::from(1005).is_allowed_on_wire());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

macro_rules! close_codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        impl CloseCode {
            $($(#[$doc])* pub const $name: CloseCode = CloseCode($value);)*

            /// The registered name of this code, if it has one.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

close_codes! {
    /// 1000: the purpose of the connection was fulfilled.
    NORMAL = 1000,
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    GOING_AWAY = 1001,
    /// 1002: the peer broke the protocol.
    PROTOCOL_ERROR = 1002,
    /// 1003: a data type the endpoint cannot accept.
    UNSUPPORTED_DATA = 1003,
    /// 1005: no status code was present (never sent on the wire).
    NO_STATUS = 1005,
    /// 1006: the connection dropped without a Close frame (never sent on the wire).
    ABNORMAL = 1006,
    /// 1007: message data inconsistent with its type, such as non-UTF-8 text.
    INVALID_PAYLOAD = 1007,
    /// 1008: a message violated the endpoint's policy.
    POLICY_VIOLATION = 1008,
    /// 1009: a message too big to process.
    MESSAGE_TOO_BIG = 1009,
    /// 1010: the client expected an extension the server did not negotiate.
    MANDATORY_EXTENSION = 1010,
    /// 1011: the server met an unexpected condition (a handler panicked, say).
    INTERNAL_ERROR = 1011,
    /// 1012: the service is restarting.
    SERVICE_RESTART = 1012,
    /// 1013: try again later (overload).
    TRY_AGAIN_LATER = 1013,
    /// 1014: a gateway received an invalid response.
    BAD_GATEWAY = 1014,
    /// 1015: the TLS handshake failed (never sent on the wire).
    TLS_HANDSHAKE = 1015,
}

impl CloseCode {
    /// The numeric value.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether an endpoint may put this code in a Close frame: the registered codes except
    /// 1004-1006 and 1015, and the ranges 3000-4999 for libraries and applications.
    pub const fn is_allowed_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(value: u16) -> Self {
        CloseCode(value)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}({})", self.0),
            None => write!(f, "CloseCode({})", self.0),
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

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

    /// Parses a received Close payload: empty, or a valid code followed by UTF-8.
    ///
    /// A one-byte payload or a code that may not be sent gives 1002; a reason that is not
    /// UTF-8 gives 1007.
    pub fn parse(payload: &[u8]) -> Result<Self, ProtocolError> {
        match payload {
            [] => Ok(Self::empty()),
            [_] => Err(ProtocolError::InvalidClosePayload),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_allowed_on_wire() {
                    return Err(ProtocolError::InvalidCloseCode(code));
                }
                let reason =
                    crate::utf8::validate(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Self::new(code, reason))
            }
        }
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
            payload.bytes[..2].copy_from_slice(&code.0.to_be_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_rules_follow_rfc_6455_section_7_4() {
        for code in 0..=u16::MAX {
            let allowed = CloseCode(code).is_allowed_on_wire();
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(allowed, expected, "{code}");
        }
    }

    #[test]
    fn parse_rejects_what_the_rfc_rejects() {
        assert_eq!(CloseFrame::parse(&[3]), Err(ProtocolError::InvalidClosePayload));
        assert_eq!(
            CloseFrame::parse(&999u16.to_be_bytes()),
            Err(ProtocolError::InvalidCloseCode(CloseCode(999)))
        );
        assert_eq!(CloseFrame::parse(&[0x03, 0xe8, 0xff]), Err(ProtocolError::InvalidUtf8));
        let ok = CloseFrame::parse(&[0x0f, 0xa0, b'h', b'i']).unwrap();
        assert_eq!((ok.code(), ok.reason()), (Some(CloseCode(4000)), "hi"));
        assert_eq!(CloseFrame::parse(&[]).unwrap().code(), None);
    }

    #[test]
    fn long_reasons_are_cut_at_a_char_boundary() {
        let reason = "é".repeat(100);
        let frame = CloseFrame::new(CloseCode::NORMAL, &reason);
        assert_eq!(frame.reason().len(), 122);
        assert_eq!(frame.to_payload().as_bytes().len(), 124);
        assert_eq!(CloseFrame::parse(frame.to_payload().as_bytes()).unwrap(), frame);
    }
}
