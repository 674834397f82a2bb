//! A panic in the engine's own work on one connection (here a transport call that panics,
//! standing in for a bug) drops that connection alone: the loop, the connections beside it
//! and the next ones go on, and the panic is counted.

use super::{config, sim, Client, Got, WIDE};
use crate::backend::sim::Sim;
use crate::transport::memory::Fault;

/// Opens a victim and a bystander, arms `fault` on the victim, has both send a message, and
/// checks what follows.
fn one_connection_is_dropped(fault: Fault) {
    let (mut sim, log) = sim(config().build().unwrap());
    let mut victim = Client::open(&mut sim, WIDE);
    let mut bystander = Client::open(&mut sim, WIDE);
    victim.peer.state().fault = Some(fault);
    victim.send_text("first");
    bystander.send_text("beside");
    sim.settle();

    assert!(victim.gone(), "the connection whose work panicked is dropped");
    assert_eq!(log.seen().closes, [1006], "on_close: no close handshake");
    assert_eq!(bystander.recv(), [Got::Text("beside".into())]);
    bystander.send_text("after");
    sim.settle();
    assert_eq!(bystander.recv(), [Got::Text("after".into())]);
    assert_newcomer_is_served(&mut sim);
    let metrics = sim.metrics_text();
    for line in [
        "surge_panics_total{loop=\"0\",origin=\"engine\"} 1\n",
        "surge_panics_total{loop=\"0\",origin=\"handler\"} 0\n",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
}

fn assert_newcomer_is_served<H: crate::handler::Handler>(sim: &mut Sim<H>) {
    let mut newcomer = Client::open(sim, WIDE);
    newcomer.send_text("new");
    sim.settle();
    assert_eq!(newcomer.recv(), [Got::Text("new".into())]);
}

#[test]
fn a_panic_while_reading_drops_that_connection_alone() {
    one_connection_is_dropped(Fault::Read);
}

#[test]
fn a_panic_while_writing_drops_that_connection_alone() {
    one_connection_is_dropped(Fault::Write);
}

#[test]
fn a_handler_panic_is_counted_beside_the_engine_s() {
    let (mut sim, log) = sim(config().build().unwrap());
    let mut client = Client::open(&mut sim, WIDE);
    client.send_text("panic");
    sim.settle();
    assert_eq!(client.recv(), [Got::Close(Some(1011), String::new())]);
    client.answer();
    sim.settle();
    assert!(client.gone());
    assert_eq!(log.seen().closes, [1011]);
    let metrics = sim.metrics_text();
    for line in [
        "surge_panics_total{loop=\"0\",origin=\"handler\"} 1\n",
        "surge_panics_total{loop=\"0\",origin=\"engine\"} 0\n",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
}
