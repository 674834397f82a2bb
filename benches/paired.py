#!/usr/bin/env python3
"""Paired ratios from a benches/compare.sh sitting: for each scenario, each server's
msgs/s and server CPU per message over a reference server's in the same round, then the
median over the rounds (and the range).

    python3 benches/paired.py bench-results/DATE/results.json [--over surge] [--max-steal 0.05]

--max-steal F leaves out a pair whose either run lost more than F of its server core to the
hypervisor (`server_cores_steal`): on a shared VM a stolen run reads slow and costly per
message for reasons outside both servers.
"""
import json
import statistics
import sys

path = sys.argv[1]
over = sys.argv[sys.argv.index("--over") + 1] if "--over" in sys.argv else "surge"
max_steal = float(sys.argv[sys.argv.index("--max-steal") + 1]) if "--max-steal" in sys.argv else None
runs = json.load(open(path))["runs"]
if max_steal is not None:
    runs = [r for r in runs if r.get("server_cores_steal", 0) <= max_steal]
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
