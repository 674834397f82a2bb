#!/usr/bin/env python3
"""Server RSS per idle wss connection: `surge echo` over TLS, N connections each through the
TLS handshake (TLS 1.3, its session tickets read) and the WebSocket upgrade, then silence.

Usage: benches/wss-idle.py SURGE_BINARY CERT KEY CA [N [BACKEND]]  (N defaults to 10,000;
BACKEND, the server's --backend, to auto)
Prints one line: N, RSS before any connection, with all N idle, and the bytes per connection
(all of them, and the second half's alone, which leaves out the pools' first growth).
Standard library only; every socket on 127.0.0.1; the server is stopped at the end.
"""
import re, resource, socket, ssl, subprocess, sys, time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def main():
    binary, cert, key, ca = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 10000
    backend = sys.argv[6] if len(sys.argv) > 6 else "auto"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
    args = [binary, "echo", "--listen", "127.0.0.1:0", "--threads", "1", "--idle-timeout", "off",
            "--log", "info", "--backend", backend, "--tls-cert", cert, "--tls-key", key]
    server = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        while port is None:
            line = server.stderr.readline()
            if not line:
                sys.exit("the server ended before listening")
            m = re.search(r"wss://127\.0\.0\.1:(\d+)", line)
            port = m and int(m.group(1))
        time.sleep(0.3)
        base = rss_kib(server.pid)
        context = ssl.create_default_context(cafile=ca)
        request = (b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                   b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")
        socks, half = [], None
        for i in range(n):
            if i == n // 2:
                time.sleep(0.5)
                half = rss_kib(server.pid)
            raw = socket.create_connection(("127.0.0.1", port))
            s = context.wrap_socket(raw, server_hostname="localhost")
            s.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    sys.exit(f"connection {i}: closed during the upgrade")
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                sys.exit(f"connection {i}: {head.splitlines()[0]!r}")
            socks.append(s)
        time.sleep(1.0)
        idle = rss_kib(server.pid)
        per = (idle - base) * 1024 / n
        second = (idle - half) * 1024 / (n - n // 2)
        print(f"wss idle: {n} connections, RSS {base / 1024:.1f} MiB before, "
              f"{idle / 1024:.1f} MiB idle: {per:,.0f} B per connection "
              f"({second:,.0f} B for the second half)")
        for s in socks:
            s.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
