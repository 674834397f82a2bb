//! Graceful shutdown: Close 1001 to every connection, the listeners closed, and the peers
//! that do not answer dropped at the deadline, to the instant.

use std::time::Duration;

use super::{config, sim, Client, Got, WIDE};
use crate::handle::{Command, ShutdownReport};

#[test]
fn peers_that_ignore_the_close_are_forced_at_the_deadline() {
    let (mut sim, log) = sim(config().build().unwrap());
    let mut polite = Client::open(&mut sim, WIDE);
    let mut silent = Client::open(&mut sim, WIDE);
    let grace = Duration::from_millis(400);
    sim.command(Command::Shutdown { deadline: sim.at(grace) });
    sim.settle();
    let going_away = Got::Close(Some(1001), "server shutting down".into());
    assert_eq!(polite.recv(), std::slice::from_ref(&going_away));
    assert_eq!(silent.recv(), [going_away]);
    polite.answer();
    sim.settle();
    assert!(polite.gone());
    assert!(sim.connect(WIDE).server_gone(), "the listeners are closed");
    sim.advance(grace - Duration::from_millis(1));
    assert!(!silent.gone(), "not before the deadline");
    assert!(!sim.finished());
    sim.advance(Duration::from_millis(1));
    assert!(silent.gone(), "dropped at {:?}", sim.elapsed());
    assert!(sim.finished());
    assert_eq!(sim.report(), ShutdownReport { closed_cleanly: 1, forced: 1 });
    assert_eq!(log.seen().closes, [1001, 1006]);
}
