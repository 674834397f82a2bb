#!/usr/bin/env python3
"""Paired ratios from a benches/compare.sh sitting: for each scenario, each server's
msgs/s and server CPU per message over a reference server's in the same round, then the
median over the rounds (and the range).

    python3 benches/paired.py bench-results/DATE/results.json [--over surge]
"""
import json
import statistics
import sys

path = sys.argv[1]
over = sys.argv[sys.argv.index("--over") + 1] if "--over" in sys.argv else "surge"
runs = json.load(open(path))["runs"]
by = {(r["scenario"], r["server"], r["round"]): r for r in runs}
scenarios = list(dict.fromkeys(r["scenario"] for r in runs))
servers = [s for s in dict.fromkeys(r["server"] for r in runs) if s != over]
print(f"| scenario | server | msgs/s ×{over} | server CPU/msg ×{over} | rounds |")
print("|---|---|--:|--:|--:|")
for sc in scenarios:
    for s in servers:
        tput, cpu = [], []
        for (sc2, s2, rnd), r in by.items():
            base = by.get((sc, over, rnd))
            if sc2 != sc or s2 != s or not base or not r["msgs_per_sec"]:
                continue
            tput.append(r["msgs_per_sec"] / base["msgs_per_sec"])
            cpu.append(r["server_cpu_us_per_msg"] / base["server_cpu_us_per_msg"])
        if tput:
            fmt = lambda v: f"{statistics.median(v):.3f} [{min(v):.2f}–{max(v):.2f}]"
            print(f"| {sc} | {s} | {fmt(tput)} | {fmt(cpu)} | {len(tput)} |")
