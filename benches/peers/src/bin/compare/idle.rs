//! Opens many idle connections (WebSocket handshake done, then silence) and holds them, so
//! that the server's RSS per connection can be read.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// The connections, closed with RST (SO_LINGER 0: no TIME_WAIT left behind) when dropped.
pub struct Idle {
    /// The open sockets.
    pub streams: Vec<TcpStream>,
}

/// Connections opened at once before their handshakes are read (below every peer's backlog).
const BATCH: usize = 200;

/// Opens `n` connections to `addr`; with `ws`, completes each opening handshake.
pub fn open(addr: SocketAddr, n: usize, ws: bool) -> Result<Idle, String> {
    raise_fd_limit(n as u64 + 256);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut streams = Vec::with_capacity(n);
    while streams.len() < n {
        let batch = BATCH.min(n - streams.len());
        let mut fresh = Vec::with_capacity(batch);
        for _ in 0..batch {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, None)
                .map_err(|e| format!("socket: {e}"))?;
            socket.set_linger(Some(Duration::ZERO)).map_err(|e| e.to_string())?;
            socket
                .connect_timeout(&addr.into(), Duration::from_secs(5))
                .map_err(|e| format!("connection {}: {e}", streams.len() + fresh.len()))?;
            let stream: TcpStream = socket.into();
            if ws {
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                (&stream).write_all(request.as_bytes()).map_err(|e| format!("request: {e}"))?;
            }
            fresh.push(stream);
        }
        if ws {
            for stream in &fresh {
                read_response(stream)?;
            }
        }
        streams.extend(fresh);
    }
    Ok(Idle { streams })
}

fn read_response(mut stream: &TcpStream) -> Result<(), String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).map_err(|e| format!("handshake: {e}"))?;
        if n == 0 {
            return Err("handshake: closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if !buf.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&buf);
        return Err(format!("handshake refused: {:?}", line.lines().next().unwrap_or("")));
    }
    Ok(())
}

impl Idle {
    /// How many of the connections the server still holds open (no EOF, no error).
    pub fn still_open(&self) -> usize {
        let mut open = 0;
        for s in &self.streams {
            let _ = s.set_nonblocking(true);
            let mut b = [0u8; 64];
            match s.peek(&mut b) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
                // A ping or some other frame: still open.
                Ok(n) if n > 0 => open += 1,
                _ => {}
            }
        }
        open
    }
}

fn raise_fd_limit(want: u64) {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the valid `l`; setrlimit only reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < want {
            l.rlim_cur = want.min(l.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
