//! Admission: the server-wide cap on open WebSocket connections, and the caps per client
//! address (open connections, handshakes per second), as a token.
//!
//! A connection is admitted before the handler is asked about its upgrade and holds its
//! [`Admission`] for as long as the application holds it open; dropping the token (a refusal,
//! `on_close`, the connection's removal) gives the place back, under the server's cap and
//! its address's. No path can forget the count or give it back twice.
//!
//! The per-address table is shared by the loops behind one lock, taken once per handshake
//! and once per close (never per message), and only when a per-address cap is set.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::Config;
use crate::rate::Allowance;

/// Past this many addresses the table drops those with nothing open and a full allowance.
const PRUNE_AT: usize = 4096;

/// Why a handshake was not admitted, and the status that answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server is at its connection cap.
    ServerFull,
    /// The client's address is at its connection cap.
    AddressFull,
    /// The client's address has used its handshakes for now.
    AddressRate,
}

impl Refusal {
    /// 503 for the caps (come back later), 429 for the rate.
    pub(crate) fn status(self) -> u16 {
        match self {
            Refusal::ServerFull | Refusal::AddressFull => 503,
            Refusal::AddressRate => 429,
        }
    }
}

/// What the limits on one client have refused so far, across loops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitStats {
    /// Handshakes answered 503 at the per-address connection cap.
    pub address_full: u64,
    /// Handshakes answered 429 past the per-address handshake rate.
    pub address_rate: u64,
    /// Times a connection's reading was paused past its message or byte rate.
    pub rate_paused: u64,
    /// Connections closed with 1008 past their message or byte rate.
    pub rate_closed: u64,
}

/// The counters behind [`LimitStats`].
#[derive(Debug, Default)]
pub(crate) struct LimitCounters {
    address_full: AtomicU64,
    address_rate: AtomicU64,
    pub(crate) rate_paused: AtomicU64,
    pub(crate) rate_closed: AtomicU64,
}

impl LimitCounters {
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LimitStats {
        LimitStats {
            address_full: self.address_full.load(Ordering::Relaxed),
            address_rate: self.address_rate.load(Ordering::Relaxed),
            rate_paused: self.rate_paused.load(Ordering::Relaxed),
            rate_closed: self.rate_closed.load(Ordering::Relaxed),
        }
    }
}

/// One address's open connections and handshake allowance.
#[derive(Debug)]
struct AddressEntry {
    open: usize,
    /// Handshakes it may still make now (a token bucket holding one second's worth).
    allowance: f64,
    refilled: Instant,
}

/// The count of open connections, shared by every loop and handle.
#[derive(Debug)]
pub(crate) struct Admissions {
    open: AtomicUsize,
    max: usize,
    per_address_max: Option<usize>,
    per_address_rate: Option<u32>,
    addresses: Mutex<HashMap<IpAddr, AddressEntry>>,
    pub(crate) counters: LimitCounters,
}

impl Admissions {
    pub(crate) fn new(config: &Config) -> Arc<Self> {
        Arc::new(Admissions {
            open: AtomicUsize::new(0),
            max: config.max_connections(),
            per_address_max: config.max_connections_per_address(),
            per_address_rate: config.handshakes_per_second_per_address(),
            addresses: Mutex::new(HashMap::new()),
            counters: LimitCounters::default(),
        })
    }

    /// A place for one more connection from `peer` at `now` (with the connection's own
    /// `allowance` when the server has a rate limit), or why not.
    pub(crate) fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        now: Instant,
        allowance: Option<Allowance>,
    ) -> Result<Admission, Refusal> {
        let per_address = self.per_address_max.is_some() || self.per_address_rate.is_some();
        if per_address {
            self.admit_address(peer, now)?;
        }
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            if per_address {
                self.release_address(peer);
            }
            return Err(Refusal::ServerFull);
        }
        let address = per_address.then_some(peer);
        let client = (address.is_some() || allowance.is_some())
            .then(|| Box::new(ClientLimits { address, allowance }));
        Ok(Admission { admissions: Arc::clone(self), client })
    }

    /// Takes one handshake and one open place from `peer`'s allowance.
    fn admit_address(&self, peer: IpAddr, now: Instant) -> Result<(), Refusal> {
        let mut table = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= PRUNE_AT && !table.contains_key(&peer) {
            let rate = self.per_address_rate.map_or(0.0, f64::from);
            table.retain(|_, e| {
                e.open > 0
                    || e.allowance + now.duration_since(e.refilled).as_secs_f64() * rate < rate
            });
        }
        let rate = self.per_address_rate.map(f64::from);
        let entry = table.entry(peer).or_insert(AddressEntry {
            open: 0,
            allowance: rate.unwrap_or(0.0),
            refilled: now,
        });
        if let Some(rate) = rate {
            let elapsed = now.saturating_duration_since(entry.refilled).as_secs_f64();
            entry.allowance = (entry.allowance + elapsed * rate).min(rate);
            entry.refilled = now;
            if entry.allowance < 1.0 {
                LimitCounters::count(&self.counters.address_rate);
                return Err(Refusal::AddressRate);
            }
            entry.allowance -= 1.0;
        }
        if self.per_address_max.is_some_and(|max| entry.open >= max) {
            LimitCounters::count(&self.counters.address_full);
            return Err(Refusal::AddressFull);
        }
        entry.open += 1;
        Ok(())
    }

    fn release_address(&self, peer: IpAddr) {
        let mut table = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = table.get_mut(&peer) {
            entry.open = entry.open.saturating_sub(1);
            if entry.open == 0 && self.per_address_rate.is_none() {
                table.remove(&peer);
            }
        }
    }

    /// Connections holding a place now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// One admitted connection's place under the caps, given back when dropped, and its
/// allowance under the rate limit.
#[derive(Debug)]
#[must_use = "dropping an admission gives the place back at once"]
pub(crate) struct Admission {
    admissions: Arc<Admissions>,
    /// Only when a per-client limit is set: boxed, so that a record without costs a pointer.
    client: Option<Box<ClientLimits>>,
}

/// What the per-client limits keep for one connection.
#[derive(Debug)]
struct ClientLimits {
    /// The address whose count it holds, when addresses are counted.
    address: Option<IpAddr>,
    allowance: Option<Allowance>,
}

impl Admission {
    /// The connection's allowance of messages and bytes, when the server has a rate limit.
    pub(crate) fn allowance(&mut self) -> Option<&mut Allowance> {
        self.client.as_mut().and_then(|client| client.allowance.as_mut())
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.admissions.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(peer) = self.client.as_ref().and_then(|client| client.address) {
            self.admissions.release_address(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn admissions(max: usize, per_address: Option<usize>, rate: Option<u32>) -> Arc<Admissions> {
        let mut builder =
            Config::builder().listen("127.0.0.1:0".parse().unwrap()).max_connections(max);
        if let Some(per_address) = per_address {
            builder = builder.max_connections_per_address(per_address);
        }
        if let Some(rate) = rate {
            builder = builder.handshakes_per_second_per_address(rate);
        }
        Admissions::new(&builder.build().unwrap())
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn places_come_back_when_tokens_drop() {
        let admissions = admissions(2, None, None);
        let now = Instant::now();
        let first = admissions.admit(A, now, None).unwrap();
        let second = admissions.admit(B, now, None).unwrap();
        assert_eq!(
            admissions.admit(A, now, None).unwrap_err(),
            Refusal::ServerFull,
            "the cap holds"
        );
        assert_eq!(admissions.open(), 2);
        drop(first);
        let third = admissions.admit(A, now, None).unwrap();
        drop((second, third));
        assert_eq!(admissions.open(), 0);
    }

    #[test]
    fn an_address_at_its_cap_is_refused_while_others_are_admitted() {
        let admissions = admissions(100, Some(2), None);
        let now = Instant::now();
        let held =
            [admissions.admit(A, now, None).unwrap(), admissions.admit(A, now, None).unwrap()];
        assert_eq!(admissions.admit(A, now, None).unwrap_err(), Refusal::AddressFull);
        assert_eq!(Refusal::AddressFull.status(), 503);
        let other = admissions.admit(B, now, None).unwrap();
        drop(held);
        let again = admissions.admit(A, now, None).unwrap();
        drop((other, again));
        assert_eq!(admissions.counters.snapshot().address_full, 1);
        assert!(admissions.addresses.lock().unwrap().is_empty(), "nothing kept for idle addresses");
    }

    #[test]
    fn handshakes_past_the_rate_get_429_until_the_allowance_refills() {
        let admissions = admissions(100, None, Some(3));
        let start = Instant::now();
        let taken: Vec<_> = (0..3).map(|_| admissions.admit(A, start, None).unwrap()).collect();
        drop(taken);
        assert_eq!(admissions.admit(A, start, None).unwrap_err(), Refusal::AddressRate);
        assert_eq!(Refusal::AddressRate.status(), 429);
        assert!(admissions.admit(B, start, None).is_ok(), "another address has its own allowance");
        // A third of a second later one handshake's worth has come back.
        let later = start + Duration::from_millis(340);
        assert!(admissions.admit(A, later, None).is_ok());
        assert_eq!(admissions.admit(A, later, None).unwrap_err(), Refusal::AddressRate);
        assert_eq!(admissions.counters.snapshot().address_rate, 2);
    }
}
