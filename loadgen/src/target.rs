//! Where the load goes: the target URL, parsed and resolved.

use std::net::{SocketAddr, ToSocketAddrs};

/// A target the tool cannot use.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A scheme other than ws:// or tcp://.
    #[error("unsupported target {0:?}: give ws://HOST:PORT/PATH or tcp://HOST:PORT")]
    Scheme(String),
    /// The host did not resolve.
    #[error("cannot resolve {target:?}: {source}")]
    Resolve {
        /// The target as given.
        target: String,
        /// What the resolver said.
        source: std::io::Error,
    },
    /// The host resolved to nothing.
    #[error("{0:?} resolves to no address")]
    NoAddress(String),
}

/// Where the load goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An echo server started in this process.
    Embedded,
    /// A raw TCP echo server (`tcp://HOST:PORT`, or any target with `--raw`).
    Tcp {
        /// Resolved address.
        addr: SocketAddr,
    },
    /// A WebSocket echo server (`ws://HOST:PORT/PATH`, `wss://...`, or `HOST:PORT`).
    Ws {
        /// wss: TLS under the WebSocket.
        secure: bool,
        /// Resolved address.
        addr: SocketAddr,
        /// The `Host` header: the target's authority as given.
        host: String,
        /// Request target: path and query.
        path: String,
    },
}

impl Target {
    /// Parses `ws://HOST[:PORT][/PATH]`, `wss://HOST[:PORT][/PATH]`, `HOST:PORT[/PATH]`
    /// (WebSocket) or `tcp://HOST:PORT`;
    /// `None` means embedded.
    pub fn parse(s: Option<&str>) -> Result<Self, TargetError> {
        let Some(s) = s else { return Ok(Target::Embedded) };
        if let Some(rest) = s.strip_prefix("tcp://") {
            let hostport = rest.split('/').next().unwrap_or(rest);
            return Ok(Target::Tcp { addr: resolve(hostport, s)? });
        }
        let (secure, rest) = match s.strip_prefix("wss://") {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix("ws://").unwrap_or(s)),
        };
        if rest.contains("://") {
            return Err(TargetError::Scheme(s.to_owned()));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (host, path) = rest.split_at(split);
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        let has_port = host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok());
        let default_port = if secure { 443 } else { 80 };
        let hostport = if has_port { host.to_owned() } else { format!("{host}:{default_port}") };
        Ok(Target::Ws { secure, addr: resolve(&hostport, s)?, host: host.to_owned(), path })
    }

    /// The same server spoken to as a raw TCP echo server.
    pub fn into_raw(self) -> Self {
        match self {
            Target::Ws { addr, .. } => Target::Tcp { addr },
            t => t,
        }
    }
}

fn resolve(hostport: &str, original: &str) -> Result<SocketAddr, TargetError> {
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .map_err(|source| TargetError::Resolve { target: original.to_owned(), source })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| TargetError::NoAddress(original.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(Target::parse(None).unwrap(), Target::Embedded);
        let t = Target::parse(Some("tcp://127.0.0.1:9")).unwrap();
        assert_eq!(t, Target::Tcp { addr: "127.0.0.1:9".parse().unwrap() });
        assert!(matches!(Target::parse(Some("http://x:1")), Err(TargetError::Scheme(_))));
        let addr = "127.0.0.1:9001".parse().unwrap();
        let ws = |host: &str, path: &str| Target::Ws {
            secure: false,
            addr,
            host: host.into(),
            path: path.into(),
        };
        assert_eq!(
            Target::parse(Some("wss://127.0.0.1:9001/x")).unwrap(),
            Target::Ws { secure: true, addr, host: "127.0.0.1:9001".into(), path: "/x".into() }
        );
        assert_eq!(Target::parse(Some("ws://127.0.0.1:9001")).unwrap(), ws("127.0.0.1:9001", "/"));
        assert_eq!(
            Target::parse(Some("127.0.0.1:9001/e?x=1")).unwrap(),
            ws("127.0.0.1:9001", "/e?x=1")
        );
        assert_eq!(
            Target::parse(Some("ws://127.0.0.1:9001?a")).unwrap(),
            ws("127.0.0.1:9001", "/?a")
        );
        assert_eq!(ws("h", "/").into_raw(), Target::Tcp { addr });
    }
}
