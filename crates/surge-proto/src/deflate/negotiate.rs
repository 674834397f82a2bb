//! permessage-deflate negotiation (RFC 7692 §5, §7.1): the server choosing among a client's
//! offers, the client building its offer and checking the server's answer.
//!
//! Both sides end with the same [`Params`]: the agreed parameters, which say for each
//! direction whether the sender resets its window after every message and how large a window
//! it may use ([`Params::sent_by`]). The server writes them as its response with
//! [`Params`]'s `Display`; the client reads that response back into equal `Params`.
//!
//! # Choices this module makes
//!
//! - **`client_max_window_bits` absent from the offer: 15.** The server must not name it in
//!   its response then (§7.1.2.2), so the client may use a 32 KiB window, and the server
//!   inflates with 15 bits. (Firefox offers no `client_max_window_bits`; a server that
//!   inflates its messages with a smaller window fails on the first long-range match.)
//! - **An 8-bit window.** zlib and zlib-rs cannot open a raw deflate stream with 8 window
//!   bits; they give 9. The RFC lets a server answer an offer of `server_max_window_bits=8`
//!   only with 8 (never more), so "answer 9" is not allowed, and the choice is between
//!   declining and answering 8. A zlib compressor opened with 9 bits never emits a match
//!   farther back than `512 - 262 = 250` bytes (`MAX_DIST`: the window minus the lookahead),
//!   so its output is a valid stream for a 256-byte window: answering 8 and compressing with
//!   9 keeps the agreement. This is what Node `ws` does (Node turns a raw 8 into 9), and it
//!   lets Autobahn's 13.3 and 13.5 cases negotiate. `tests/deflate.rs` checks the property by
//!   inflating such output with an 8-bit window. [`ServerPolicy::accept_8_bit_window`] and
//!   [`ClientOffer::accept_8_bit_window`] turn it off: an 8 then declines the offer (server)
//!   or fails the handshake (client).
//! - **A duplicate, unknown or malformed parameter declines that offer** (server) and fails
//!   the handshake (client); the next offer is still considered.
//! - Extension and parameter names are compared ASCII case-insensitively.

use core::fmt;

use super::header::{elements, Element, ElementError, Param, SyntaxError};
use crate::Role;

/// The registered extension name.
pub const NAME: &str = "permessage-deflate";

/// Smallest window bits a peer may name (RFC 7692 §7.1.2).
pub const MIN_WINDOW_BITS: u8 = 8;
/// Largest window bits, and the window used when none is named.
pub const MAX_WINDOW_BITS: u8 = 15;

/// The agreed permessage-deflate parameters, as the server's response states them.
///
/// `None` for a window means the response did not name it: the sender may use 15 bits.
///
/// ```
/// use surge_proto::deflate::negotiate::Params;
/// use surge_proto::Role;
///
/// let params = Params { client_no_context_takeover: true, server_max_window_bits: Some(12),
///                       ..Params::default() };
/// assert_eq!(params.to_string(),
///            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12");
/// assert_eq!(params.sent_by(Role::Server).window_bits, 12);
/// assert_eq!(params.sent_by(Role::Client).window_bits, 15);
/// assert!(params.sent_by(Role::Client).no_context_takeover);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Params {
    /// The server resets its compression window after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression window after every message.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with, 8..=15.
    pub server_max_window_bits: Option<u8>,
    /// The largest window the client compresses with, 8..=15.
    pub client_max_window_bits: Option<u8>,
}

/// What the agreement means for the messages one side sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Direction {
    /// The sender resets its window after each message, so the receiver need keep no state
    /// between messages (and can share one decompressor among connections).
    pub no_context_takeover: bool,
    /// The largest window the sender may use, 8..=15; the receiver inflates with at least this.
    pub window_bits: u8,
}

impl Params {
    /// The parameters of the messages that `sender` sends.
    pub fn sent_by(&self, sender: Role) -> Direction {
        let (no_context_takeover, bits) = match sender {
            Role::Server => (self.server_no_context_takeover, self.server_max_window_bits),
            Role::Client => (self.client_no_context_takeover, self.client_max_window_bits),
        };
        Direction { no_context_takeover, window_bits: bits.unwrap_or(MAX_WINDOW_BITS) }
    }
}

impl fmt::Display for Params {
    /// The `Sec-WebSocket-Extensions` value of the server's response.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_element(
            f,
            self.server_no_context_takeover,
            self.client_no_context_takeover,
            self.server_max_window_bits,
            self.client_max_window_bits.map(Some),
        )
    }
}

/// One permessage-deflate element, as an offer or an answer writes it: `client_max_window_bits`
/// is `Some(None)` when offered without a value.
fn write_element(
    f: &mut fmt::Formatter<'_>,
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<Option<u8>>,
) -> fmt::Result {
    f.write_str(NAME)?;
    if server_no_context_takeover {
        f.write_str("; server_no_context_takeover")?;
    }
    if client_no_context_takeover {
        f.write_str("; client_no_context_takeover")?;
    }
    if let Some(bits) = server_max_window_bits {
        write!(f, "; server_max_window_bits={bits}")?;
    }
    match client_max_window_bits {
        Some(Some(bits)) => write!(f, "; client_max_window_bits={bits}"),
        Some(None) => f.write_str("; client_max_window_bits"),
        None => Ok(()),
    }
}

/// Why a permessage-deflate parameter list is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// The element does not follow the header grammar.
    #[error("malformed extension element: {0}")]
    Syntax(SyntaxError),
    /// A parameter RFC 7692 does not define.
    #[error("unknown permessage-deflate parameter")]
    Unknown,
    /// A parameter given twice.
    #[error("duplicate permessage-deflate parameter")]
    Duplicate,
    /// A value where none is allowed, none where one is required, or a window-bits value that
    /// is not 8..=15 written without a leading zero.
    #[error("invalid permessage-deflate parameter value")]
    InvalidValue,
}

/// A permessage-deflate parameter list as written, checked for syntax, duplicates and values.
///
/// `client_max_window_bits` is `Some(None)` when named without a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RawParams {
    /// `server_no_context_takeover` is present.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover` is present.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N`.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits` or `client_max_window_bits=N`.
    pub client_max_window_bits: Option<Option<u8>>,
}

impl RawParams {
    /// Reads an element's parameters.
    ///
    /// ```
    /// use surge_proto::deflate::header::Element;
    /// use surge_proto::deflate::negotiate::{ParamError, RawParams};
    ///
    /// let raw = RawParams::parse(&Element::new("permessage-deflate",
    ///     "client_max_window_bits; server_max_window_bits=\"10\"")).unwrap();
    /// assert_eq!(raw.client_max_window_bits, Some(None));
    /// assert_eq!(raw.server_max_window_bits, Some(10));
    /// let dup = Element::new("permessage-deflate", "server_no_context_takeover; server_no_context_takeover");
    /// assert_eq!(RawParams::parse(&dup), Err(ParamError::Duplicate));
    /// ```
    pub fn parse(element: &Element<'_>) -> Result<Self, ParamError> {
        let mut raw = Self::default();
        for param in element.params() {
            raw.add(param.map_err(ParamError::Syntax)?)?;
        }
        Ok(raw)
    }

    fn add(&mut self, param: Param<'_>) -> Result<(), ParamError> {
        let name = param.name;
        if name.eq_ignore_ascii_case("server_no_context_takeover") {
            set_flag(&mut self.server_no_context_takeover, param)
        } else if name.eq_ignore_ascii_case("client_no_context_takeover") {
            set_flag(&mut self.client_no_context_takeover, param)
        } else if name.eq_ignore_ascii_case("server_max_window_bits") {
            if self.server_max_window_bits.is_some() {
                return Err(ParamError::Duplicate);
            }
            self.server_max_window_bits =
                Some(window_bits(param)?.ok_or(ParamError::InvalidValue)?);
            Ok(())
        } else if name.eq_ignore_ascii_case("client_max_window_bits") {
            if self.client_max_window_bits.is_some() {
                return Err(ParamError::Duplicate);
            }
            self.client_max_window_bits = Some(window_bits(param)?);
            Ok(())
        } else {
            Err(ParamError::Unknown)
        }
    }
}

fn set_flag(flag: &mut bool, param: Param<'_>) -> Result<(), ParamError> {
    if *flag {
        return Err(ParamError::Duplicate);
    }
    if param.value.is_some() {
        return Err(ParamError::InvalidValue);
    }
    *flag = true;
    Ok(())
}

/// `Ok(None)` without a value; an error for a value that is not 8..=15.
fn window_bits(param: Param<'_>) -> Result<Option<u8>, ParamError> {
    let Some(value) = param.value else { return Ok(None) };
    match value.small_decimal() {
        Some(n) if (u16::from(MIN_WINDOW_BITS)..=u16::from(MAX_WINDOW_BITS)).contains(&n) => {
            Ok(u8::try_from(n).ok())
        }
        _ => Err(ParamError::InvalidValue),
    }
}

/// Why the server declines one permessage-deflate offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Decline {
    /// The element names another extension.
    #[error("not a permessage-deflate offer")]
    OtherExtension,
    /// The element does not follow the header grammar.
    #[error("malformed extension element: {0}")]
    Syntax(SyntaxError),
    /// The parameters are not acceptable.
    #[error("unacceptable parameters: {0}")]
    Param(ParamError),
    /// The offer asks for an 8-bit server window and the policy refuses it.
    #[error("offer asks for an 8-bit server window")]
    EightBitWindow,
}

/// What a server accepts and asks for.
///
/// The default costs no memory per connection at rest: both directions without context
/// takeover, so one compressor and one decompressor per event loop serve every connection,
/// at the full 15-bit window (which then costs per loop, not per connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerPolicy {
    /// Answer with `server_no_context_takeover` even when not asked: the server resets its
    /// window after every message (a shared compressor, and broadcast compressed once).
    pub server_no_context_takeover: bool,
    /// Answer with `client_no_context_takeover`, which the server may always do: the client
    /// must reset after every message, so the server needs no inflate state per connection.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with, 9..=15 (an offer may lower it).
    pub server_max_window_bits: u8,
    /// The largest window the server wants to inflate with, 9..=15; asked for only when the
    /// offer names `client_max_window_bits`, else the server inflates with 15.
    pub client_max_window_bits: u8,
    /// Answer an offer of `server_max_window_bits=8` with 8 and compress with zlib's 9-bit
    /// window (see the [module docs](self)); when false such an offer is declined.
    pub accept_8_bit_window: bool,
}

impl Default for ServerPolicy {
    fn default() -> Self {
        Self {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            accept_8_bit_window: true,
        }
    }
}

impl ServerPolicy {
    /// Chooses the first acceptable permessage-deflate offer among every element of every
    /// `Sec-WebSocket-Extensions` value, declining the others; `None` when none is
    /// acceptable (answer without the extension).
    ///
    /// ```
    /// use surge_proto::deflate::negotiate::ServerPolicy;
    ///
    /// let values: [&[u8]; 2] = [b"permessage-deflate; server_max_window_bits=7",
    ///                           b"permessage-deflate; client_max_window_bits"];
    /// let params = ServerPolicy::default().negotiate(values).unwrap();
    /// assert_eq!(params.to_string(),
    ///            "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    /// ```
    pub fn negotiate<'a, I>(&self, values: I) -> Option<Params>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        elements(values).find_map(|element| self.accept(element).ok())
    }

    /// Accepts or declines one element of the client's list.
    pub fn accept(&self, element: Result<Element<'_>, ElementError>) -> Result<Params, Decline> {
        let element = element.map_err(|e| Decline::Syntax(e.error))?;
        if !element.is(NAME) {
            return Err(Decline::OtherExtension);
        }
        let offer = RawParams::parse(&element).map_err(Decline::Param)?;
        self.accept_params(&offer)
    }

    /// Accepts or declines an offer whose parameters are already read.
    pub fn accept_params(&self, offer: &RawParams) -> Result<Params, Decline> {
        let server_cap = self.server_max_window_bits.clamp(9, MAX_WINDOW_BITS);
        let server_max_window_bits = match offer.server_max_window_bits {
            // The answer must not exceed what was asked for (§7.1.2.1).
            Some(asked) => {
                let bits = asked.min(server_cap);
                if bits == MIN_WINDOW_BITS && !self.accept_8_bit_window {
                    return Err(Decline::EightBitWindow);
                }
                Some(bits)
            }
            None => (server_cap < MAX_WINDOW_BITS).then_some(server_cap),
        };
        let client_cap = self.client_max_window_bits.clamp(9, MAX_WINDOW_BITS);
        let client_max_window_bits = match offer.client_max_window_bits {
            // Not offered: must not be answered, and the client may use 15 (§7.1.2.2).
            None => None,
            // Offered with a hint: answer the smaller of the hint and the policy, so that the
            // window the client will use is stated (15 included, for clarity).
            Some(Some(hint)) => Some(hint.min(client_cap)),
            Some(None) => (client_cap < MAX_WINDOW_BITS).then_some(client_cap),
        };
        Ok(Params {
            server_no_context_takeover: offer.server_no_context_takeover
                || self.server_no_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits,
            client_max_window_bits,
        })
    }
}

/// What a client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientOffer {
    /// Ask the server to reset its window after every message.
    pub server_no_context_takeover: bool,
    /// Announce that the client resets its window after every message.
    pub client_no_context_takeover: bool,
    /// Ask the server to compress with at most this window, 8..=15.
    pub server_max_window_bits: Option<u8>,
    /// Offer `client_max_window_bits`, letting the server limit the client's window:
    /// `Some(None)` without a value, `Some(Some(n))` with the hint that the client uses at
    /// most `n` (8..=15), `None` not at all (the client then uses 15).
    pub client_max_window_bits: Option<Option<u8>>,
    /// Accept a response that limits the client to an 8-bit window (compressing with zlib's
    /// 9-bit window; see the [module docs](self)); when false such a response fails.
    pub accept_8_bit_window: bool,
}

impl Default for ClientOffer {
    /// `permessage-deflate; client_max_window_bits`, what browsers send.
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: Some(None),
            accept_8_bit_window: true,
        }
    }
}

impl fmt::Display for ClientOffer {
    /// The `Sec-WebSocket-Extensions` value of the request.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_element(
            f,
            self.server_no_context_takeover,
            self.client_no_context_takeover,
            self.server_max_window_bits,
            self.client_max_window_bits,
        )
    }
}

/// Why a client refuses the server's `Sec-WebSocket-Extensions` answer; each fails the
/// handshake (RFC 6455 §4.1: _Fail the WebSocket Connection_).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The answer does not follow the header grammar.
    #[error("malformed extension element: {0}")]
    Syntax(SyntaxError),
    /// The answer names an extension that was not offered.
    #[error("server answered with an extension that was not offered")]
    UnexpectedExtension,
    /// permessage-deflate is answered more than once.
    #[error("server answered permessage-deflate more than once")]
    Repeated,
    /// The parameters are unknown, repeated or malformed.
    #[error("unacceptable parameters: {0}")]
    Param(ParamError),
    /// `client_max_window_bits` answered although not offered, or answered without a value.
    #[error("client_max_window_bits was not offered or has no value")]
    ClientWindowNotOffered,
    /// A window larger than the offer allows.
    #[error("server answered a window larger than offered")]
    WindowTooLarge,
    /// `server_no_context_takeover` was asked for and is missing from the answer (§7.1.1.1).
    #[error("server did not confirm server_no_context_takeover")]
    MissingServerNoContextTakeover,
    /// The answer limits the client to an 8-bit window and the offer refuses that.
    #[error("server limits the client to an 8-bit window")]
    EightBitWindow,
}

impl core::str::FromStr for ClientOffer {
    type Err = ParamError;

    /// Reads an offer written as in the header (RFC 7692 §5), with or without the leading
    /// `permessage-deflate`: the parameters are exactly those written (an empty list offers
    /// no `client_max_window_bits`, unlike [`ClientOffer::default`]), checked as the server
    /// checks them.
    ///
    /// ```
    /// use surge_proto::deflate::negotiate::{ClientOffer, ParamError};
    ///
    /// let offer: ClientOffer = "client_max_window_bits; server_no_context_takeover".parse().unwrap();
    /// assert!(offer.server_no_context_takeover);
    /// assert_eq!(offer.client_max_window_bits, Some(None));
    /// assert_eq!(offer.to_string().parse::<ClientOffer>(), Ok(offer));
    /// assert_eq!("server_max_window_bits=16".parse::<ClientOffer>(), Err(ParamError::InvalidValue));
    /// ```
    fn from_str(s: &str) -> Result<Self, ParamError> {
        let params = match s.split_once(';') {
            Some((name, rest)) if name.trim().eq_ignore_ascii_case(NAME) => rest,
            None if s.trim().eq_ignore_ascii_case(NAME) => "",
            _ => s,
        };
        let raw = RawParams::parse(&Element::new(NAME, params))?;
        Ok(ClientOffer {
            server_no_context_takeover: raw.server_no_context_takeover,
            client_no_context_takeover: raw.client_no_context_takeover,
            server_max_window_bits: raw.server_max_window_bits,
            client_max_window_bits: raw.client_max_window_bits,
            accept_8_bit_window: true,
        })
    }
}

impl ClientOffer {
    /// Checks the server's answer, every `Sec-WebSocket-Extensions` value of the 101
    /// response in order: `Ok(None)` when the server declined (no extension), the agreed
    /// parameters when it accepted.
    ///
    /// ```
    /// use surge_proto::deflate::negotiate::{ClientOffer, ResponseError};
    ///
    /// let offer = ClientOffer::default();
    /// let ok: [&[u8]; 1] = [b"permessage-deflate; client_max_window_bits=10"];
    /// assert_eq!(offer.check_response(ok).unwrap().unwrap().client_max_window_bits, Some(10));
    /// let bad: [&[u8]; 1] = [b"permessage-deflate; server_max_window_bits=16"];
    /// assert!(matches!(offer.check_response(bad), Err(ResponseError::Param(_))));
    /// ```
    pub fn check_response<'a, I>(&self, values: I) -> Result<Option<Params>, ResponseError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut agreed = None;
        for element in elements(values) {
            let element = element.map_err(|e| ResponseError::Syntax(e.error))?;
            if !element.is(NAME) {
                return Err(ResponseError::UnexpectedExtension);
            }
            if agreed.is_some() {
                return Err(ResponseError::Repeated);
            }
            let raw = RawParams::parse(&element).map_err(ResponseError::Param)?;
            agreed = Some(self.check_params(&raw)?);
        }
        Ok(agreed)
    }

    /// Checks an answer whose parameters are already read.
    pub fn check_params(&self, answer: &RawParams) -> Result<Params, ResponseError> {
        if self.server_no_context_takeover && !answer.server_no_context_takeover {
            return Err(ResponseError::MissingServerNoContextTakeover);
        }
        if let (Some(asked), Some(answered)) =
            (self.server_max_window_bits, answer.server_max_window_bits)
        {
            if answered > asked {
                return Err(ResponseError::WindowTooLarge);
            }
        }
        if self.server_max_window_bits.is_some() && answer.server_max_window_bits.is_none() {
            // §7.1.2.1: accepting an offer with server_max_window_bits means naming it.
            return Err(ResponseError::WindowTooLarge);
        }
        let client_max_window_bits =
            match (self.client_max_window_bits, answer.client_max_window_bits) {
                (_, None) => None,
                (None, Some(_)) | (Some(_), Some(None)) => {
                    return Err(ResponseError::ClientWindowNotOffered)
                }
                (Some(hint), Some(Some(bits))) => {
                    if hint.is_some_and(|hint| bits > hint) {
                        return Err(ResponseError::WindowTooLarge);
                    }
                    if bits == MIN_WINDOW_BITS && !self.accept_8_bit_window {
                        return Err(ResponseError::EightBitWindow);
                    }
                    Some(bits)
                }
            };
        Ok(Params {
            server_no_context_takeover: answer.server_no_context_takeover,
            client_no_context_takeover: answer.client_no_context_takeover,
            server_max_window_bits: answer.server_max_window_bits,
            client_max_window_bits,
        })
    }
}
