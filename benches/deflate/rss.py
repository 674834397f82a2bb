#!/usr/bin/env python3
"""Server RSS per connection with permessage-deflate negotiated: N connections idle, then
after one compressed 137-byte message each (echoed back), for one `surge echo` policy.

Usage: benches/deflate/rss.py SURGE_BINARY [N] [--deflate=POLICY | --no-deflate] [--size=BYTES]
(--size: the message is that many bytes of the same JSON record repeated, 137 by default;
above 512 a context-takeover stream compresses it with zlib, which it makes then.)
Prints one line: policy, N, RSS before any connection, idle, after one message each, and
the per-connection figures. Standard library only; every socket on 127.0.0.1.
"""
import os, re, resource, socket, struct, subprocess, sys, time, zlib

JSON = (b'{"type":"trade","symbol":"BTC-USD","price":"43127.55","size":"0.0125","side":"buy",'
        b'"ts":1733043600123,"id":9182736450,"venue":"surge-01"}')
assert len(JSON) == 137


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def frame(payload, rsv1):
    first = 0x80 | (0x40 if rsv1 else 0) | 0x1
    if len(payload) < 126:
        head = bytes([first, 0x80 | len(payload)])
    else:
        head = bytes([first, 0x80 | 126]) + struct.pack(">H", len(payload))
    head += b"\x01\x02\x03\x04"
    return head + bytes(b ^ (1, 2, 3, 4)[i % 4] for i, b in enumerate(payload))


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 10000
    flags = [a for a in sys.argv[2:] if a.startswith("--")]
    policy = "off" if "--no-deflate" in flags else next(
        (f.split("=", 1)[1] for f in flags if f.startswith("--deflate=")), "shared")
    size = next((int(f.split("=", 1)[1]) for f in flags if f.startswith("--size=")), len(JSON))
    message = (JSON * (size // len(JSON) + 1))[:size]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
    args = [binary, "echo", "--listen", "127.0.0.1:0", "--threads", "1", "--idle-timeout", "off",
            "--log", "info"] + ([] if policy == "off" else ["--deflate", policy])
    server = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        while port is None:
            line = server.stderr.readline()
            m = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
            port = m and int(m.group(1))
        time.sleep(0.3)
        base = rss_kib(server.pid)
        offer = "" if policy == "off" else "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        request = ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   + offer + "\r\n").encode()
        socks, agreed = [], None
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(4096)
            agreed = agreed or re.search(rb"Sec-WebSocket-Extensions: ([^\r]*)", head)
            socks.append(s)
        time.sleep(1.0)
        idle = rss_kib(server.pid)
        takeover = policy.startswith("stream")
        for s in socks:
            if policy == "off":
                s.sendall(frame(message, False))
            else:
                c = zlib.compressobj(6, zlib.DEFLATED, -15)
                data = c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH)
                s.sendall(frame(data[:-4], True))
            got = s.recv(4096)
            assert got, "echo"
        time.sleep(1.0)
        after = rss_kib(server.pid)
        print(f"policy {policy} ({agreed.group(1).decode() if agreed else 'none'}), {n} connections: "
              f"RSS {base} KiB empty, {idle} KiB idle, {after} KiB after one {size} B message each; "
              f"per connection {(idle - base) * 1024 / n:.0f} B idle, "
              f"{(after - base) * 1024 / n:.0f} B active (takeover {takeover})")
        for s in socks:
            s.close()
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
