#!/usr/bin/env python3
"""Splits a `perf record -e cpu-clock` profile of `surge echo` into where the CPU went:
the kernel's TCP/IP and the rest of the kernel, syscall entry and exit (with the fd
lookups every call makes), the readiness or completion machinery (epoll, io_uring), the
engine's own code, and libc.

    perf record -e cpu-clock -g -o prof.data -- surge echo ...
    python3 benches/profile-split.py prof.data [more.data ...]
"""
import re
import subprocess
import sys

ENTRY = re.compile(r"^(entry_SYSCALL|do_syscall_64|syscall_exit|syscall_return|exit_to_user_mode"
                   r"|__x64_sys_|x64_sys_call|fdget|__fdget|fget|__fget|fput|sockfd_lookup"
                   r"|__sys_|ksys_|__do_sys_)")
MACHINERY = re.compile(r"^(ep_|do_epoll|__ep_|epoll_|io_|__io_|tctx_task_work|io_uring"
                       r"|__io_uring|task_work_run|__arm_poll|io_ring|io_cq|io_sq)")


def split(path):
    out = subprocess.run(
        ["perf", "report", "-i", path, "--no-children", "-g", "none", "--sort", "dso,sym",
         "-q", "--percent-limit", "0"],
        capture_output=True, text=True, check=True).stdout
    parts = {"kernel TCP/IP and rest": 0.0, "syscall entry/exit + fd lookup": 0.0,
             "epoll / io_uring machinery": 0.0, "surge (our code)": 0.0, "libc": 0.0,
             "other": 0.0}
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
        if not m:
            continue
        pct, dso, kind, sym = float(m[1]), m[2], m[3], m[4]
        if kind == "k":
            if ENTRY.match(sym):
                parts["syscall entry/exit + fd lookup"] += pct
            elif MACHINERY.match(sym):
                parts["epoll / io_uring machinery"] += pct
            else:
                parts["kernel TCP/IP and rest"] += pct
        elif dso == "surge":
            parts["surge (our code)"] += pct
        elif dso.startswith("libc"):
            parts["libc"] += pct
        else:
            parts["other"] += pct
    return parts


paths = sys.argv[1:]
splits = [split(p) for p in paths]
print("| share of server CPU | " + " | ".join(paths) + " |")
print("|---|" + "--:|" * len(paths))
for key in splits[0]:
    print(f"| {key} | " + " | ".join(f"{s[key]:.1f}%" for s in splits) + " |")
