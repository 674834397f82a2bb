//! The target's own figures beside the measurement: `GET /metrics` (Surge's Prometheus text
//! exposition) when the warm-up starts and when the run ends, and the difference: messages
//! the server received and sent, sends it refused or closed for at the backpressure limit,
//! limit hits, and its loop turn time.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The most a scrape may be: ample for Surge's families over many loops.
const MAX_ANSWER: u64 = 16 << 20;

/// Where the target's metrics are: `http://HOST:PORT/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsUrl {
    /// The URL as given (or made).
    pub url: String,
    addr: SocketAddr,
    host: String,
    path: String,
}

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// Not an `http://HOST:PORT/PATH` URL.
    #[error("--scrape-metrics wants http://HOST:PORT/PATH")]
    BadUrl,
    /// The host did not resolve.
    #[error("--scrape-metrics: the host does not resolve")]
    Unresolved,
    /// Connecting, writing or reading failed.
    #[error("scraping the target's metrics: {0}")]
    Io(#[from] io::Error),
    /// The answer was not 200 with a body.
    #[error("scraping the target's metrics: the answer was not 200 with a body")]
    NotOk,
}

impl MetricsUrl {
    /// Parses `http://HOST:PORT/PATH` (the port defaults to 80, the path to `/metrics`).
    pub fn parse(text: &str) -> Result<Self, ScrapeError> {
        let rest = text.strip_prefix("http://").ok_or(ScrapeError::BadUrl)?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/metrics"),
        };
        if authority.is_empty() {
            return Err(ScrapeError::BadUrl);
        }
        let with_port = if authority.rsplit(':').next().is_some_and(|p| p.parse::<u16>().is_ok()) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|_| ScrapeError::Unresolved)?
            .next()
            .ok_or(ScrapeError::Unresolved)?;
        Ok(MetricsUrl { url: text.to_owned(), addr, host: authority.to_owned(), path: path.into() })
    }

    /// `/metrics` on the WebSocket target's own address (Surge answers it on the same port).
    pub fn beside(addr: SocketAddr, host: &str) -> Self {
        MetricsUrl {
            url: format!("http://{host}/metrics"),
            addr,
            host: host.to_owned(),
            path: "/metrics".into(),
        }
    }

    /// One scrape.
    pub fn fetch(&self, timeout: Duration) -> Result<Scrape, ScrapeError> {
        let mut stream = TcpStream::connect_timeout(&self.addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.path, self.host
        );
        stream.write_all(request.as_bytes())?;
        let mut answer = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").ok_or(ScrapeError::NotOk)?;
        if !head.starts_with("HTTP/1.1 200 ") {
            return Err(ScrapeError::NotOk);
        }
        Ok(Scrape::parse(body))
    }
}

/// One scrape's samples: each sample name's sum over its series (over loops, kinds,
/// codes), and the turn-time histogram's cumulative buckets summed over loops.
#[derive(Debug, Clone)]
pub struct Scrape {
    at: Instant,
    sums: BTreeMap<String, f64>,
    /// `le` bound in seconds -> observations at most that long.
    turn_buckets: Vec<(f64, f64)>,
}

impl Scrape {
    /// Reads the text exposition format (comments skipped, timestamps ignored).
    pub fn parse(text: &str) -> Scrape {
        let mut sums = BTreeMap::new();
        let mut buckets: BTreeMap<String, f64> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..name_end];
            let (labels, rest) = match line[name_end..].strip_prefix('{') {
                Some(after) => after.split_once('}').unwrap_or((after, "")),
                None => ("", &line[name_end..]),
            };
            let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok())
            else {
                continue;
            };
            *sums.entry(name.to_owned()).or_insert(0.0) += value;
            if name == "surge_loop_turn_seconds_bucket" {
                if let Some(le) = label(labels, "le") {
                    *buckets.entry(le.to_owned()).or_insert(0.0) += value;
                }
            }
        }
        let mut turn_buckets: Vec<(f64, f64)> = buckets
            .into_iter()
            .filter_map(|(le, n)| {
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((bound, n))
            })
            .collect();
        turn_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Scrape { at: Instant::now(), sums, turn_buckets }
    }

    fn sum(&self, name: &str) -> f64 {
        self.sums.get(name).copied().unwrap_or(0.0)
    }
}

/// The value of label `name` in `a="x",b="y"` (values without escapes, as Surge writes).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"'))
    })
}

/// What the server counted between two scrapes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerFigures {
    /// Where they came from.
    pub url: String,
    /// Seconds between the scrapes (from the start of the warm-up to the end of the run).
    pub seconds: f64,
    /// Data messages the server received.
    pub messages_received: u64,
    /// Data messages the server queued to connections.
    pub messages_sent: u64,
    /// Sends it handed back or closed for at the backpressure limit.
    pub backpressure: u64,
    /// Limits it reached (message size, budgets, connection cap, head size, timeouts, ...).
    pub limit_hits: u64,
    /// Loop turns.
    pub turns: u64,
    /// Mean loop turn, µs.
    pub turn_mean_us: f64,
    /// The bucket bound at or under which 99 % of the turns took, µs (`None`: no turn, or
    /// past the last bound).
    pub turn_p99_us: Option<f64>,
}

impl ServerFigures {
    /// The difference from `before` to `after`.
    pub fn between(url: &MetricsUrl, before: &Scrape, after: &Scrape) -> Self {
        let delta = |name: &str| (after.sum(name) - before.sum(name)).max(0.0);
        let turns = delta("surge_loop_turn_seconds_count");
        let turn_sum = delta("surge_loop_turn_seconds_sum");
        let before_at = |bound: f64| {
            before.turn_buckets.iter().find(|(b, _)| *b == bound).map_or(0.0, |(_, n)| *n)
        };
        let turn_p99_us = after
            .turn_buckets
            .iter()
            .find(|(bound, n)| turns > 0.0 && n - before_at(*bound) >= 0.99 * turns)
            .map(|(bound, _)| bound * 1e6)
            .filter(|us| us.is_finite());
        ServerFigures {
            url: url.url.clone(),
            seconds: after.at.saturating_duration_since(before.at).as_secs_f64(),
            messages_received: delta("surge_messages_received_total") as u64,
            messages_sent: delta("surge_messages_sent_total") as u64,
            backpressure: delta("surge_backpressure_total") as u64,
            limit_hits: delta("surge_limit_hits_total") as u64,
            turns: turns as u64,
            turn_mean_us: if turns > 0.0 { turn_sum / turns * 1e6 } else { 0.0 },
            turn_p99_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP surge_messages_received_total x\n\
        surge_messages_received_total{loop=\"0\",kind=\"text\"} 10\n\
        surge_messages_received_total{loop=\"1\",kind=\"binary\"} 5\n\
        surge_loop_turn_seconds_bucket{loop=\"0\",le=\"1e-05\"} 1\n\
        surge_loop_turn_seconds_bucket{loop=\"0\",le=\"+Inf\"} 2\n\
        surge_loop_turn_seconds_sum{loop=\"0\"} 0.001\n\
        surge_loop_turn_seconds_count{loop=\"0\"} 2\n";

    const AFTER: &str = "surge_messages_received_total{loop=\"0\",kind=\"text\"} 110\n\
        surge_messages_received_total{loop=\"1\",kind=\"binary\"} 5\n\
        surge_messages_sent_total{loop=\"0\",kind=\"text\"} 100\n\
        surge_backpressure_total{loop=\"0\",action=\"handed_back\"} 3\n\
        surge_loop_turn_seconds_bucket{loop=\"0\",le=\"1e-05\"} 91\n\
        surge_loop_turn_seconds_bucket{loop=\"1\",le=\"1e-05\"} 0\n\
        surge_loop_turn_seconds_bucket{loop=\"0\",le=\"5e-05\"} 101\n\
        surge_loop_turn_seconds_bucket{loop=\"0\",le=\"+Inf\"} 102\n\
        surge_loop_turn_seconds_sum{loop=\"0\"} 0.002\n\
        surge_loop_turn_seconds_count{loop=\"0\"} 102\n";

    #[test]
    fn the_difference_of_two_scrapes() {
        let url = MetricsUrl::parse("http://127.0.0.1:9001/metrics").unwrap();
        let figures = ServerFigures::between(&url, &Scrape::parse(BEFORE), &Scrape::parse(AFTER));
        assert_eq!(figures.messages_received, 100);
        assert_eq!(figures.messages_sent, 100);
        assert_eq!(figures.backpressure, 3);
        assert_eq!(figures.turns, 100);
        // 1 ms over 100 turns.
        assert!((figures.turn_mean_us - 10.0).abs() < 1e-6, "{}", figures.turn_mean_us);
        // 90 of the 100 turns within 10 µs, all within 50 µs.
        assert_eq!(figures.turn_p99_us, Some(50.0));
    }

    #[test]
    fn urls_parse_with_defaults_and_refuse_others() {
        let url = MetricsUrl::parse("http://127.0.0.1:9001").unwrap();
        assert_eq!((url.path.as_str(), url.addr.port()), ("/metrics", 9001));
        assert!(matches!(MetricsUrl::parse("ws://127.0.0.1:1/"), Err(ScrapeError::BadUrl)));
    }
}
