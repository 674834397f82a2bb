//! `fanout --lean`: what a subscriber does with the bytes it reads, at the least cost per
//! delivery, so that a saturation run measures the server rather than this tool.
//!
//! Server frames are unmasked, and a room server relays the load generator's own
//! messages: unfragmented binary frames. [`scan`] walks them in the read buffer in place
//! (no copy into a message, no UTF-8 or mask work) and hands each payload on; anything
//! else (a ping, a close, a text or fragmented frame, an extension bit) is reported, since
//! the fast path does not answer it. [`Sequences`] checks order per publisher with one
//! array slot each, where the exact mode keeps maps of gaps.

/// A frame [`scan`] does not take: its first two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unexpected(pub [u8; 2]);

/// FIN set, no RSV bits, opcode binary.
const FINAL_BINARY: u8 = 0x82;

/// Hands `each` the payload of every whole frame at the start of `buf`; returns the bytes
/// used (a partial frame at the end is left for the next read).
///
/// ```
/// use surge_loadgen::fanout_lean::{scan, Unexpected};
/// let mut frames = vec![0x82, 3, b'a', b'b', b'c', 0x82, 126, 0, 200];
/// let mut seen = Vec::new();
/// assert_eq!(scan(&frames, |p| seen.push(p.to_vec())), Ok(5));
/// assert_eq!(seen, [b"abc".to_vec()]);
/// frames[5] = 0x89; // a ping
/// assert_eq!(scan(&frames, |_| {}), Err(Unexpected([0x89, 126])));
/// ```
pub fn scan(buf: &[u8], mut each: impl FnMut(&[u8])) -> Result<usize, Unexpected> {
    let mut at = 0;
    while let [b0, b1, rest @ ..] = &buf[at..] {
        if *b0 != FINAL_BINARY || b1 & 0x80 != 0 {
            return Err(Unexpected([*b0, *b1]));
        }
        let (len, head) = match b1 & 0x7f {
            126 => match rest {
                [a, b, ..] => (usize::from(u16::from_be_bytes([*a, *b])), 4),
                _ => break,
            },
            127 => match rest.get(..8) {
                Some(bytes) => {
                    let len = u64::from_be_bytes(bytes.try_into().expect("8 bytes"));
                    (usize::try_from(len).unwrap_or(usize::MAX), 10)
                }
                None => break,
            },
            n => (usize::from(n), 2),
        };
        let Some(payload) = buf[at..].get(head..).and_then(|p| p.get(..len)) else { break };
        each(payload);
        at += head + len;
    }
    Ok(at)
}

/// The next sequence number expected from each publisher (ids `0..publishers`).
#[derive(Debug, Clone)]
pub struct Sequences {
    next: Vec<u64>,
}

/// What [`Sequences::take`] made of a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// At or past the next expected (a gap is loss, which reach counts).
    InOrder,
    /// Before the next expected: a duplicate or a reordering (not told apart).
    Behind,
    /// From a publisher id outside the run.
    Foreign,
}

impl Sequences {
    /// Expects sequence 0 from each of `publishers`.
    ///
    /// ```
    /// use surge_loadgen::fanout_lean::{Order, Sequences};
    /// let mut order = Sequences::new(2);
    /// assert_eq!(order.take(1, 0), Order::InOrder);
    /// assert_eq!(order.take(1, 5), Order::InOrder); // 1..5 lost
    /// assert_eq!(order.take(1, 3), Order::Behind);
    /// assert_eq!(order.take(1, 5), Order::Behind);
    /// assert_eq!(order.take(2, 0), Order::Foreign);
    /// ```
    pub fn new(publishers: usize) -> Self {
        Sequences { next: vec![0; publishers] }
    }

    /// Takes `seq` from `publisher`.
    pub fn take(&mut self, publisher: u32, seq: u64) -> Order {
        match self.next.get_mut(publisher as usize) {
            None => Order::Foreign,
            Some(next) if seq >= *next => {
                *next = seq + 1;
                Order::InOrder
            }
            Some(_) => Order::Behind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![FINAL_BINARY];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn every_split_of_a_stream_yields_the_same_payloads() {
        let payloads: Vec<Vec<u8>> = [0usize, 20, 125, 126, 1024, 65_535, 65_536]
            .iter()
            .map(|&n| vec![n as u8; n])
            .collect();
        let stream: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
        for cut in (0..stream.len()).step_by(97).chain([1, 2, 3, 9, stream.len()]) {
            let mut seen = Vec::new();
            let used = scan(&stream[..cut], |p| seen.push(p.to_vec())).unwrap();
            let mut rest = stream[used..].to_vec();
            let used_rest = scan(&rest, |p| seen.push(p.to_vec())).unwrap();
            rest.drain(..used_rest);
            assert!(rest.is_empty(), "cut {cut}");
            assert_eq!(seen, payloads, "cut {cut}");
        }
    }

    #[test]
    fn control_text_masked_fragmented_and_extension_frames_are_refused() {
        for head in [[0x89, 0], [0x88, 2], [0x81, 1], [0x02, 1], [0xc2, 1], [0x82, 0x81]] {
            let mut stream = frame(b"ok");
            stream.extend_from_slice(&head);
            stream.extend_from_slice(&[0; 8]);
            assert_eq!(scan(&stream, |_| {}), Err(Unexpected(head)));
        }
    }

    #[test]
    fn a_huge_declared_length_waits_and_does_not_overflow() {
        let mut stream = vec![FINAL_BINARY, 127];
        stream.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(scan(&stream, |_| panic!("no payload")), Ok(0));
    }
}
