//! `surge-compare`: the end-to-end comparison of Surge against peer servers, in one sitting.
//! benches/compare.sh builds everything and runs this; see its header for the options.
//!
//! Servers (each bound to 127.0.0.1, run under `timeout` and `taskset` on the server cores,
//! killed on exit): the raw TCP echo floor (`surge-loadgen floor`, measured in raw mode),
//! Surge (`surge echo`), fastwebsockets and tokio-tungstenite echo servers on current-thread
//! and multi-thread tokio runtimes (this crate), Node `ws` (tests/servers/node_ws_echo.js).
//! The load generator runs on the client cores. Each round starts every server, then runs
//! every scenario against each of them in turn (the order rotated by one server per round),
//! then stops them; then idle connections, each server fresh; then Surge's thread sweep.

mod idle;
mod procs;
mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The options (benches/compare.sh --help).
#[derive(Debug, Clone)]
pub struct Opts {
    root: PathBuf,
    out: PathBuf,
    rounds: usize,
    duration: f64,
    warmup: f64,
    server_cores: Vec<usize>,
    client_cores: Vec<usize>,
    server_threads: usize,
    client_threads: usize,
    rate: f64,
    idle: usize,
    sweep: Vec<usize>,
    servers: Option<Vec<String>>,
    scenarios: Option<Vec<String>>,
    alloc: bool,
    quick: bool,
    nice: Option<i32>,
    /// Another build of the `surge` binary, measured beside this one as "Surge (baseline)".
    baseline_surge: Option<PathBuf>,
    /// Whether that build takes `--backend` (builds before the io_uring backend do not).
    baseline_takes_backend: bool,
    /// `--deflate[=PARAMS]`: the load generator offers permessage-deflate ("" for its
    /// default offer), and the deflate servers and JSON-text scenarios join the run.
    deflate: Option<String>,
    command: String,
}

const USAGE: &str = "\
usage: benches/compare.sh [OPTIONS]
  --rounds N            rounds, servers interleaved in each (default 3)
  --duration D          measured time per run: 10s, 500ms (default 10s)
  --warmup D            warm-up per run, after connecting (default 2s)
  --server-cores LIST   cores for the server: 0 or 0-7 or 0,2 (default: the first half)
  --client-cores LIST   cores for the load generator (default: the other half)
  --server-threads N    threads of every server but Node's (default: one per server core)
  --client-threads N    load generator threads (default: one per client core)
  --rate R              open-loop rate, messages/s over all connections (default 20k)
  --idle N              idle connections for the RSS figure (default 10000)
  --sweep LIST          Surge's server thread counts for the sweep (default 1..cores)
  --servers LIST        only these: floor,surge,surge-uring,surge-baseline,fws-current,fws-multi,
                        tt-current,tt-multi,node-ws (surge: the epoll backend, surge-uring:
                        io_uring); and surge-scraped (Surge with its /metrics asked for every
                        second during each run; only when listed)
  --baseline-surge PATH another build of the surge binary (an older commit's), run beside this
                        one as the server surge-baseline, Surge (baseline): an A/B of two
                        builds, paired by round like every other ratio to Surge (on the
                        same backend, when the build takes --backend)
  --scenarios LIST      only these: 20b,1conn,1000conn,1k,16k,pipelined,open,idle,sweep,
                        json137,json16k,json137-open
  --deflate[=PARAMS]    the load generator offers permessage-deflate (PARAMS as its --deflate
                        takes them) and reports the compression ratio; adds the servers
                        surge-deflate-shared, surge-deflate-s12 (stream:12:4),
                        surge-deflate-s15 (stream:15:8), surge-deflate-shared-uring and
                        surge-deflate-s12-uring (the same on io_uring), node-ws-deflate,
                        python-ws-deflate; with --baseline-surge also
                        surge-baseline-deflate-shared and surge-baseline-deflate-s12 (the
                        baseline build with the same flags)
                        and the scenarios json137, json16k (JSON-record text, 100 x 137 B,
                        200 x 16 KiB) and json137-open (json137 in open loop at --rate)
  --nice N              run the servers and the load generator under `nice -n N`
                        (negative: ahead of other work on a shared machine; needs root)
  --no-alloc            skip the allocation count (cargo bench --bench alloc)
  --quick               smoke: 1 round, 1 s runs, 1000 idle connections (unless given)
  --out DIR             where results go (default bench-results/<date>)
  --render FILE         rewrite results.md (and the summary) from a saved results.json";

fn parse_cores(s: &str) -> Result<Vec<usize>, String> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let bad = || format!("bad core list {s:?}");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                v.extend(a..=b);
            }
            None => v.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(v)
}

fn cores_str(v: &[usize]) -> String {
    v.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().map(|n| n * mult).map_err(|_| format!("bad duration {s:?}"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let l = s.to_ascii_lowercase();
    let (n, m) = match l.strip_suffix('k') {
        Some(n) => (n, 1e3),
        None => (l.as_str(), 1.0),
    };
    n.parse::<f64>().map(|n| n * m).map_err(|_| format!("bad rate {s:?}"))
}

fn parse_opts() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (mut rounds, mut duration, mut warmup, mut idle) = (None, None, None, None);
    let (mut server_cores, mut client_cores, mut server_threads, mut client_threads) =
        (None, None, None, None);
    let mut o = Opts {
        root: PathBuf::from("."),
        out: PathBuf::new(),
        rounds: 3,
        duration: 10.0,
        warmup: 2.0,
        server_cores: vec![],
        client_cores: vec![],
        server_threads: 1,
        client_threads: 1,
        rate: 20_000.0,
        idle: 10_000,
        sweep: (1..=cores).collect(),
        servers: None,
        scenarios: None,
        alloc: true,
        quick: false,
        nice: None,
        baseline_surge: None,
        baseline_takes_backend: false,
        deflate: None,
        command: String::new(),
    };
    while let Some(flag) = args.next() {
        let mut val = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--root" => o.root = PathBuf::from(val()?),
            "--out" => o.out = PathBuf::from(val()?),
            "--command" => o.command = val()?,
            "--rounds" => rounds = Some(val()?.parse().map_err(|_| "bad --rounds")?),
            "--duration" => duration = Some(parse_secs(&val()?)?),
            "--warmup" => warmup = Some(parse_secs(&val()?)?),
            "--server-cores" => server_cores = Some(parse_cores(&val()?)?),
            "--client-cores" => client_cores = Some(parse_cores(&val()?)?),
            "--server-threads" => {
                server_threads = Some(val()?.parse().map_err(|_| "bad --server-threads")?)
            }
            "--client-threads" => {
                client_threads = Some(val()?.parse().map_err(|_| "bad --client-threads")?)
            }
            "--rate" => o.rate = parse_rate(&val()?)?,
            "--idle" => idle = Some(val()?.parse().map_err(|_| "bad --idle")?),
            "--sweep" => o.sweep = parse_cores(&val()?)?,
            "--servers" => o.servers = Some(val()?.split(',').map(String::from).collect()),
            "--scenarios" => o.scenarios = Some(val()?.split(',').map(String::from).collect()),
            "--no-alloc" => o.alloc = false,
            "--nice" => o.nice = Some(val()?.parse().map_err(|_| "bad --nice")?),
            "--baseline-surge" => o.baseline_surge = Some(PathBuf::from(val()?)),
            "--quick" => o.quick = true,
            "--deflate" => o.deflate = Some(String::new()),
            a if a.starts_with("--deflate=") => o.deflate = Some(a["--deflate=".len()..].into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0)
            }
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    // Without the flag a build since the io_uring backend takes `auto`, io_uring here: an
    // A/B of two builds would then be one of two backends too.
    o.baseline_takes_backend = o.baseline_surge.as_ref().is_some_and(|bin| {
        Command::new(bin)
            .args(["echo", "--help"])
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--backend"))
    });
    o.rounds = rounds.unwrap_or(if o.quick { 1 } else { 3 }).max(1);
    o.duration = duration.unwrap_or(if o.quick { 1.0 } else { 10.0 });
    o.warmup = warmup.unwrap_or(if o.quick { 0.5 } else { 2.0 });
    o.idle = idle.unwrap_or(if o.quick { 1000 } else { 10_000 });
    let half = cores.div_ceil(2).max(1);
    o.server_cores = server_cores.unwrap_or_else(|| (0..half).collect());
    o.client_cores =
        client_cores.unwrap_or_else(|| if cores > 1 { (half..cores).collect() } else { vec![0] });
    o.server_threads = server_threads.unwrap_or(o.server_cores.len()).max(1);
    o.client_threads = client_threads.unwrap_or(o.client_cores.len()).max(1);
    if o.duration < 0.5 {
        return Err("--duration must be at least 500ms".into());
    }
    Ok(o)
}

/// A server under test.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Short name (results key).
    pub id: String,
    /// Name in tables.
    pub label: String,
    /// Server threads.
    pub threads: usize,
    /// Cores it may run on.
    pub cores: Vec<usize>,
    /// WebSocket (false: raw TCP, the floor).
    pub ws: bool,
}

impl Peer {
    fn argv(&self, o: &Opts, port: u16, limit: u64) -> Vec<String> {
        let listen = format!("127.0.0.1:{port}");
        let t = self.threads.to_string();
        let rel = |p: &str| o.root.join(p).to_string_lossy().into_owned();
        let peer_bin = |b: &str| rel(&format!("benches/peers/target/release/{b}"));
        let v: Vec<String> = match self.id.as_str() {
            "floor" => vec![
                rel("target/release/surge-loadgen"),
                "floor".into(),
                "--listen".into(),
                listen,
                "--threads".into(),
                t,
            ],
            "node-ws" | "node-ws-deflate" => {
                let mut v = vec![
                    "node".into(),
                    rel("tests/servers/node_ws_echo.js"),
                    port.to_string(),
                    limit.to_string(),
                ];
                if self.id == "node-ws-deflate" {
                    v.push("--deflate".into());
                }
                v
            }
            "python-ws-deflate" => vec![
                // tests/setup.sh's virtual environment has websockets.
                match rel(".venv/bin/python") {
                    venv if Path::new(&venv).exists() => venv,
                    _ => "python3".into(),
                },
                rel("tests/servers/python_websockets_echo.py"),
                port.to_string(),
                limit.to_string(),
                "--deflate".into(),
            ],
            id if id.starts_with("surge") => {
                let mut v = vec![
                    match &o.baseline_surge {
                        Some(baseline) if id.starts_with("surge-baseline") => {
                            baseline.to_string_lossy().into_owned()
                        }
                        _ => rel("target/release/surge"),
                    },
                    "echo".into(),
                    "--listen".into(),
                    listen,
                    "--threads".into(),
                    t,
                    "--pin".into(),
                    cores_str(&self.cores),
                    "--log".into(),
                    "warn".into(),
                ];
                // "surge" (and the sweep) is the epoll backend, "surge-uring" the io_uring
                // one, and any other variant ending in `-uring` its epoll twin on io_uring,
                // the baseline build's too, unless it predates the flag.
                match id {
                    _ if id.starts_with("surge-baseline") && !o.baseline_takes_backend => {}
                    _ if id.ends_with("-uring") => {
                        v.extend(["--backend".into(), "io-uring".into()])
                    }
                    _ => v.extend(["--backend".into(), "epoll".into()]),
                }
                // A baseline's deflate variants (`surge-baseline-deflate-s12`) take the same
                // flags as this build's.
                match id.trim_end_matches("-uring").replace("surge-baseline-", "surge-").as_str() {
                    "surge-deflate-shared" => v.push("--deflate=shared".into()),
                    "surge-deflate-s12" => v.push("--deflate=stream:12:4".into()),
                    "surge-deflate-s15" => v.push("--deflate=stream:15:8".into()),
                    _ => {}
                }
                v
            }
            id => {
                let (bin, rt) = id.split_once('-').expect("peer id");
                let bin = if bin == "fws" { "fws-echo" } else { "tungstenite-echo" };
                vec![
                    peer_bin(bin),
                    "--listen".into(),
                    listen,
                    "--threads".into(),
                    t,
                    "--runtime".into(),
                    rt.into(),
                ]
            }
        };
        v
    }
}

fn peers(o: &Opts) -> Vec<Peer> {
    let t = o.server_threads;
    let p = |id: &str, label: &str, threads: usize, ws: bool| Peer {
        id: id.into(),
        label: label.into(),
        threads,
        cores: o.server_cores.clone(),
        ws,
    };
    let mut all = vec![
        p("floor", "TCP echo floor (raw, mio)", t, false),
        p("surge", "Surge", t, true),
        p("surge-uring", "Surge, io_uring", t, true),
        p("fws-current", "fastwebsockets, current-thread", t, true),
        p("fws-multi", "fastwebsockets, multi-thread", t, true),
        p("tt-current", "tokio-tungstenite, current-thread", t, true),
        p("tt-multi", "tokio-tungstenite, multi-thread", t, true),
        p("node-ws", "Node ws", 1, true),
    ];
    if o.baseline_surge.is_some() {
        all.insert(2, p("surge-baseline", "Surge (baseline)", t, true));
    }
    if o.deflate.is_some() {
        all.extend([
            p("surge-deflate-shared", "Surge, deflate shared", t, true),
            p("surge-deflate-s12", "Surge, deflate stream:12:4", t, true),
            p("surge-deflate-s15", "Surge, deflate stream:15:8", t, true),
            p("surge-deflate-shared-uring", "Surge, deflate shared, io_uring", t, true),
            p("surge-deflate-s12-uring", "Surge, deflate stream:12:4, io_uring", t, true),
            p("node-ws-deflate", "Node ws, perMessageDeflate", 1, true),
            p("python-ws-deflate", "Python websockets, compression on", 1, true),
        ]);
        if o.baseline_surge.is_some() {
            all.extend([
                p("surge-baseline-deflate-shared", "Surge (baseline), deflate shared", t, true),
                p("surge-baseline-deflate-s12", "Surge (baseline), deflate stream:12:4", t, true),
            ]);
        }
    }
    // Only when asked for (--servers surge,surge-scraped): Surge while a client asks for
    // its /metrics every second, as a Prometheus server would.
    if o.servers.as_ref().is_some_and(|s| s.iter().any(|id| id == "surge-scraped")) {
        all.insert(2, p("surge-scraped", "Surge, /metrics scraped every 1 s", t, true));
    }
    all.into_iter().filter(|p| o.servers.as_ref().is_none_or(|s| s.contains(&p.id))).collect()
}

/// Surge with `t` threads for the sweep: the first `t` of the server cores, then the others.
fn sweep_peer(o: &Opts, t: usize) -> Peer {
    let cores_n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut order = o.server_cores.clone();
    for c in o.client_cores.iter().copied().chain(0..cores_n) {
        if !order.contains(&c) {
            order.push(c);
        }
    }
    let cores: Vec<usize> = order.iter().copied().cycle().take(t.min(order.len()).max(1)).collect();
    Peer {
        id: format!("surge-t{t}"),
        label: format!("Surge, {t} threads"),
        threads: t,
        cores,
        ws: true,
    }
}

/// A load.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name.
    pub id: &'static str,
    /// Name in tables.
    pub label: String,
    connections: usize,
    size: usize,
    in_flight: usize,
    rate: Option<f64>,
    /// JSON-record text (`--json-text`) rather than binary.
    json_text: bool,
}

fn scenarios(o: &Opts) -> Vec<Scenario> {
    let s = |id, label: &str, connections, size, in_flight, rate| Scenario {
        id,
        label: label.into(),
        connections,
        size,
        in_flight,
        rate,
        json_text: false,
    };
    let json = |id, label: &str, connections, size| Scenario {
        json_text: true,
        ..s(id, label, connections, size, 1, None)
    };
    let mut all = vec![
        s("20b", "100 conns × 20 B", 100, 20, 1, None),
        s("1conn", "1 conn × 20 B", 1, 20, 1, None),
        s("1000conn", "1000 conns × 20 B", 1000, 20, 1, None),
        s("1k", "10 conns × 1 KiB", 10, 1024, 1, None),
        s("16k", "200 conns × 16 KiB", 200, 16384, 1, None),
        s("pipelined", "100 conns × 20 B, 16 in flight", 100, 20, 16, None),
        s(
            "open",
            // One in flight at most: a late echo holds the next send back, and the latency of
            // what is held counts from its schedule (coordinated omission corrected).
            &format!("open loop, {} msg/s, 100 conns × 20 B", report::si(o.rate)),
            100,
            20,
            1,
            Some(o.rate),
        ),
    ];
    if o.deflate.is_some() || o.scenarios.is_some() {
        all.extend([
            json("json137", "100 conns × 137 B JSON text", 100, 137),
            json("json16k", "200 conns × 16 KiB JSON text", 200, 16384),
            // The same load offered to every server: with deflate the load generator
            // compresses too and is the limit first, and a server fed fewer messages a turn
            // pays more wake-ups a message, whatever compression costs.
            Scenario {
                rate: Some(o.rate),
                ..json(
                    "json137-open",
                    &format!(
                        "open loop, {} msg/s, 100 conns × 137 B JSON text",
                        report::si(o.rate)
                    ),
                    100,
                    137,
                )
            },
        ]);
    }
    all.into_iter().filter(|s| want(o, s.id)).collect()
}

fn want(o: &Opts, scenario: &str) -> bool {
    o.scenarios.as_ref().is_none_or(|s| s.iter().any(|x| x == scenario))
}

fn machine(o: &Opts) -> Value {
    let sh = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .current_dir(&o.root)
            .output()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let dirty = !sh("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let commit = sh("git", &["rev-parse", "HEAD"]);
    json!({
        "cpu_model": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "kernel": sh("uname", &["-srm"]),
        "commit": commit,
        "dirty": dirty,
        "rustc": sh("rustc", &["--version"]),
        "node": sh("node", &["--version"]),
        "memory": std::fs::read_to_string("/proc/meminfo").unwrap_or_default().lines().next().unwrap_or("").split_whitespace().nth(1).map(|kb| format!("{} GiB", kb.parse::<u64>().unwrap_or(0) >> 20)).unwrap_or_default(),
        "loadavg_start": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    })
}

/// `cargo bench -p surge-benches --bench alloc -- --strict`: allocations per million messages.
fn alloc(o: &Opts) -> Value {
    eprintln!("== allocation count: cargo bench -p surge-benches --bench alloc -- --strict");
    let mut cmd = Command::new("cargo");
    cmd.args(["bench", "-q", "-p", "surge-benches", "--bench", "alloc", "--", "--strict"])
        .current_dir(&o.root);
    match procs::run_captured(&mut cmd, Duration::from_secs(1200)) {
        Ok((ok, stdout, stderr)) => {
            let line =
                stdout.lines().find(|l| l.starts_with("alloc/echo")).unwrap_or("").to_owned();
            eprintln!("   {line}");
            let per_million = line
                .split("= ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok());
            json!({ "ok": ok, "per_million": per_million, "line": line,
                    "stderr_tail": stderr.lines().rev().take(3).collect::<Vec<_>>() })
        }
        Err(e) => json!({ "ok": false, "error": e }),
    }
}

fn round_seconds(o: &Opts, n_servers: usize, n_scen: usize) -> f64 {
    (n_servers * n_scen) as f64 * (o.duration + o.warmup + 0.8)
}

fn start(o: &Opts, p: &Peer, limit: Duration) -> Result<procs::Server, String> {
    let port = procs::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut argv = p.argv(o, port, limit.as_secs());
    if let Some(n) = o.nice {
        argv.splice(0..0, ["nice".to_owned(), "-n".to_owned(), n.to_string()]);
    }
    let log = o.out.join("logs").join(format!("server-{}.log", p.id));
    procs::Server::start(&argv, &cores_str(&p.cores), addr, limit, &log)
}

/// One loadgen run against a running server; the server's CPU use over the measured window.
fn measure(o: &Opts, round: usize, sc: &Scenario, p: &Peer, server: &procs::Server) -> Value {
    let name = format!("r{}-{}-{}", round + 1, sc.id, p.id);
    let json_path = o.out.join("raw").join(format!("{name}.json"));
    let log = o.out.join("logs").join(format!("{name}.log"));
    let scheme = if p.ws { "ws" } else { "tcp" };
    let mut args: Vec<String> = vec![
        format!("{scheme}://{}/", server.addr),
        "--connections".into(),
        sc.connections.to_string(),
        "--size".into(),
        sc.size.to_string(),
        "--in-flight".into(),
        sc.in_flight.to_string(),
        "--duration".into(),
        format!("{}ms", (o.duration * 1000.0) as u64),
        "--warmup".into(),
        format!("{}ms", (o.warmup * 1000.0) as u64),
        "--threads".into(),
        o.client_threads.min(sc.connections).to_string(),
        "--quiet".into(),
        "--json".into(),
        json_path.to_string_lossy().into_owned(),
    ];
    if let Some(r) = sc.rate {
        args.extend(["--rate".into(), format!("{r}")]);
    }
    if sc.json_text {
        args.push("--json-text".into());
    }
    match o.deflate.as_deref() {
        Some("") => args.push("--deflate".into()),
        Some(params) => args.push(format!("--deflate={params}")),
        None => {}
    }
    let loadgen = o.root.join("target/release/surge-loadgen");
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(cores_str(&o.client_cores));
    let mut nice = String::new();
    if let Some(n) = o.nice {
        cmd.args(["nice", "-n", &n.to_string()]);
        nice = format!("nice -n {n} ");
    }
    cmd.arg(&loadgen).args(&args);
    let command =
        format!("taskset -c {} {nice}surge-loadgen {}", cores_str(&o.client_cores), args.join(" "));
    let t_spawn = Instant::now();
    let bg = match procs::Background::start(&mut cmd, &log) {
        Ok(bg) => bg,
        Err(e) => return json!({ "error": e }),
    };
    let scraper = (p.id == "surge-scraped")
        .then(|| procs::Scraper::start(server.addr, Duration::from_secs(1)));
    // The measured window opens after start-up, the ramp (10k connections/s) and the warm-up;
    // sample the server inside it, a little in from each end.
    let opens = 0.25 + sc.connections as f64 / 10_000.0 + o.warmup;
    let margin = (o.duration * 0.05).min(0.25);
    procs::sleep(Duration::from_secs_f64(opens + margin).saturating_sub(t_spawn.elapsed()));
    let (c0, w0) = (procs::cpu_seconds(server.pid), Instant::now());
    let (s0, l0) = (procs::cores_busy(&p.cores), procs::cores_busy(&o.client_cores));
    procs::sleep(
        Duration::from_secs_f64(opens + o.duration - margin).saturating_sub(t_spawn.elapsed()),
    );
    let (c1, w1) = (procs::cpu_seconds(server.pid), Instant::now());
    let (s1, l1) = (procs::cores_busy(&p.cores), procs::cores_busy(&o.client_cores));
    let ok = bg.wait(Duration::from_secs_f64(o.duration + o.warmup + 60.0));
    let scrapes = scraper.map(procs::Scraper::finish);
    let window = (w1 - w0).as_secs_f64();
    let cpu = match (c0, c1) {
        (Some(a), Some(b)) => Some((b - a) / window),
        _ => None,
    };
    // Everything the server's (and the load generator's) cores did in the window, from
    // /proc/stat: less our own processes' share, what other work took from them.
    let busy = |a: Option<(f64, f64)>, b: Option<(f64, f64)>| match (a, b) {
        (Some(a), Some(b)) => Some(((b.0 - a.0) / window, (b.1 - a.1) / window)),
        _ => None,
    };
    let (server_cores_busy, client_cores_busy) = (busy(s0, s1), busy(l0, l1));
    let result = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let mut rec = json!({
        "round": round + 1, "scenario": sc.id, "server": p.id, "threads": p.threads,
        "cores": cores_str(&p.cores), "command": command, "server_command": server.command,
        "server_cpu": cpu,
        "server_cores_busy": server_cores_busy.map(|b| b.0),
        "server_cores_steal": server_cores_busy.map(|b| b.1),
        "other_on_server_cores": server_cores_busy.zip(cpu).map(|(b, c)| (b.0 - c).max(0.0)),
        "cores_shared_with_client": p.cores.iter().any(|c| o.client_cores.contains(c)),
        "client_cores_busy": client_cores_busy.map(|b| b.0),
        "metrics_scrapes": scrapes,
    });
    match result {
        Some(r) if ok => {
            let f = |path: &[&str]| {
                let mut v = &r;
                for k in path {
                    v = &v[*k];
                }
                v.as_f64()
            };
            let mps = f(&["msgs_per_sec"]).unwrap_or(0.0);
            let measured = f(&["measured_s"]).unwrap_or(o.duration);
            let errors: f64 = r["errors"]
                .as_object()
                .map(|m| m.values().filter_map(Value::as_f64).sum())
                .unwrap_or(0.0);
            rec["msgs_per_sec"] = json!(mps);
            rec["mb_per_sec"] = json!(f(&["mb_per_sec"]));
            rec["p50_us"] = json!(f(&["latency_us", "p50"]));
            rec["p99_us"] = json!(f(&["latency_us", "p99"]));
            rec["p99_9_us"] = json!(f(&["latency_us", "p99_9"]));
            rec["max_us"] = json!(f(&["latency_us", "max"]));
            let client = f(&["cpu", "client_measured_s"]).map(|c| c / measured);
            rec["client_cpu"] = json!(client);
            rec["other_on_client_cores"] =
                json!(client_cores_busy.zip(client).map(|(b, c)| (b.0 - c).max(0.0)));
            if rec["cores_shared_with_client"] == json!(true) {
                // The server and the load generator share cores: count neither as other work.
                rec["other_on_client_cores"] = Value::Null;
                rec["other_on_server_cores"] = json!(server_cores_busy
                    .zip(cpu)
                    .zip(client)
                    .map(|((b, c), l)| (b.0 - c - l).max(0.0)));
            }
            rec["server_cpu_us_per_msg"] = json!(cpu.filter(|_| mps > 0.0).map(|c| c / mps * 1e6));
            rec["errors"] = json!(errors + f(&["mismatches"]).unwrap_or(0.0));
            rec["lost"] = json!(f(&["connections", "lost"]));
            rec["established"] = json!(f(&["connections", "established"]));
            rec["backlog"] = json!(f(&["backlog"]));
            rec["deflate"] = r["deflate"].clone();
        }
        _ => {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(4).collect();
            rec["error"] = json!(format!(
                "load generator failed: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
    }
    rec
}

fn print_run(rec: &Value) {
    let f = |k: &str| rec[k].as_f64();
    match rec["error"].as_str() {
        Some(e) => eprintln!("   {:<12} {:<10} ERROR {e}", rec["server"].as_str().unwrap_or(""), rec["scenario"].as_str().unwrap_or("")),
        None => eprintln!(
            "   {:<12} {:<10} {:>10} msg/s  p99 {:>8} µs  server cpu {:>4.0}%  client cpu {:>4.0}%  \
             others {:>3.0}% / {:>3.0}%{}",
            rec["server"].as_str().unwrap_or(""),
            rec["scenario"].as_str().unwrap_or(""),
            report::si(f("msgs_per_sec").unwrap_or(0.0)),
            report::us(f("p99_us").unwrap_or(0.0)),
            f("server_cpu").unwrap_or(0.0) * 100.0,
            f("client_cpu").unwrap_or(0.0) * 100.0,
            f("other_on_server_cores").unwrap_or(0.0) * 100.0,
            f("other_on_client_cores").unwrap_or(0.0) * 100.0,
            match f("errors") { Some(e) if e > 0.0 => format!("  errors {e}"), _ => String::new() },
        ),
    }
}

/// Starts a set of servers; a failed one is reported and left out.
fn start_all(
    o: &Opts,
    ps: &[Peer],
    limit: Duration,
    failures: &mut Vec<Value>,
) -> Vec<(Peer, procs::Server)> {
    let mut up = Vec::new();
    for p in ps {
        match start(o, p, limit) {
            Ok(s) => up.push((p.clone(), s)),
            Err(e) => {
                eprintln!("   {}: {e}", p.id);
                failures.push(json!({ "server": p.id, "error": e }));
            }
        }
    }
    up
}

fn throughput(
    o: &Opts,
    ps: &[Peer],
    sweep: &[Peer],
    runs: &mut Vec<Value>,
    failures: &mut Vec<Value>,
) {
    let scs = scenarios(o);
    let sweep_scenario =
        scenarios(&Opts { scenarios: None, ..o.clone() }).into_iter().next().expect("20b");
    let limit = Duration::from_secs_f64(
        round_seconds(o, ps.len() + sweep.len(), scs.len() + 1) * 2.0 + 120.0,
    );
    for round in 0..o.rounds {
        if procs::interrupted() {
            return;
        }
        eprintln!("== round {}/{}", round + 1, o.rounds);
        let mut up = start_all(o, ps, limit, failures);
        let mut up_sweep = start_all(o, sweep, limit, failures);
        // Settle after the start-ups (Node's in particular).
        procs::sleep(Duration::from_millis(500));
        let mut plan: Vec<(&Scenario, usize, bool)> = Vec::new();
        for sc in &scs {
            for i in 0..up.len() {
                plan.push((sc, (i + round) % up.len(), false));
            }
        }
        for i in 0..up_sweep.len() {
            plan.push((&sweep_scenario, i, true));
        }
        for (sc, i, is_sweep) in plan {
            if procs::interrupted() {
                return;
            }
            let (p, server) = if is_sweep { &mut up_sweep[i] } else { &mut up[i] };
            if !server.alive() {
                eprintln!("   {} has died ({}); restarting", p.id, server.log_tail());
                failures.push(json!({ "server": p.id, "round": round + 1, "error": format!("died: {}", server.log_tail()) }));
                match start(o, p, limit) {
                    Ok(s) => *server = s,
                    Err(e) => {
                        runs.push(json!({ "round": round + 1, "scenario": sc.id, "server": p.id, "error": e }));
                        continue;
                    }
                }
            }
            let rec = measure(o, round, sc, p, server);
            print_run(&rec);
            runs.push(rec);
        }
        for (_, mut s) in up.into_iter().chain(up_sweep) {
            s.stop();
        }
    }
}

fn idle_rss(o: &Opts, ps: &[Peer], runs: &mut Vec<Value>) {
    for round in 0..o.rounds {
        eprintln!("== idle connections: {} per server, round {}/{}", o.idle, round + 1, o.rounds);
        for i in 0..ps.len() {
            if procs::interrupted() {
                return;
            }
            let p = &ps[(i + round) % ps.len()];
            let mut rec = json!({ "round": round + 1, "scenario": "idle", "server": p.id, "connections": o.idle });
            let limit = Duration::from_secs(120 + o.idle as u64 / 100);
            match start(o, p, limit) {
                Err(e) => rec["error"] = json!(e),
                Ok(mut server) => {
                    procs::sleep(Duration::from_millis(300));
                    let before = procs::rss_bytes(server.pid);
                    let t = Instant::now();
                    // Half, then the rest: the second half's growth is the marginal cost of a
                    // connection, free of one-time growth (pools, tables) in the first.
                    let half = o.idle / 2;
                    let opened = idle::open(server.addr, half, p.ws).and_then(|mut a| {
                        procs::sleep(Duration::from_millis(500));
                        let mid = procs::rss_bytes(server.pid);
                        let b = idle::open(server.addr, o.idle - half, p.ws)?;
                        a.streams.extend(b.streams);
                        Ok((a, mid))
                    });
                    match opened {
                        Err(e) => rec["error"] = json!(e),
                        Ok((conns, mid)) => {
                            let open_s = t.elapsed().as_secs_f64();
                            procs::sleep(Duration::from_millis(1000));
                            let after = procs::rss_bytes(server.pid);
                            let still = conns.still_open();
                            rec["open_s"] = json!(open_s);
                            rec["rss_before"] = json!(before);
                            rec["rss_half"] = json!(mid);
                            rec["rss_after"] = json!(after);
                            rec["still_open"] = json!(still);
                            if let (Some(b), Some(a)) = (before, after) {
                                rec["bytes_per_conn"] =
                                    json!((a as f64 - b as f64) / o.idle as f64);
                            }
                            if let (Some(m), Some(a)) = (mid, after) {
                                rec["marginal_bytes_per_conn"] =
                                    json!((a as f64 - m as f64) / (o.idle - half).max(1) as f64);
                            }
                            drop(conns);
                        }
                    }
                    server.stop();
                }
            }
            match rec["bytes_per_conn"].as_f64() {
                Some(b) => eprintln!(
                    "   {:<12} RSS {} -> {}: {:.0} B per connection, the second half {:.0} B ({} still open)",
                    p.id,
                    report::mib(rec["rss_before"].as_f64().unwrap_or(0.0)),
                    report::mib(rec["rss_after"].as_f64().unwrap_or(0.0)),
                    b,
                    rec["marginal_bytes_per_conn"].as_f64().unwrap_or(f64::NAN),
                    rec["still_open"]
                ),
                None => eprintln!("   {:<12} ERROR {}", p.id, rec["error"]),
            }
            runs.push(rec);
        }
    }
}

/// `--render FILE`: the summary and the markdown again from a saved results.json (written
/// back beside it), with no measurement.
fn render(path: &Path) -> i32 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return 1;
        }
    };
    let mut results: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return 1;
        }
    };
    results["summary"] = report::summarize(&results);
    let md = report::markdown(&results);
    let dir = path.parent().unwrap_or(Path::new("."));
    let json = serde_json::to_string_pretty(&results).expect("json") + "\n";
    if let Err(e) =
        std::fs::write(path, json).and_then(|_| std::fs::write(dir.join("results.md"), &md))
    {
        eprintln!("{}: {e}", dir.display());
        return 1;
    }
    println!("{md}");
    0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--render") {
        let Some(file) = args.get(i + 1) else {
            eprintln!("--render needs a results.json");
            std::process::exit(2)
        };
        std::process::exit(render(Path::new(file)));
    }
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2)
        }
    };
    procs::install_signal_handlers();
    let code = run(&o);
    procs::kill_all();
    std::process::exit(code);
}

fn run(o: &Opts) -> i32 {
    for d in ["raw", "logs"] {
        if let Err(e) = std::fs::create_dir_all(o.out.join(d)) {
            eprintln!("{}: {e}", o.out.display());
            return 1;
        }
    }
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mach = machine(o);
    let ps = peers(o);
    let sweep: Vec<Peer> =
        if want(o, "sweep") && o.servers.as_ref().is_none_or(|s| s.iter().any(|x| x == "surge")) {
            o.sweep
                .iter()
                .filter(|&&t| t != o.server_threads || !ps.iter().any(|p| p.id == "surge"))
                .map(|&t| sweep_peer(o, t))
                .collect()
        } else {
            vec![]
        };
    let idle_ps: Vec<Peer> = if want(o, "idle") { ps.clone() } else { vec![] };
    let n_scen = scenarios(o).len();
    let est = o.rounds as f64
        * (round_seconds(o, ps.len(), n_scen)
            + round_seconds(o, sweep.len(), 1)
            + idle_ps.len() as f64 * (3.0 + o.idle as f64 / 4000.0));
    eprintln!(
        "surge-compare: {} servers × {} scenarios + {} sweep points, {} round(s), {} s + {} s warm-up each; \
         server cores {} ({} threads), load generator cores {} ({} threads)",
        ps.len(), n_scen, sweep.len(), o.rounds, o.duration, o.warmup,
        cores_str(&o.server_cores), o.server_threads, cores_str(&o.client_cores), o.client_threads
    );
    eprintln!(
        "estimated time: {:.0} min {:.0} s (plus the allocation count)",
        (est / 60.0).floor(),
        est % 60.0
    );

    let alloc = if o.alloc { alloc(o) } else { Value::Null };
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    if n_scen > 0 || !sweep.is_empty() {
        throughput(o, &ps, &sweep, &mut runs, &mut failures);
    }
    if !idle_ps.is_empty() {
        idle_rss(o, &idle_ps, &mut runs);
    }
    let mut mach = mach;
    mach["loadavg_end"] =
        json!(std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    let elapsed = started.elapsed().as_secs_f64();
    let config = json!({
        "rounds": o.rounds, "duration_s": o.duration, "warmup_s": o.warmup,
        "server_cores": cores_str(&o.server_cores), "client_cores": cores_str(&o.client_cores),
        "server_threads": o.server_threads, "client_threads": o.client_threads,
        "rate": o.rate, "idle_connections": o.idle, "sweep": o.sweep, "quick": o.quick, "nice": o.nice,
    });
    let all_peers: Vec<Peer> = ps.iter().chain(&sweep).cloned().collect();
    let results = json!({
        "tool": "surge-compare",
        "command": o.command,
        "started_unix_s": started_unix,
        "elapsed_s": elapsed,
        "interrupted": procs::interrupted(),
        "machine": mach,
        "config": config,
        "servers": all_peers.iter().map(|p| json!({"id": p.id, "label": p.label, "threads": p.threads, "cores": cores_str(&p.cores)})).collect::<Vec<_>>(),
        "scenarios": scenarios(o).iter().map(|s| json!({"id": s.id, "label": s.label, "connections": s.connections, "size": s.size, "in_flight": s.in_flight, "rate": s.rate})).collect::<Vec<_>>(),
        "alloc": alloc,
        "failures": failures,
        "runs": runs,
    });
    let mut results = results;
    results["summary"] = report::summarize(&results);
    let md = report::markdown(&results);
    let write = |name: &str, text: String| {
        let path = o.out.join(name);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("{}: {e}", path.display());
        }
    };
    write("results.json", serde_json::to_string_pretty(&results).expect("json") + "\n");
    write("results.md", md.clone());
    println!("{md}");
    eprintln!(
        "wrote {} and results.md; {:.0} min {:.0} s",
        Path::new(&o.out).join("results.json").display(),
        (elapsed / 60.0).floor(),
        elapsed % 60.0
    );
    if procs::interrupted() {
        130
    } else {
        0
    }
}
