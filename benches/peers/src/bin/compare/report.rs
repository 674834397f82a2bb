//! Medians, ranges, ratios to Surge, the targets, and the markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

/// 95123 -> "95.1k", 1234567 -> "1.23M".
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.2}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Microseconds, 3 significant figures or so.
pub fn us(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Bytes as MiB.
pub fn mib(v: f64) -> String {
    format!("{:.1} MiB", v / (1024.0 * 1024.0))
}

fn stats(mut v: Vec<f64>) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    json!({ "median": median, "min": v[0], "max": v[n - 1], "n": n })
}

const FIELDS: &[&str] = &[
    "msgs_per_sec",
    "server_cpu",
    "server_cpu_us_per_msg",
    "client_cpu",
    "other_on_server_cores",
    "other_on_client_cores",
    "p50_us",
    "p99_us",
    "p99_9_us",
    "bytes_per_conn",
    "marginal_bytes_per_conn",
    "rss_half",
    "rss_before",
    "rss_after",
    "errors",
];

/// summary[scenario][server][field] = {median, min, max, n}; plus ratios to Surge and targets.
pub fn summarize(results: &Value) -> Value {
    let mut groups: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for r in results["runs"].as_array().into_iter().flatten() {
        if r.get("error").is_some() {
            continue;
        }
        let key = (
            r["scenario"].as_str().unwrap_or("").to_owned(),
            r["server"].as_str().unwrap_or("").to_owned(),
        );
        groups.entry(key).or_default().push(r);
    }
    let mut out = json!({});
    for ((sc, server), rs) in &groups {
        let mut entry = json!({});
        for f in FIELDS {
            let vals: Vec<f64> = rs.iter().filter_map(|r| r[*f].as_f64()).collect();
            let s = stats(vals);
            if !s.is_null() {
                entry[*f] = s;
            }
        }
        if out.get(sc).is_none() {
            out[sc] = json!({});
        }
        out[sc][server] = entry;
    }
    // Ratios to Surge: throughput (peer / Surge) and idle bytes, paired by round.
    let scenarios: Vec<String> =
        out.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    for sc in scenarios {
        let field = if sc == "idle" { "bytes_per_conn" } else { "msgs_per_sec" };
        let Some(surge) = out[&sc]["surge"][field]["median"].as_f64() else { continue };
        let servers: Vec<String> =
            out[&sc].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        for s in servers {
            let unpaired = out[&sc][&s][field]["median"].as_f64().map(|v| v / surge);
            if let Some(r) = paired(results, &sc, &s, "surge", field).or(unpaired) {
                if surge != 0.0 {
                    out[&sc][&s]["ratio_to_surge"] = json!(r);
                }
            }
        }
    }
    let targets = targets(&out, results);
    json!({ "by_scenario": out, "targets": targets })
}

/// The median over rounds of `a`'s `field` over `b`'s in the same round: paired, so that
/// drift in the machine between rounds cancels out. None without a round holding both.
fn paired(results: &Value, sc: &str, a: &str, b: &str, field: &str) -> Option<f64> {
    let runs: Vec<&Value> = results["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["scenario"] == sc && r.get("error").is_none())
        .collect();
    let value = |server: &str, round: &Value| {
        runs.iter()
            .find(|r| r["server"] == server && &r["round"] == round)
            .and_then(|r| r[field].as_f64())
    };
    let ratios: Vec<f64> = runs
        .iter()
        .filter(|r| r["server"] == a)
        .filter_map(|r| match (value(a, &r["round"]), value(b, &r["round"])) {
            (Some(x), Some(y)) if y != 0.0 => Some(x / y),
            _ => None,
        })
        .collect();
    stats(ratios)["median"].as_f64()
}

fn median(s: &Value, sc: &str, server: &str, field: &str) -> Option<f64> {
    s[sc][server][field]["median"].as_f64()
}

fn targets(s: &Value, results: &Value) -> Value {
    let mut t = Vec::new();
    let tput = |sc: &str, server: &str| median(s, sc, server, "msgs_per_sec");
    let label = |sc: &str| {
        match sc {
            "20b" => "20 B",
            "1k" => "1 KiB",
            "16k" => "16 KiB",
            "pipelined" => "20 B, 16 in flight",
            _ => sc,
        }
        .to_owned()
    };
    // Beside each throughput ratio, the same comparison in server CPU per message: what the
    // server spends, which a machine busy with other work disturbs far less than throughput.
    let per_msg = |sc: &str, other: &str, name: &str| match paired(
        results,
        sc,
        "surge",
        other,
        "server_cpu_us_per_msg",
    ) {
        Some(r) => format!("; CPU per message {r:.2}× {name}'s"),
        None => String::new(),
    };
    // Surge's throughput over another server's, paired by round.
    let ratio = |sc: &str, other: &str, su: f64, o: f64| {
        paired(results, sc, "surge", other, "msgs_per_sec").unwrap_or(su / o)
    };
    let better = |sc: &str, a: &'static str, b: &'static str| match (tput(sc, a), tput(sc, b)) {
        (Some(x), Some(y)) => Some(if x >= y { (x, a) } else { (y, b) }),
        (Some(x), None) => Some((x, a)),
        (None, Some(y)) => Some((y, b)),
        _ => None,
    };
    for sc in ["20b", "1k"] {
        if let (Some(su), Some(fl)) = (tput(sc, "surge"), tput(sc, "floor")) {
            let r = ratio(sc, "floor", su, fl);
            t.push(json!({ "target": format!("Surge within 5% of the TCP floor at {}", label(sc)),
                "figure": format!("{:.1}% of the floor{}", r * 100.0, per_msg(sc, "floor", "the floor")),
                "ratio": r, "met": r >= 0.95 }));
        }
    }
    for sc in ["16k", "pipelined"] {
        if let (Some(su), Some((f, id))) =
            (tput(sc, "surge"), better(sc, "fws-current", "fws-multi"))
        {
            let r = ratio(sc, id, su, f);
            t.push(json!({ "target": format!("≥ 1.2× fastwebsockets (its better runtime) at {}", label(sc)),
                "figure": format!("{r:.2}× {id}{}", per_msg(sc, id, id)), "ratio": r, "met": r >= 1.2 }));
        }
    }
    for sc in ["20b", "1k", "16k", "pipelined"] {
        if let (Some(su), Some((f, id))) = (tput(sc, "surge"), better(sc, "tt-current", "tt-multi"))
        {
            let r = ratio(sc, id, su, f);
            t.push(json!({ "target": format!("≥ 2× tokio-tungstenite (its better runtime) at {}", label(sc)),
                "figure": format!("{r:.2}× {id}{}", per_msg(sc, id, id)), "ratio": r, "met": r >= 2.0 }));
        }
    }
    if let Some(b) = median(s, "idle", "surge", "bytes_per_conn") {
        let marginal = median(s, "idle", "surge", "marginal_bytes_per_conn")
            .map(|m| format!(" ({m:.0} B for the second half)"))
            .unwrap_or_default();
        t.push(json!({ "target": "RSS per idle connection ≤ 256 B",
            "figure": format!("{b:.0} B{marginal}"), "met": b <= 256.0 }));
    }
    if let Some(a) = results["alloc"]["per_million"].as_f64() {
        t.push(json!({ "target": "no allocation per message after warm-up", "figure": format!("{a} per million messages"), "met": a == 0.0 }));
    }
    Value::Array(t)
}

fn label_of(results: &Value, id: &str) -> (String, String) {
    for p in results["servers"].as_array().into_iter().flatten() {
        if p["id"] == id {
            return (p["label"].as_str().unwrap_or(id).to_owned(), p["threads"].to_string());
        }
    }
    (id.to_owned(), String::new())
}

/// The report.
pub fn markdown(results: &Value) -> String {
    let mut m = String::new();
    let s = &results["summary"]["by_scenario"];
    let mach = &results["machine"];
    let cfg = &results["config"];
    let rounds = cfg["rounds"].as_u64().unwrap_or(0);
    let date = results["started_unix_s"].as_u64().map(date).unwrap_or_default();
    let commit: String = mach["commit"].as_str().unwrap_or("").chars().take(12).collect();
    let _ = writeln!(m, "### Surge against peer servers ({date})\n");
    if results["interrupted"].as_bool() == Some(true) {
        let _ = writeln!(m, "**Interrupted: the figures below are partial.**\n");
    }
    let _ = writeln!(
        m,
        "Machine: {} ({} cores, {}), {}; commit {}{}; {}, Node {}. Load average {} at the start, {} at the end.\n",
        mach["cpu_model"].as_str().unwrap_or(""),
        mach["cores"],
        mach["memory"].as_str().unwrap_or(""),
        mach["kernel"].as_str().unwrap_or(""),
        commit,
        if mach["dirty"].as_bool() == Some(true) { " (with uncommitted changes)" } else { "" },
        mach["rustc"].as_str().unwrap_or(""),
        mach["node"].as_str().unwrap_or(""),
        first3(mach["loadavg_start"].as_str().unwrap_or("")),
        first3(mach["loadavg_end"].as_str().unwrap_or("")),
    );
    let _ = writeln!(
        m,
        "Method: each server on core(s) {} with {} thread(s) (Node: 1), the load generator on core(s) {} \
         with {} thread(s), loopback; {} round(s), the servers interleaved in each; {} s measured after {} s \
         of warm-up per run. Figures are medians over the rounds, [min–max] beside them; ×Surge is the \
         median over the rounds of the server's figure over Surge's in the same round (paired, so \
         that drift between rounds cancels), and so are the ratios under Targets. Server CPU is utime+stime from /proc over the measured window.\n",
        cfg["server_cores"].as_str().unwrap_or(""),
        cfg["server_threads"],
        cfg["client_cores"].as_str().unwrap_or(""),
        cfg["client_threads"],
        rounds,
        cfg["duration_s"],
        cfg["warmup_s"],
    );
    let _ = writeln!(
        m,
        "Command: `{}` ({:.0} min in all)\n",
        results["command"].as_str().unwrap_or(""),
        results["elapsed_s"].as_f64().unwrap_or(0.0) / 60.0
    );

    let scen: Vec<(String, String)> = results["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|sc| sc["rate"].is_null())
        .map(|sc| {
            (
                sc["id"].as_str().unwrap_or("").to_owned(),
                sc["label"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let servers: Vec<String> = results["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_str())
        .filter(|id| !id.starts_with("surge-t"))
        .map(String::from)
        .collect();
    // Surge first, then the floor, then the peers.
    let mut order: Vec<String> = servers.iter().filter(|s| *s == "surge").cloned().collect();
    order.extend(servers.iter().filter(|s| *s != "surge").cloned());

    if !scen.is_empty() {
        let _ = writeln!(m, "#### Throughput, messages per second (closed loop)\n");
        let _ = write!(m, "| server | threads |");
        for (_, l) in &scen {
            let _ = write!(m, " {l} |");
        }
        let _ = write!(m, "\n|---|--:|");
        for _ in &scen {
            let _ = write!(m, "--:|");
        }
        m.push('\n');
        for id in &order {
            let (label, threads) = label_of(results, id);
            let _ = write!(m, "| {label} | {threads} |");
            for (sc, _) in &scen {
                let e = &s[sc][id];
                match e["msgs_per_sec"]["median"].as_f64() {
                    Some(v) => {
                        let range = format!(
                            "[{}–{}]",
                            si(e["msgs_per_sec"]["min"].as_f64().unwrap_or(0.0)),
                            si(e["msgs_per_sec"]["max"].as_f64().unwrap_or(0.0))
                        );
                        let ratio = if id == "surge" {
                            String::new()
                        } else {
                            e["ratio_to_surge"]
                                .as_f64()
                                .map(|r| format!(" {r:.2}×Surge"))
                                .unwrap_or_default()
                        };
                        let errs = e["errors"]["max"]
                            .as_f64()
                            .filter(|&x| x > 0.0)
                            .map(|_| " (errors)")
                            .unwrap_or("");
                        if id == "surge" {
                            let _ = write!(m, " **{}** {range}{errs} |", si(v));
                        } else {
                            let _ = write!(m, " {} {range}{ratio}{errs} |", si(v));
                        }
                    }
                    None => m.push_str(" failed |"),
                }
            }
            m.push('\n');
        }
        let _ = writeln!(m, "\n#### CPU: server cores busy · server CPU per message (medians)\n");
        let _ = write!(m, "| server |");
        for (_, l) in &scen {
            let _ = write!(m, " {l} |");
        }
        let _ = write!(m, "\n|---|");
        for _ in &scen {
            let _ = write!(m, "--:|");
        }
        m.push('\n');
        let mut client = Vec::new();
        for id in &order {
            let (label, _) = label_of(results, id);
            let _ = write!(m, "| {label} |");
            for (sc, _) in &scen {
                let e = &s[sc][id];
                match (
                    e["server_cpu"]["median"].as_f64(),
                    e["server_cpu_us_per_msg"]["median"].as_f64(),
                ) {
                    (Some(c), Some(u)) => {
                        let _ = write!(m, " {:.0}% · {} µs |", c * 100.0, us(u));
                    }
                    _ => m.push_str(" – |"),
                }
                if let Some(c) = e["client_cpu"]["median"].as_f64() {
                    client.push(c);
                }
            }
            m.push('\n');
        }
        if !client.is_empty() {
            client.sort_by(f64::total_cmp);
            let _ = writeln!(
                m,
                "\nThe load generator's own CPU (its threads, per run, medians): {:.0}%–{:.0}% of its core(s).",
                client[0] * 100.0,
                client[client.len() - 1] * 100.0
            );
        }
        // What other work took from the cores during the runs: busy time in /proc/stat less
        // the server's (or the load generator's) own.
        let other = |field: &str| {
            let mut v: Vec<f64> = results["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r[field].as_f64())
                .collect();
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| (v[v.len() / 2], v[v.len() - 1]))
        };
        if let (Some((sm, sx)), Some((cm, cx))) =
            (other("other_on_server_cores"), other("other_on_client_cores"))
        {
            let _ = writeln!(
                m,
                "Other work on the cores during the runs (their busy time in /proc/stat less our \
                 processes'): server core(s) median {:.0}%, worst {:.0}%; load generator core(s) \
                 median {:.0}%, worst {:.0}%.",
                sm * 100.0,
                sx * 100.0,
                cm * 100.0,
                cx * 100.0
            );
        }
        m.push('\n');
    }

    for open in
        results["scenarios"].as_array().into_iter().flatten().filter(|sc| !sc["rate"].is_null())
    {
        let _ = writeln!(
            m,
            "#### {}: latency from the scheduled send (µs, coordinated omission corrected)\n",
            cap(open["label"].as_str().unwrap_or(""))
        );
        let _ = writeln!(
            m,
            "| server | p50 | p99 | p99.9 | achieved msg/s | server CPU | server CPU per message |\n|---|--:|--:|--:|--:|--:|--:|"
        );
        let scenario = open["id"].as_str().unwrap_or("");
        for id in &order {
            let e = &s[scenario][id];
            let (label, _) = label_of(results, id);
            let rng = |f: &str| match e[f]["median"].as_f64() {
                Some(v) => format!(
                    "{} [{}–{}]",
                    us(v),
                    us(e[f]["min"].as_f64().unwrap_or(0.0)),
                    us(e[f]["max"].as_f64().unwrap_or(0.0))
                ),
                None => "–".into(),
            };
            let _ = writeln!(
                m,
                "| {label} | {} | {} | {} | {} | {} | {} |",
                rng("p50_us"),
                rng("p99_us"),
                rng("p99_9_us"),
                e["msgs_per_sec"]["median"].as_f64().map(si).unwrap_or("–".into()),
                e["server_cpu"]["median"]
                    .as_f64()
                    .map(|c| format!("{:.0}%", c * 100.0))
                    .unwrap_or("–".into()),
                e["server_cpu_us_per_msg"]["median"]
                    .as_f64()
                    .map(|c| format!("{c:.2} µs"))
                    .unwrap_or("–".into()),
            );
        }
        m.push('\n');
    }

    if s.get("idle").is_some() {
        let _ = writeln!(
            m,
            "#### {} idle connections (opening handshake done, then silence): server RSS\n",
            cfg["idle_connections"]
        );
        let _ = writeln!(
            m,
            "| server | RSS before | RSS after | bytes per connection | the second half's, per connection |\n|---|--:|--:|--:|--:|"
        );
        for id in &order {
            let e = &s["idle"][id];
            let (label, _) = label_of(results, id);
            if let Some(b) = e["bytes_per_conn"]["median"].as_f64() {
                let marginal = match e["marginal_bytes_per_conn"]["median"].as_f64() {
                    Some(v) => format!(
                        "{v:.0} [{:.0}–{:.0}]",
                        e["marginal_bytes_per_conn"]["min"].as_f64().unwrap_or(0.0),
                        e["marginal_bytes_per_conn"]["max"].as_f64().unwrap_or(0.0)
                    ),
                    None => "–".into(),
                };
                let _ = writeln!(
                    m,
                    "| {label} | {} | {} | {b:.0} [{:.0}–{:.0}] | {marginal} |",
                    mib(e["rss_before"]["median"].as_f64().unwrap_or(0.0)),
                    mib(e["rss_after"]["median"].as_f64().unwrap_or(0.0)),
                    e["bytes_per_conn"]["min"].as_f64().unwrap_or(0.0),
                    e["bytes_per_conn"]["max"].as_f64().unwrap_or(0.0),
                );
            }
        }
        m.push('\n');
    }

    let mut sweep: Vec<(u64, String, &Value)> = Vec::new();
    for p in results["servers"].as_array().into_iter().flatten() {
        let id = p["id"].as_str().unwrap_or("");
        if id == "surge" || id.starts_with("surge-t") {
            if let Some(e) = s["20b"].get(id) {
                sweep.push((
                    p["threads"].as_u64().unwrap_or(0),
                    p["cores"].as_str().unwrap_or("").to_owned(),
                    e,
                ));
            }
        }
    }
    if sweep.len() > 1 {
        sweep.sort_by_key(|x| x.0);
        let _ = writeln!(
            m,
            "#### Surge's thread sweep, 100 conns × 20 B (load generator on core(s) {})\n",
            cfg["client_cores"].as_str().unwrap_or("")
        );
        let _ = writeln!(m, "| threads | cores | msgs/s | server CPU |\n|--:|---|--:|--:|");
        for (t, cores, e) in sweep {
            let _ = writeln!(
                m,
                "| {t} | {cores} | {} [{}–{}] | {} |",
                si(e["msgs_per_sec"]["median"].as_f64().unwrap_or(0.0)),
                si(e["msgs_per_sec"]["min"].as_f64().unwrap_or(0.0)),
                si(e["msgs_per_sec"]["max"].as_f64().unwrap_or(0.0)),
                e["server_cpu"]["median"]
                    .as_f64()
                    .map(|c| format!("{:.0}%", c * 100.0))
                    .unwrap_or("–".into()),
            );
        }
        m.push('\n');
    }

    if let Some(line) = results["alloc"]["line"].as_str() {
        let _ = writeln!(m, "#### Allocations\n\n`cargo bench -p surge-benches --bench alloc -- --strict`: {line}\n");
    } else if let Some(e) = results["alloc"]["error"].as_str() {
        let _ = writeln!(m, "#### Allocations\n\nthe allocation count failed: {e}\n");
    }

    let targets = results["summary"]["targets"].as_array().cloned().unwrap_or_default();
    if !targets.is_empty() {
        let _ = writeln!(m, "#### Targets\n\n| target | figure | met |\n|---|--:|:-:|");
        for t in targets {
            let _ = writeln!(
                m,
                "| {} | {} | {} |",
                t["target"].as_str().unwrap_or(""),
                t["figure"].as_str().unwrap_or(""),
                if t["met"].as_bool() == Some(true) { "yes" } else { "**no**" }
            );
        }
        m.push('\n');
    }
    let failures = results["failures"].as_array().cloned().unwrap_or_default();
    let errors: Vec<&Value> = results["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r.get("error").is_some())
        .collect();
    if !failures.is_empty() || !errors.is_empty() {
        let _ = writeln!(m, "#### Failures\n");
        for f in failures.iter().chain(errors) {
            let _ = writeln!(
                m,
                "- {} {} round {}: {}",
                f["server"].as_str().unwrap_or(""),
                f["scenario"].as_str().unwrap_or(""),
                f["round"],
                f["error"].as_str().unwrap_or("")
            );
        }
        m.push('\n');
    }
    m
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn first3(loadavg: &str) -> String {
    loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Seconds since the epoch as YYYY-MM-DD HH:MM UTC.
fn date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (h, mi) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC")
}
