//! What one measurement is to do, typed: the protocol as [`Mode`], the pacing as [`Pacing`],
//! times as [`Duration`]s. The JSON file records it as `report::ConfigRecord`.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use surge_proto::deflate::ClientOffer;

use crate::tls::TlsOptions;
use crate::workload::{PayloadKind, SizeSpec};

/// A configuration that cannot be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `--connections 0`.
    #[error("--connections must be at least 1")]
    NoConnections,
    /// A zero or negative open-loop rate.
    #[error("--rate must be positive")]
    NoRate,
    /// A zero, negative or infinite `--churn`.
    #[error("--churn must be a positive rate")]
    NoChurn,
    /// `--deflate` in raw mode: there is no handshake to offer it in.
    #[error("--deflate needs WebSocket mode")]
    RawDeflate,
    /// `--duration 0`.
    #[error("--duration must be positive")]
    NoDuration,
    /// Raw mode with empty messages: nothing would come back to time.
    #[error("raw mode needs messages of at least 1 byte")]
    EmptyRawMessage,
    /// `--threads 0` or `--server-threads 0`.
    #[error("thread counts must be at least 1")]
    NoThreads,
    /// A `--start-at` that is not a time.
    #[error("--start-at {0}: not a Unix time in seconds")]
    StartTime(f64),
    /// An agent name that would not survive an interval log's tag or a file name.
    #[error("agent name {0:?}: use letters, digits, '.', '_' and '-' only")]
    AgentName(String),
}

/// The protocol spoken to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// WebSocket messages, each echo checked.
    Ws,
    /// Raw TCP: N bytes out, the same N bytes back.
    Raw,
}

/// When messages are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Each connection keeps `in_flight` messages outstanding, the next sent on each echo.
    Closed,
    /// A fixed total rate over all connections (messages per second), latency counted from
    /// each message's scheduled time.
    Open {
        /// Messages per second, all connections together.
        rate: f64,
    },
}

impl Pacing {
    /// The open-loop rate, if any.
    pub fn rate(self) -> Option<f64> {
        match self {
            Pacing::Closed => None,
            Pacing::Open { rate } => Some(rate),
        }
    }
}

/// A run's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// The target as given ("embedded" when none), for the record.
    pub target: String,
    /// WebSocket or raw TCP.
    pub mode: Mode,
    /// Connections.
    pub connections: usize,
    /// Message sizes.
    pub size: SizeSpec,
    /// Message type.
    pub payload: PayloadKind,
    /// Messages outstanding per connection (the cap, in open loop).
    pub in_flight: usize,
    /// Closed or open loop.
    pub pacing: Pacing,
    /// Measured time.
    pub duration: Duration,
    /// Warm-up, after the connections are up and before measuring.
    pub warmup: Duration,
    /// Client threads.
    pub threads: usize,
    /// Embedded server threads (None: external target).
    pub server_threads: Option<usize>,
    /// Whether threads are pinned to cores.
    pub pin: bool,
    /// Connections opened per second while ramping up (None: as fast as possible).
    pub connect_rate: Option<f64>,
    /// Longest wait for a connection and its handshake.
    pub connect_timeout: Duration,
    /// Connections closed and reopened per second during the measured window (None: none).
    pub churn: Option<f64>,
    /// Many agents: this agent's name, tagging its interval log and result.
    pub agent: Option<String>,
    /// Many agents: when the warm-up starts (the same instant on every agent); connections
    /// ramp up before it. None: as soon as they are up.
    pub start_at: Option<SystemTime>,
    /// WebSocket: the permessage-deflate offer every connection makes (None: none).
    pub deflate: Option<ClientOffer>,
    /// wss: how the server is trusted, and whether sessions resume.
    pub tls: TlsOptions,
}

impl RunConfig {
    /// The defaults the command line starts from: 64 connections of 64 B binary messages, one
    /// in flight, closed loop, 10 s after 1 s of warm-up, one client thread.
    pub fn new(target: impl Into<String>, mode: Mode) -> Self {
        RunConfig {
            target: target.into(),
            mode,
            connections: 64,
            size: SizeSpec::Fixed(64),
            payload: PayloadKind::Binary,
            in_flight: 1,
            pacing: Pacing::Closed,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            threads: 1,
            server_threads: None,
            pin: false,
            connect_rate: Some(10_000.0),
            connect_timeout: Duration::from_secs(5),
            churn: None,
            agent: None,
            start_at: None,
            deflate: None,
            tls: TlsOptions::default(),
        }
    }

    /// Checks what no run could do.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.connections == 0 {
            return Err(ConfigError::NoConnections);
        }
        if self.pacing.rate().is_some_and(|r| r <= 0.0 || !r.is_finite()) {
            return Err(ConfigError::NoRate);
        }
        if self.churn.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
            return Err(ConfigError::NoChurn);
        }
        if self.duration.is_zero() {
            return Err(ConfigError::NoDuration);
        }
        if self.mode == Mode::Raw && self.deflate.is_some() {
            return Err(ConfigError::RawDeflate);
        }
        if self.mode == Mode::Raw && self.size.min() == 0 {
            return Err(ConfigError::EmptyRawMessage);
        }
        if self.threads == 0 || self.server_threads == Some(0) {
            return Err(ConfigError::NoThreads);
        }
        if let Some(name) = &self.agent {
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return Err(ConfigError::AgentName(name.clone()));
            }
        }
        Ok(())
    }
}
