//! Close codes (RFC 6455 §7.4): an open newtype with a table of named constants, the pattern
//! of rustls' protocol enums. A module of its own, below the Close frame and the errors, which
//! both name it; re-exported from `close`.
#![forbid(unsafe_code)]

use core::fmt;

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
