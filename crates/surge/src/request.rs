//! The opening handshake request as the handler sees it.

use std::net::SocketAddr;

use surge_proto::handshake::{ExtensionOffer, Header, UpgradeRequest};

/// A valid WebSocket upgrade request, borrowed from the loop's buffers for the length of
/// [`Handler::on_upgrade`](crate::Handler::on_upgrade).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    inner: UpgradeRequest<'a, 'a>,
    peer: SocketAddr,
}

impl<'a> Request<'a> {
    pub(crate) fn new(inner: UpgradeRequest<'a, 'a>, peer: SocketAddr) -> Self {
        Request { inner, peer }
    }

    /// The path of the target, without the query, e.g. `/chat` (not percent-decoded).
    pub fn path(&self) -> &'a str {
        self.inner.path()
    }

    /// The query after the first `?`, if any (not percent-decoded).
    pub fn query(&self) -> Option<&'a str> {
        self.inner.query()
    }

    /// The request target as sent, e.g. `/chat?room=1`.
    pub fn target(&self) -> &'a str {
        self.inner.target()
    }

    /// The value of the first header named `name` (case-insensitive), as received.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.inner.header(name)
    }

    /// Every header field, in order.
    pub fn headers(&self) -> &'a [Header<'a>] {
        self.inner.headers()
    }

    /// The `Host` header value.
    pub fn host(&self) -> &'a [u8] {
        self.inner.host()
    }

    /// The `Origin` header value, if present.
    pub fn origin(&self) -> Option<&'a [u8]> {
        self.inner.origin()
    }

    /// Whether the request may come from a page of one of `allowed` origins (e.g.
    /// `"https://example.com"`, compared ASCII-case-insensitively). A request without
    /// `Origin` is not from a browser page and passes; reject it yourself if you need a
    /// browser. For one list for the whole server, use
    /// [`ConfigBuilder::allowed_origins`](crate::ConfigBuilder::allowed_origins) instead.
    pub fn origin_in(&self, allowed: &[&str]) -> bool {
        match self.origin() {
            None => true,
            Some(origin) => allowed.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(origin)),
        }
    }

    /// The subprotocols offered, in the client's order of preference.
    pub fn protocols(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.inner.subprotocols()
    }

    /// The extensions offered. The server negotiates permessage-deflate itself when
    /// [`ConfigBuilder::deflate`](crate::ConfigBuilder::deflate) turns it on.
    pub fn extensions(&self) -> impl Iterator<Item = ExtensionOffer<'a>> + 'a {
        self.inner.extensions()
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
}
