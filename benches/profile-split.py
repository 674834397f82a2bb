#!/usr/bin/env python3
"""Splits a `perf record -e cpu-clock` profile of `surge echo` (or of `surge-loadgen`, the
client end) into where the CPU went:
the kernel's TCP/IP and the rest of the kernel, syscall entry and exit (with the fd
lookups every call makes), the readiness or completion machinery (epoll, io_uring), TLS
(rustls and its crypto provider, ring or aws-lc, linked into the binary: told apart by
symbol), the engine's (or load generator's) own code, and libc (malloc and free included, whoever calls them).

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

# Symbols of rustls and the crypto providers inside the (LTO-merged) binary: Rust paths, the
# prefixed C and assembly symbols of ring (`ring_core_0_17_N_...`) and aws-lc
# (`aws_lc_0_N_...`), generic drops and impls of their types, and the unprefixed static
# functions of their field, curve, hash and cipher code (`fe4_sub`, `__ecp_nistz256_mul_montx`).
TLS = re.compile(r"^(<|core::ptr::drop_in_place<|&)*(rustls::|rustls_pki_types::|webpki::|ring::"
                 r"|aws_lc_rs::|aws_lc_sys::|ring_core_|aws_lc_\d|fe_|fe4_|ge_|x25519_|sc_"
                 r"|_*ecp_nistz256|p256_|p384_|fiat_|bn_|aes_|_*aesni|gcm_|_*sha(256|512)"
                 r"|ChaCha20|chacha20|poly1305|CRYPTO_|LIMBS?_|OPENSSL_|ec_GFp|EC_|BN_)")

# The binaries profiled: the server, or the load generator (its TLS is the same rustls).
BINARIES = ("surge", "surge-loadgen")


def split(path):
    out = subprocess.run(
        ["perf", "report", "-i", path, "--no-children", "-g", "none", "--sort", "dso,sym",
         "-q", "--percent-limit", "0"],
        capture_output=True, text=True, check=True).stdout
    parts = {"kernel TCP/IP and rest": 0.0, "syscall entry/exit + fd lookup": 0.0,
             "epoll / io_uring machinery": 0.0, "TLS (rustls + crypto)": 0.0,
             "surge (our code)": 0.0, "libc": 0.0,
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
        elif dso in BINARIES and TLS.match(sym):
            parts["TLS (rustls + crypto)"] += pct
        elif dso in BINARIES:
            parts["surge (our code)"] += pct
        elif dso.startswith("libc"):
            parts["libc"] += pct
        else:
            parts["other"] += pct
    return parts


paths = sys.argv[1:]
splits = [split(p) for p in paths]
print("| share of CPU | " + " | ".join(paths) + " |")
print("|---|" + "--:|" * len(paths))
for key in splits[0]:
    print(f"| {key} | " + " | ".join(f"{s[key]:.1f}%" for s in splits) + " |")
