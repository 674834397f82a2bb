//! Topics on the simulator: who a publish reaches (each subscriber once), in what order,
//! what a subscriber over its backpressure limit misses (exactly counted), and that closing
//! leaves every topic. The property tests drive random subscribes, unsubscribes and
//! publishes (from handlers, pipelined, and from the handle) against a model.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use surge_proto::message::Message;

use super::{config, Client, Got, WIDE};
use crate::backend::sim::Sim;
use crate::conn::Conn;
use crate::handle::{Command, ConnectionId};
use crate::handler::{Handler, Upgrade};
use crate::outbox::SharedFrame;
use crate::request::Request;
use crate::topics::{Audience, TopicList};
use crate::{BackpressurePolicy, CloseCode, Config};

/// What the handler saw.
#[derive(Debug, Default)]
struct Seen {
    /// Ids of opened connections, in order.
    opened: Vec<ConnectionId>,
    /// `on_missed` counts, in order.
    missed: Vec<u64>,
    closes: Vec<u16>,
}

/// `sub T`, `unsub T`; `pub T1,T2 PAYLOAD` (everyone), `pubx T1,T2 PAYLOAD` (not the
/// sender), `pubsend T PAYLOAD` (publish, then send "after"); `flood T N SIZE` publishes
/// N binaries of SIZE bytes.
struct Rooms(Arc<Mutex<Seen>>);

impl Handler for Rooms {
    type State = ();

    fn on_upgrade(&mut self, _: &Request<'_>) -> Upgrade<()> {
        Upgrade::accept(())
    }

    fn on_open(&mut self, conn: &mut Conn<'_>, _: &mut ()) {
        self.0.lock().unwrap().opened.push(conn.id());
    }

    fn on_message(&mut self, conn: &mut Conn<'_>, _: &mut (), msg: Message<'_>) {
        let Message::Text(text) = msg else { return };
        let mut words = text.splitn(3, ' ');
        let (verb, topics, rest) =
            (words.next().unwrap(), words.next().unwrap_or(""), words.next().unwrap_or(""));
        let topics: Vec<&str> = topics.split(',').collect();
        match verb {
            "sub" => {
                conn.subscribe(topics[0]);
            }
            "unsub" => {
                conn.unsubscribe(topics[0]);
            }
            "pub" => conn.publish_to(&topics, Message::Text(rest), Audience::Everyone),
            "pubx" => conn.publish_to(&topics, Message::Text(rest), Audience::Others),
            "pubsend" => {
                conn.publish(topics[0], Message::Text(rest));
                let _ = conn.send_text("after");
            }
            "flood" => {
                let (count, size) = rest.split_once(' ').unwrap();
                let payload = vec![7; size.parse().unwrap()];
                for _ in 0..count.parse::<usize>().unwrap() {
                    conn.publish(topics[0], Message::Binary(&payload));
                }
            }
            _ => panic!("unknown verb {verb}"),
        }
    }

    fn on_missed(&mut self, _: &mut Conn<'_>, _: &mut (), missed: u64) {
        self.0.lock().unwrap().missed.push(missed);
    }

    fn on_close(&mut self, _: ConnectionId, _: (), code: CloseCode, _: &str) {
        self.0.lock().unwrap().closes.push(code.as_u16());
    }
}

fn rooms(config: Config) -> (Sim<Rooms>, Arc<Mutex<Seen>>) {
    let seen = Arc::default();
    (Sim::new(config, Rooms(Arc::clone(&seen))), seen)
}

fn text(s: &str) -> Got {
    Got::Text(s.into())
}

/// Opens `n` clients, each subscribed to the topics given for it.
fn members(sim: &mut Sim<Rooms>, topics: &[&[&str]]) -> Vec<Client> {
    topics
        .iter()
        .map(|topics| {
            let mut client = Client::open(sim, WIDE);
            for topic in *topics {
                client.send_text(&format!("sub {topic}"));
            }
            sim.settle();
            client
        })
        .collect()
}

#[test]
fn a_publish_reaches_every_subscriber_once_and_the_sender_as_asked() {
    let (mut sim, _) = rooms(config().build().unwrap());
    let mut c = members(&mut sim, &[&["a"], &["a", "b"], &["b"], &[]]);
    c[0].send_text("pub a,b one");
    sim.settle();
    let got: Vec<Vec<Got>> = c.iter_mut().map(Client::recv).collect();
    assert_eq!(got, [vec![text("one")], vec![text("one")], vec![text("one")], vec![]]);
    c[1].send_text("pubx a,b two");
    sim.settle();
    let got: Vec<Vec<Got>> = c.iter_mut().map(Client::recv).collect();
    assert_eq!(got, [vec![text("two")], vec![], vec![text("two")], vec![]]);
    c[2].send_text("unsub b");
    c[3].send_text("pub b three");
    sim.settle();
    let got: Vec<Vec<Got>> = c.iter_mut().map(Client::recv).collect();
    assert_eq!(got, [vec![], vec![text("three")], vec![], vec![]]);
    let stats = sim.handle().topic_stats();
    assert_eq!((stats.publishes, stats.deliveries, stats.skipped), (3, 6, 0));
    assert_eq!((stats.topics, stats.subscriptions), (2, 3));
}

#[test]
fn a_send_after_a_publish_arrives_after_it() {
    let (mut sim, seen) = rooms(config().build().unwrap());
    let mut c = members(&mut sim, &[&["t"], &["t"]]);
    c[0].send_text("pubsend t first");
    sim.settle();
    assert_eq!(c[0].recv(), [text("first"), text("after")]);
    assert_eq!(c[1].recv(), [text("first")]);
    // From another thread: the loop's one queue keeps the order.
    let other = seen.lock().unwrap().opened[1];
    let topics = TopicList::One("t".into());
    sim.command(Command::Publish { topics, frame: SharedFrame::encode(Message::Text("p")) });
    sim.command(Command::Send { id: other, msg: "s".into() });
    sim.settle();
    assert_eq!(c[1].recv(), [text("p"), text("s")]);
}

#[test]
fn many_publishes_in_one_turn_reach_a_subscriber_in_one_write() {
    let (mut sim, _) = rooms(config().build().unwrap());
    let mut c = members(&mut sim, &[&[], &["t"], &["t"]]);
    let before = c[1].peer.state().writes;
    // One read of the publisher's: 100 publishes in one turn (more than one writev's slices).
    let burst: String = (0..100).map(|n| format!("pub t m{n}\n")).collect();
    for line in burst.lines() {
        c[0].queue_text(line);
    }
    c[0].flush();
    sim.settle();
    let expected: Vec<Got> = (0..100).map(|n| text(&format!("m{n}"))).collect();
    assert_eq!(c[1].recv(), expected);
    assert_eq!(c[2].recv(), expected);
    assert_eq!(c[1].peer.state().writes - before, 1, "one write for the whole turn");
}

#[test]
fn the_handle_subscribes_and_unsubscribes_by_id() {
    let (mut sim, seen) = rooms(config().build().unwrap());
    let mut c = members(&mut sim, &[&[], &[]]);
    let id = seen.lock().unwrap().opened[0];
    sim.command(Command::Subscribe { id, topic: "news".into() });
    sim.settle();
    c[1].send_text("pub news hello");
    sim.settle();
    assert_eq!(c[0].recv(), [text("hello")]);
    sim.command(Command::Unsubscribe { id, topic: "news".into() });
    sim.settle();
    c[1].send_text("pub news again");
    sim.settle();
    assert_eq!(c[0].recv(), []);
    assert_eq!(sim.handle().topic_stats().subscriptions, 0);
}

#[test]
fn closing_leaves_every_topic_over_100_000_cycles() {
    let (mut sim, _) = rooms(config().build().unwrap());
    let mut steady = members(&mut sim, &[&["shared"]]);
    for cycle in 0..100_000u32 {
        let mut client = Client::open(&mut sim, WIDE);
        client.send_text("sub shared");
        client.send_text(&format!("sub own{}", cycle % 7));
        client.hang_up();
        sim.settle();
        assert!(client.gone());
    }
    let stats = sim.handle().topic_stats();
    assert_eq!((stats.topics, stats.subscriptions), (1, 1), "only the steady member is left");
    assert!(sim.topic_slots() <= 2, "the table kept {} slots", sim.topic_slots());
    steady[0].send_text("pub shared still");
    sim.settle();
    assert_eq!(steady[0].recv(), [text("still")]);
}

#[test]
fn a_subscriber_over_its_limit_misses_publishes_and_is_told_exactly_how_many() {
    const LIMIT: usize = 64 * 1024;
    let (mut sim, seen) = rooms(config().backpressure_limit(LIMIT).build().unwrap());
    let mut publisher = members(&mut sim, &[&[]]).remove(0);
    let mut slow = Client::open(&mut sim, 8 * 1024);
    slow.send_text("sub t");
    sim.settle();
    let published = 200;
    publisher.send_text(&format!("flood t {published} 1024"));
    sim.settle();
    let mut got = 0;
    while seen.lock().unwrap().missed.is_empty() {
        let before = got;
        got += slow.recv().len();
        sim.settle();
        assert!(got > before, "stalled");
    }
    got += slow.recv().len();
    let missed = seen.lock().unwrap().missed.clone();
    assert_eq!(missed.len(), 1);
    assert!(missed[0] > 0);
    assert_eq!(got as u64 + missed[0], published, "every publish delivered or counted");
    let stats = sim.handle().topic_stats();
    assert_eq!((stats.deliveries, stats.skipped), (got as u64, missed[0]));
    let _ = publisher.recv();
}

#[test]
fn under_the_close_policy_a_subscriber_over_its_limit_is_closed_with_1008() {
    let config = config()
        .backpressure_limit(64 * 1024)
        .backpressure_policy(BackpressurePolicy::Close1008)
        .build()
        .unwrap();
    let (mut sim, seen) = rooms(config);
    let mut publisher = members(&mut sim, &[&[]]).remove(0);
    let mut slow = Client::open(&mut sim, 8 * 1024);
    slow.send_text("sub t");
    sim.settle();
    publisher.send_text("flood t 200 1024");
    sim.settle();
    let mut got = Vec::new();
    while !got.last().is_some_and(|m| matches!(m, Got::Close(..))) {
        got.extend(slow.recv());
        sim.settle();
    }
    assert_eq!(got.last(), Some(&Got::Close(Some(1008), "backpressure".into())));
    slow.answer();
    sim.settle();
    assert_eq!(seen.lock().unwrap().closes, [1008]);
    assert_eq!(sim.handle().topic_stats().closed, 1);
    let _ = publisher.recv();
}

/// One step of a property test.
#[derive(Debug, Clone)]
enum Op {
    Sub(usize, usize),
    Unsub(usize, usize),
    /// A client publishes a burst (one write: pipelined) to a set of topics.
    Pub {
        from: usize,
        topics: Vec<usize>,
        others: bool,
        burst: usize,
    },
    /// Another thread publishes.
    HandlePub(Vec<usize>),
}

const CLIENTS: usize = 4;
const TOPICS: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    let topics = proptest::sample::subsequence((0..TOPICS).collect::<Vec<_>>(), 1..=TOPICS);
    prop_oneof![
        (0..CLIENTS, 0..TOPICS).prop_map(|(c, t)| Op::Sub(c, t)),
        (0..CLIENTS, 0..TOPICS).prop_map(|(c, t)| Op::Unsub(c, t)),
        (0..CLIENTS, topics.clone(), any::<bool>(), 1..4usize)
            .prop_map(|(from, topics, others, burst)| Op::Pub { from, topics, others, burst }),
        topics.prop_map(Op::HandlePub),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every client receives exactly the publishes the model says (each once, whatever the
    /// overlap of topics) and in publish order.
    #[test]
    fn publishes_arrive_once_in_order_as_the_model_says(ops in proptest::collection::vec(op(), 1..40)) {
        let (mut sim, _) = rooms(config().build().unwrap());
        let mut clients = members(&mut sim, &[&[] as &[&str]; CLIENTS]);
        let mut subscribed = [[false; TOPICS]; CLIENTS];
        let mut expected: Vec<Vec<Got>> = vec![Vec::new(); CLIENTS];
        let mut got: Vec<Vec<Got>> = vec![Vec::new(); CLIENTS];
        let name = |topics: &[usize]| {
            topics.iter().map(|t| format!("t{t}")).collect::<Vec<_>>().join(",")
        };
        for (seq, op) in ops.iter().enumerate() {
            match op {
                Op::Sub(c, t) => {
                    clients[*c].send_text(&format!("sub t{t}"));
                    subscribed[*c][*t] = true;
                }
                Op::Unsub(c, t) => {
                    clients[*c].send_text(&format!("unsub t{t}"));
                    subscribed[*c][*t] = false;
                }
                Op::Pub { from, topics, others, burst } => {
                    let verb = if *others { "pubx" } else { "pub" };
                    for n in 0..*burst {
                        let payload = format!("{seq}.{n}");
                        clients[*from].send_text(&format!("{verb} {} {payload}", name(topics)));
                        for (c, expect) in expected.iter_mut().enumerate() {
                            let member = topics.iter().any(|&t| subscribed[c][t]);
                            if member && !(*others && c == *from) {
                                expect.push(Got::Text(payload.clone()));
                            }
                        }
                    }
                }
                Op::HandlePub(topics) => {
                    let payload = format!("{seq}.h");
                    let list = TopicList::Many(topics.iter().map(|t| format!("t{t}").into()).collect());
                    let frame = SharedFrame::encode(Message::Text(&payload));
                    sim.command(Command::Publish { topics: list, frame });
                    for (c, expect) in expected.iter_mut().enumerate() {
                        if topics.iter().any(|&t| subscribed[c][t]) {
                            expect.push(Got::Text(payload.clone()));
                        }
                    }
                }
            }
            sim.settle();
            for (c, client) in clients.iter_mut().enumerate() {
                got[c].extend(client.recv());
            }
        }
        prop_assert_eq!(got, expected);
    }
}
