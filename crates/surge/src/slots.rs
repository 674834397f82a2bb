//! Redis Cluster's key space for sharded pub/sub: which of the 16,384 hash slots a channel
//! falls in, and which shard primary owns a slot.
//!
//! A slot is CRC16 (XMODEM: polynomial 0x1021, initial value 0) of the channel name modulo
//! 16,384, or of its hash tag: the bytes between the first `{` and the first `}` after it,
//! when there is at least one byte between them (the Redis Cluster specification, "Hash
//! tags"). The owners come from `CLUSTER SLOTS` (each range: start, end, then the primary's
//! address first and its replicas after).

use std::net::SocketAddr;

use redis::Value;

/// Hash slots in a Redis Cluster.
pub(crate) const SLOTS: u16 = 16_384;

/// CRC16/XMODEM, one table lookup per byte; the table is built at compile time.
const CRC16: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0, |crc, &b| (crc << 8) ^ CRC16[usize::from((crc >> 8) as u8 ^ b)])
}

/// The hash slot of `channel`.
pub(crate) fn slot(channel: &[u8]) -> u16 {
    let tagged = channel.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &channel[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(channel)) % SLOTS
}

/// Which primary owns each slot range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SlotMap {
    /// Sorted by start, not overlapping: (first slot, last slot, primary).
    ranges: Vec<(u16, u16, SocketAddr)>,
}

/// A `CLUSTER SLOTS` answer this does not understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SlotMapError {
    /// Not a list of ranges, or a range without a start, an end and a primary.
    #[error("CLUSTER SLOTS: an answer that is not a list of slot ranges with a primary each")]
    Shape,
    /// A slot number outside 0..16384, or a range that ends before it starts or overlaps
    /// another.
    #[error("CLUSTER SLOTS: slot ranges out of bounds or overlapping")]
    Ranges,
    /// A primary whose address is not an IP address and a port.
    #[error("CLUSTER SLOTS: a primary address that is not IP:port")]
    Address,
}

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` answer. A primary announced without an IP (an empty or `?`
    /// host, as Redis does for the node answering) is at `answering`'s IP.
    pub(crate) fn from_cluster_slots(
        answer: &Value,
        answering: SocketAddr,
    ) -> Result<Self, SlotMapError> {
        let Value::Array(ranges) = answer else { return Err(SlotMapError::Shape) };
        let mut map = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Value::Array(fields) = range else { return Err(SlotMapError::Shape) };
            let [Value::Int(start), Value::Int(end), Value::Array(primary), ..] = &fields[..]
            else {
                return Err(SlotMapError::Shape);
            };
            let (Ok(start), Ok(end)) = (u16::try_from(*start), u16::try_from(*end)) else {
                return Err(SlotMapError::Ranges);
            };
            if start > end || end >= SLOTS {
                return Err(SlotMapError::Ranges);
            }
            map.push((start, end, address(primary, answering)?));
        }
        map.sort_unstable_by_key(|&(start, ..)| start);
        if map.windows(2).any(|w| w[0].1 >= w[1].0) {
            return Err(SlotMapError::Ranges);
        }
        Ok(SlotMap { ranges: map })
    }

    /// The primary that owns `slot`, if some shard covers it.
    pub(crate) fn owner(&self, slot: u16) -> Option<SocketAddr> {
        let after = self.ranges.partition_point(|&(start, ..)| start <= slot);
        let &(_, end, primary) = self.ranges.get(after.checked_sub(1)?)?;
        (slot <= end).then_some(primary)
    }

    /// No slot is served.
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The distinct primaries, in slot order.
    pub(crate) fn primaries(&self) -> Vec<SocketAddr> {
        let mut primaries: Vec<SocketAddr> = Vec::new();
        for &(_, _, primary) in &self.ranges {
            if !primaries.contains(&primary) {
                primaries.push(primary);
            }
        }
        primaries
    }
}

/// `[host, port, id, ...]` of a node in `CLUSTER SLOTS`.
fn address(node: &[Value], answering: SocketAddr) -> Result<SocketAddr, SlotMapError> {
    let [host, Value::Int(port), ..] = node else { return Err(SlotMapError::Shape) };
    let host = match host {
        Value::BulkString(bytes) => {
            std::str::from_utf8(bytes).map_err(|_| SlotMapError::Address)?
        }
        Value::SimpleString(text) => text.as_str(),
        _ => return Err(SlotMapError::Shape),
    };
    let port = u16::try_from(*port).map_err(|_| SlotMapError::Address)?;
    let ip = match host {
        "" | "?" => answering.ip(),
        host => host.parse().map_err(|_| SlotMapError::Address)?,
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_xmodem() {
        // The check value of CRC-16/XMODEM, as the Redis Cluster specification gives it.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn slots_match_what_redis_answers_to_cluster_keyslot() {
        // `redis-cli CLUSTER KEYSLOT ...` on Redis 7.0.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"hello"), 866);
        assert_eq!(slot(b"somekey"), 11058);
        assert_eq!(slot(b"{user1000}.following"), 3443);
        assert_eq!(slot(b"foo{{bar}}zap"), 4015);
        assert_eq!(slot(b"foo{}{bar}"), 8363);
        assert_eq!(slot(b"surge:t:room"), 9174);
    }

    #[test]
    fn a_hash_tag_is_the_first_nonempty_braces() {
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"{user1000}.followers"), slot(b"user1000"));
        // The first `{` and the first `}` after it; empty braces: the whole name.
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot(b"foo{"), crc16(b"foo{") % SLOTS);
        assert_eq!(slot(b"}{"), crc16(b"}{") % SLOTS);
    }

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.into()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn range(start: i64, end: i64, primary: Value) -> Value {
        Value::Array(vec![Value::Int(start), Value::Int(end), primary, node("127.0.0.1", 1)])
    }

    #[test]
    fn the_map_routes_each_slot_to_its_primary() {
        let at = "127.0.0.1:7000".parse().unwrap();
        let answer = Value::Array(vec![
            range(10923, 16383, node("127.0.0.1", 7002)),
            range(0, 5460, node("", 7000)),
            range(5461, 10922, node("127.0.0.1", 7001)),
        ]);
        let map = SlotMap::from_cluster_slots(&answer, at).unwrap();
        let port = |slot| map.owner(slot).map(|a| a.port());
        assert_eq!(
            [port(0), port(5460), port(5461), port(10922)],
            [Some(7000), Some(7000), Some(7001), Some(7001)]
        );
        assert_eq!([port(10923), port(16383), port(16384)], [Some(7002), Some(7002), None]);
        let ports: Vec<u16> = map.primaries().iter().map(SocketAddr::port).collect();
        assert_eq!(ports, [7000, 7001, 7002]);
    }

    #[test]
    fn an_uncovered_slot_has_no_owner() {
        let at = "127.0.0.1:7000".parse().unwrap();
        let answer = Value::Array(vec![range(100, 200, node("127.0.0.1", 7000))]);
        let map = SlotMap::from_cluster_slots(&answer, at).unwrap();
        assert_eq!((map.owner(99), map.owner(201)), (None, None));
        assert!(map.owner(150).is_some() && !map.is_empty());
        // A cluster node before the cluster is formed answers no ranges at all.
        let none = SlotMap::from_cluster_slots(&Value::Array(Vec::new()), at).unwrap();
        assert!(none.is_empty() && none.owner(0).is_none() && none.primaries().is_empty());
    }

    #[test]
    fn malformed_answers_are_refused() {
        let at = "127.0.0.1:7000".parse().unwrap();
        let refused = |answer| SlotMap::from_cluster_slots(&answer, at).unwrap_err();
        assert_eq!(refused(Value::Nil), SlotMapError::Shape);
        assert_eq!(refused(Value::Array(vec![Value::Int(1)])), SlotMapError::Shape);
        let one = |s, e, n| Value::Array(vec![range(s, e, n)]);
        assert_eq!(refused(one(5, 4, node("127.0.0.1", 1))), SlotMapError::Ranges);
        assert_eq!(refused(one(0, 16384, node("127.0.0.1", 1))), SlotMapError::Ranges);
        assert_eq!(refused(one(-1, 3, node("127.0.0.1", 1))), SlotMapError::Ranges);
        assert_eq!(refused(one(0, 3, node("redis.example", 1))), SlotMapError::Address);
        assert_eq!(refused(one(0, 3, node("127.0.0.1", 70000))), SlotMapError::Address);
        let overlapping = Value::Array(vec![
            range(0, 10, node("127.0.0.1", 1)),
            range(10, 20, node("127.0.0.1", 2)),
        ]);
        assert_eq!(refused(overlapping), SlotMapError::Ranges);
    }
}
