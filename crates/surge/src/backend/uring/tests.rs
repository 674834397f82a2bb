//! The backend against real loopback sockets, driven by hand: the provided buffers, the
//! lent sends (one slice and many), a retired connection's send left in flight, and the
//! ring's end with requests armed. These are the tests that also run under
//! AddressSanitizer (tests/run.sh: `asan:surge-uring`), for the `unsafe` code here.

use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::time::{Duration, Instant};

use surge_proto::message::Message;

use super::*;
use crate::outbox::SharedFrame;

const PATIENCE: Duration = Duration::from_secs(10);

/// A backend with one listener, and a client connected to it and registered as `key`.
fn pair(buffers: (u16, usize)) -> (UringBackend, Stream, StdStream, ConnKey) {
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(LoopStats::default());
    let mut backend =
        UringBackend::new(Poll::new().unwrap(), vec![listener], buffers, stats).unwrap();
    let client = StdStream::connect(addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut stream = accept_one(&mut backend);
    let key = ConnKey { slot: 3, generation: 7 };
    backend.register(key, &mut stream).unwrap();
    (backend, stream, client, key)
}

/// Turns the ring until the multishot accept on the first listener delivers a connection.
fn accept_one(backend: &mut UringBackend) -> Stream {
    let deadline = Instant::now() + PATIENCE;
    loop {
        backend.wait(Some(Duration::from_millis(10))).unwrap();
        backend.drain(|_| {});
        if let Some((stream, _)) = backend.accept(0).unwrap() {
            return stream;
        }
        assert!(Instant::now() < deadline, "the multishot accept delivers");
    }
}

/// Waits and drains until `done` says so, handing every report to `on`.
fn pump(backend: &mut UringBackend, mut on: impl FnMut(Ready<'_>) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    let mut done = false;
    while !done {
        assert!(Instant::now() < deadline, "the completions come");
        backend.wait(Some(Duration::from_millis(10))).unwrap();
        backend.drain(|ready| done |= on(ready));
    }
}

#[test]
fn received_bytes_arrive_whole_and_in_order_through_few_small_buffers() {
    let (mut backend, _stream, mut client, key) = pair((2, 64));
    let sent: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    client.write_all(&sent).unwrap();
    let mut got = Vec::new();
    pump(&mut backend, |ready| {
        if let Ready::Received { key: k, bytes } = ready {
            assert_eq!(k, key);
            assert!(bytes.len() <= 64);
            // Unmasking writes in place: the buffer is ours while lent.
            bytes.iter_mut().for_each(|b| *b ^= 0);
            got.extend_from_slice(bytes);
        }
        got.len() == sent.len()
    });
    assert_eq!(got, sent);
}

#[test]
fn small_receives_share_a_buffer_where_the_kernel_consumes_them_incrementally() {
    let (mut backend, _stream, mut client, _) = pair((2, 4096));
    let mut starts = Vec::new();
    for piece in [b"first", b"again"] {
        client.write_all(piece).unwrap();
        pump(&mut backend, |ready| match ready {
            Ready::Received { bytes, .. } => {
                assert_eq!(bytes, piece);
                starts.push(bytes.as_ptr() as usize);
                true
            }
            _ => false,
        });
    }
    if backend.buffers.incremental {
        assert_eq!(starts[1], starts[0] + 5, "the second receive goes on in the same buffer");
    } else {
        assert_ne!(starts[1], starts[0] + 5);
    }
}

#[test]
fn a_send_the_engine_waits_on_is_not_held_back_for_a_batch() {
    let (mut backend, mut stream, _client, key) = pair((4, 4096));
    let mut pool = BufferPool::new(1 << 20);
    let mut out = Outbox::default();
    out.append(&mut pool, |buf| buf.extend_from_slice(b"a Close, say"));
    assert_eq!(backend.flush(key, &mut stream, &mut out, &mut pool).unwrap(), Flushed::Partial);
    // Nothing waits on it, and turns carry several events: the send's completion and one
    // more event, for a moment.
    backend.crowded = true;
    assert_eq!(backend.completions_to_wait_for(None), (2, Some(BATCH_WAIT)));
    // The connection closes once it is written (or has more output behind it): the
    // send's completion alone, as soon as it comes.
    backend.output_waits(key);
    assert_eq!(backend.completions_to_wait_for(None), (1, None));
    let timeout = Some(Duration::from_millis(5));
    assert_eq!(backend.completions_to_wait_for(timeout), (1, timeout));
}

#[test]
fn sends_wait_for_a_batch_only_while_turns_carry_several_events() {
    let (mut backend, mut stream, mut client, key) = pair((4, 4096));
    let mut other = StdStream::connect(backend.listeners[0].local_addr().unwrap()).unwrap();
    let mut other_stream = accept_one(&mut backend);
    backend.register(ConnKey { slot: 4, generation: 1 }, &mut other_stream).unwrap();
    let mut pool = BufferPool::new(1 << 20);
    let mut out = Outbox::default();
    // Both connections' messages are in before the wait: one wait finds both, and the
    // next turn's send waits for another event.
    client.write_all(b"one").unwrap();
    other.write_all(b"two").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    backend.wait(Some(PATIENCE)).unwrap();
    let mut received = 0;
    backend.drain(|ready| received += usize::from(matches!(ready, Ready::Received { .. })));
    assert_eq!(received, 2);
    out.append(&mut pool, |buf| buf.extend_from_slice(b"echo"));
    assert_eq!(backend.flush(key, &mut stream, &mut out, &mut pool).unwrap(), Flushed::Partial);
    assert_eq!(backend.completions_to_wait_for(None), (2, Some(BATCH_WAIT)));
    let mut written = None;
    pump(&mut backend, |ready| match ready {
        Ready::Sent { written: w, .. } => {
            written = Some(w.unwrap());
            true
        }
        _ => false,
    });
    out.sent(written.unwrap(), &mut pool);
    let mut got = [0; 4];
    client.read_exact(&mut got).unwrap();
    // A lone message (a lone connection's turn): the next send does not wait for more.
    client.write_all(b"three").unwrap();
    pump(&mut backend, |ready| matches!(ready, Ready::Received { .. }));
    out.append(&mut pool, |buf| buf.extend_from_slice(b"echo"));
    assert_eq!(backend.flush(key, &mut stream, &mut out, &mut pool).unwrap(), Flushed::Partial);
    assert_eq!(backend.completions_to_wait_for(None), (1, None));
}

#[test]
fn lent_segments_go_out_whole_in_one_slice_or_many() {
    let (mut backend, mut stream, mut client, key) = pair((4, 4096));
    let mut pool = BufferPool::new(1 << 20);
    let mut out = Outbox::default();
    let mut expected = Vec::new();
    out.append(&mut pool, |buf| buf.extend_from_slice(b"one slice"));
    expected.extend_from_slice(b"one slice");
    assert_eq!(backend.flush(key, &mut stream, &mut out, &mut pool).unwrap(), Flushed::Partial);
    // Queued behind the send in flight: lent segments are not appended to.
    for i in 0..100u8 {
        let frame = SharedFrame::encode(Message::Binary(&[i; 300]));
        let mut bytes = Vec::new();
        surge_proto::frame::encode_message(&mut bytes, Message::Binary(&[i; 300]));
        expected.extend_from_slice(&bytes);
        out.push_shared(&mut pool, &frame);
        out.append(&mut pool, |buf| buf.push(i));
        expected.push(i);
    }
    let mut written = 0;
    while out.len() > 0 {
        pump(&mut backend, |ready| match ready {
            Ready::Sent { key: k, written: result } => {
                assert_eq!(k, key);
                let n = result.expect("the send succeeds");
                written += n;
                out.sent(n, &mut pool);
                true
            }
            _ => false,
        });
        let _ = backend.flush(key, &mut stream, &mut out, &mut pool).unwrap();
    }
    let mut got = vec![0; expected.len()];
    client.read_exact(&mut got).unwrap();
    assert_eq!(written, expected.len());
    assert_eq!(got, expected);
}

#[test]
fn a_retired_connection_keeps_its_output_until_the_kernel_lets_go() {
    let (mut backend, mut stream, _client, key) = pair((4, 4096));
    let mut pool = BufferPool::new(1 << 20);
    // The client never reads: sends of 1 MiB fill the socket's buffers until one stays in
    // flight, waiting for room.
    let chunk = SharedFrame::encode(Message::Binary(&vec![9; 1 << 20]));
    let mut out = Box::new(Outbox::default());
    let deadline = Instant::now() + PATIENCE;
    loop {
        out.push_shared(&mut pool, &chunk);
        assert_eq!(backend.flush(key, &mut stream, &mut out, &mut pool).unwrap(), Flushed::Partial);
        backend.wait(Some(Duration::from_millis(50))).unwrap();
        let mut sent = None;
        backend.drain(|ready| {
            if let Ready::Sent { written, .. } = ready {
                sent = Some(written.unwrap());
            }
        });
        match sent {
            Some(n) => out.sent(n, &mut pool),
            None => break, // in flight, and staying there
        }
        assert!(Instant::now() < deadline, "the socket fills up");
    }
    assert!(backend.retire(key, stream, Some(out)).is_none(), "kept while the kernel reads it");
    assert_eq!(backend.orphans.len(), 1);
    let deadline = Instant::now() + PATIENCE;
    while !backend.orphans.is_empty() {
        assert!(Instant::now() < deadline, "the cancelled send completes");
        backend.wait(Some(Duration::from_millis(10))).unwrap();
        backend.drain(|ready| assert!(!matches!(ready, Ready::Sent { .. }), "not reported"));
    }
}

#[test]
fn the_ring_ends_cleanly_with_receives_and_sends_armed() {
    let (mut backend, mut stream, mut client, key) = pair((8, 128));
    let mut pool = BufferPool::new(1 << 20);
    let mut out = Outbox::default();
    out.push_shared(&mut pool, &SharedFrame::encode(Message::Binary(&vec![1; 8 << 20])));
    let _ = backend.flush(key, &mut stream, &mut out, &mut pool).unwrap();
    client.write_all(b"bytes the loop never takes").unwrap();
    // Dropped first: the kernel is done with the send's memory before the queue goes.
    drop(backend);
    drop(out);
}

#[test]
fn user_data_round_trips() {
    for op in OPS {
        for (slot, generation) in [(0, 0), (MAX_SLOTS - 1, u32::MAX), (12345, 678)] {
            assert_eq!(decode(user_data(op, slot, generation)), (op, slot, generation));
        }
    }
}

/// Accepted sockets have TCP_NODELAY as configured, inherited from the listener the acceptor
/// set up, since the backend no longer sets it on each.
#[test]
fn accepted_sockets_have_nodelay_as_configured() {
    for nodelay in [true, false] {
        let (listener, addr) = crate::acceptor::loopback_listener(nodelay);
        let stats = Arc::new(LoopStats::default());
        let mut backend =
            UringBackend::new(Poll::new().unwrap(), vec![listener], (4, 4096), stats).unwrap();
        let _client = StdStream::connect(addr).unwrap();
        let deadline = Instant::now() + PATIENCE;
        let accepted = loop {
            backend.wait(Some(Duration::from_millis(10))).unwrap();
            backend.drain(|_| {});
            if let Some((Stream::Tcp(stream), _)) = backend.accept(0).unwrap() {
                break stream;
            }
            assert!(Instant::now() < deadline, "the multishot accept delivers");
        };
        assert_eq!(accepted.nodelay().unwrap(), nodelay);
    }
}
