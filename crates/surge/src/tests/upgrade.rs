//! The opening handshake's answer.

use super::{config, sim, Client, WIDE};

#[test]
fn an_accept_carries_the_handlers_response_headers() {
    let (mut sim, _) = sim(config().build().unwrap());
    let client = Client::open(&mut sim, WIDE);
    assert!(client.head.contains("\r\nX-Probe: sim\r\n"), "{}", client.head);
}
