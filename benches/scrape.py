#!/usr/bin/env python3
"""What scraping /metrics costs the echo it counts, within one run.

    python3 benches/scrape.py [--seconds 120] [--block 5] [--conns 100] [--size 20]
                              [--server-core 0] [--client-core 1] [--backend epoll]

benches/compare.sh's surge-scraped variant compares two server processes, and between
processes on this kind of machine msgs/s moves 10-20% for no reason of theirs (placement,
frequency, neighbours), which buries a cost of 1-2%. Here one `surge echo` serves one
`surge-loadgen` run throughout, and /metrics is asked for once a second in every other
block of BLOCK seconds (blocks aligned on the wall clock). Each scraped block is paired with
the mean of the unscraped blocks on either side; the figures are the medians over those
pairs of the scraped block's msgs/s (from the load generator's per-second samples that lie
wholly inside the block) and of its server CPU per message (utime+stime from /proc, read at
each block boundary) over its neighbours'. Needs target/release/surge and surge-loadgen.
Python 3 standard library only.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_listening(port, within=10.0):
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"scrape: the server did not listen on {port}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--size", type=int, default=20)
    ap.add_argument("--server-core", default="0")
    ap.add_argument("--client-core", default="1")
    ap.add_argument("--backend", default="epoll")
    a = ap.parse_args()
    port = free_port()
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    server = subprocess.Popen(
        ["taskset", "-c", a.server_core, f"{ROOT}/target/release/surge", "echo", "--listen",
         f"127.0.0.1:{port}", "--threads", "1", "--backend", a.backend, "--log", "warn"])
    try:
        wait_listening(port)
        client = subprocess.Popen(
            ["taskset", "-c", a.client_core, f"{ROOT}/target/release/surge-loadgen",
             f"ws://127.0.0.1:{port}/", "-c", str(a.conns), "-s", str(a.size), "-t", "1",
             "-d", f"{a.seconds}s", "--warmup", "2s", "--json", out],
            stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/metrics"
        boundaries, scrapes, body = [], 0, 0
        block = a.block
        next_boundary = (int(time.time()) // block + 1) * block
        while client.poll() is None:
            now = time.time()
            if now >= next_boundary:
                boundaries.append((next_boundary, cpu_seconds(server.pid)))
                next_boundary += block
            second = int(now)
            if (second // block) % 2 == 1 and now - second >= 0.5:
                with urllib.request.urlopen(url, timeout=2) as r:
                    body = len(r.read())
                scrapes += 1
                time.sleep(second + 1 - time.time() + 0.001)
            else:
                time.sleep(min(0.05, max(0.0, next_boundary - time.time())))
        if client.returncode != 0:
            sys.exit(f"scrape: surge-loadgen exited {client.returncode}")
    finally:
        server.terminate()
        server.wait()
    report = json.load(open(out))
    os.unlink(out)
    start = report["measure_start_unix_s"]
    samples = [(start + s["t_s"], s["length_s"], s["messages"]) for s in report["per_second"]]
    blocks = []  # (scraped, msgs/s, CPU us per message)
    for (t0, c0), (t1, c1) in zip(boundaries, boundaries[1:]):
        inside = [(n, length) for (t, length, n) in samples if t >= t0 and t + length <= t1]
        if len(inside) < block - 1:
            continue
        rate = sum(n for n, _ in inside) / sum(length for _, length in inside)
        blocks.append(((int(t0) // block) % 2 == 1, rate, (c1 - c0) * 1e6 / (rate * (t1 - t0))))
    tput, cpu = [], []
    for i in range(1, len(blocks) - 1):
        scraped, rate, us = blocks[i]
        before, after = blocks[i - 1], blocks[i + 1]
        if scraped and not before[0] and not after[0]:
            tput.append(rate / ((before[1] + after[1]) / 2))
            cpu.append(us / ((before[2] + after[2]) / 2))
    if not tput:
        sys.exit("scrape: no scraped block with unscraped neighbours; run longer")
    fmt = lambda v: f"{statistics.median(v):.3f} [{min(v):.2f}-{max(v):.2f}]"
    print(f"scrape: {a.conns} x {a.size} B, {a.backend}, {report['msgs_per_sec']:.0f} msg/s over "
          f"{report['measured_s']:.0f} s; {scrapes} scrapes of {body} B in {len(tput)} scraped "
          f"blocks of {block} s")
    print(f"scrape: scraped block over its unscraped neighbours: msgs/s {fmt(tput)}, "
          f"server CPU per message {fmt(cpu)}")


if __name__ == "__main__":
    main()
