//! A panicking handler costs one connection, not the loop.

use std::time::Duration;

use crate::client::{config, eventually, Client, Got, STOP};
use crate::harness::start;

#[test]
fn a_panic_closes_that_connection_with_1011_and_the_others_go_on() {
    let (server, shared) = start(config(1).build().unwrap());
    let addr = server.local_addrs()[0];
    let mut victim = Client::connect(addr);
    let mut bystander = Client::connect(addr);
    bystander.send_text("before");
    assert_eq!(bystander.recv(), Got::Text("before".into()));

    victim.send_text("panic");
    assert_eq!(victim.recv(), Got::Close(Some(1011), String::new()));
    assert!(victim.wait_eof(Duration::from_secs(5)));
    eventually("on_close for the victim", || shared.log().closed.len() == 1);

    bystander.send_text("after");
    assert_eq!(bystander.recv(), Got::Text("after".into()));
    let mut newcomer = Client::connect(addr);
    newcomer.send_text("new");
    assert_eq!(newcomer.recv(), Got::Text("new".into()));
    server.shutdown(STOP);
}
