//! `fanout` against Surge's own room server (`surge::broadcast::RoomHandler`) in this
//! process: two rooms, subscribers and publishers spread over two listeners, and the JSON
//! result read back as `compare` would read it.

use std::time::Duration;

use clap::Parser;
use surge::broadcast::RoomHandler;
use surge::{Config, Server};
use surge_loadgen::cli::Cli;
use surge_loadgen::report::RunResult;

#[test]
fn every_publish_reaches_its_rooms_subscribers_once_and_in_order() {
    let config = Config::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .listen("127.0.0.1:0".parse().unwrap())
        .threads(2)
        .build()
        .unwrap();
    let server = Server::start(config, |_| RoomHandler).unwrap();
    let urls: Vec<String> =
        server.local_addrs().iter().map(|addr| format!("ws://{addr}/room")).collect();
    let dir = std::env::temp_dir().join(format!("surge-fanout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("fanout.json");
    let hgrm = dir.join("fanout.hgrm");
    let mut args = vec!["surge-loadgen", "fanout"];
    args.extend(urls.iter().map(String::as_str));
    let (json_arg, hgrm_arg) = (json.to_str().unwrap(), hgrm.to_str().unwrap());
    args.extend([
        "--subscribers",
        "20",
        "--publishers",
        "4",
        "--topics",
        "2",
        "--rate",
        "400",
        "--size",
        "64",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--json",
        json_arg,
        "--hgrm",
        hgrm_arg,
    ]);
    let failure = Cli::try_parse_from(args).unwrap().run().unwrap();
    assert!(failure.is_none());
    let result = RunResult::load(&json).unwrap();
    let fanout = result.fanout.expect("a fanout result");
    // 400 msg/s for 1 s, each to the 10 subscribers of its room.
    assert!((390..=410).contains(&fanout.published), "published {}", fanout.published);
    assert_eq!(fanout.expected, fanout.published * 10);
    assert_eq!(fanout.received, fanout.expected, "reach {}", fanout.reach);
    assert_eq!((fanout.lost, fanout.duplicates, fanout.reordered), (0, 0, 0));
    assert_eq!(result.messages, fanout.received);
    assert!(result.latency_us.count == fanout.received && result.latency_us.p50 > 0.0);
    assert!(std::fs::read_to_string(&hgrm).unwrap().contains("Percentile"));
    server.shutdown(Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_closed_loop_run_with_lean_subscribers_accounts_for_every_delivery() {
    let config = Config::builder().listen("127.0.0.1:0".parse().unwrap()).build().unwrap();
    let server = Server::start(config, |_| RoomHandler).unwrap();
    let url = format!("ws://{}/room", server.local_addrs()[0]);
    let dir = std::env::temp_dir().join(format!("surge-fanout-window-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("fanout.json");
    let args = [
        "surge-loadgen",
        "fanout",
        &url,
        "--subscribers",
        "12",
        "--publishers",
        "3",
        "--topics",
        "2",
        "--window",
        "8",
        "--lean",
        "--size",
        "1024",
        "--duration",
        "500ms",
        "--warmup",
        "200ms",
        "--json",
        json.to_str().unwrap(),
    ];
    let failure = Cli::try_parse_from(args).unwrap().run().unwrap();
    assert!(failure.is_none());
    let result = RunResult::load(&json).unwrap();
    let fanout = result.fanout.expect("a fanout result");
    assert_eq!((fanout.window, fanout.lean, result.config.rate), (Some(8), true, None));
    // Publishers 0 and 2 share room 0 (6 subscribers) and publisher 1 has room 1 (6).
    assert!(fanout.published > 0);
    assert_eq!(fanout.expected, fanout.published * 6);
    assert_eq!(fanout.received, fanout.expected, "reach {}", fanout.reach);
    assert_eq!((fanout.lost, fanout.duplicates, fanout.reordered, fanout.stalls), (0, 0, 0, 0));
    assert!(result.latency_us.count == fanout.received && result.latency_us.p50 > 0.0);
    // Arrivals in the window: the window's sends less those still on their way at its end,
    // plus the warm-up's that arrived after its start: at most a window per publisher apart.
    let arrived = (fanout.arrived_per_sec * result.measured_s).round() as u64;
    assert!(arrived.abs_diff(fanout.received) <= 2 * 3 * 8 * 6, "{arrived} {}", fanout.received);
    assert!(result.cpu.client_s > 0.0 && result.cpu.client_s <= 1.5 * result.measured_s);
    server.shutdown(Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&dir);
}
