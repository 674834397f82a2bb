#!/usr/bin/env python3
"""External client driver: `openssl s_client` as the TLS layer (OpenSSL's own TLS
stack, verifying the server against the CA in $SURGE_TEST_CA, offering ALPN http/1.1),
with the WebSocket framing written here over its stdin/stdout.

Usage: python3 tests/clients/openssl_s_client.py wss://127.0.0.1:PORT/

Checks: the opening handshake (101), text echo, binary echo, 1 MiB binary echo, a ping
answered by a pong with the same payload, and a close with code 1000 answered with 1000;
then the server ends TLS (close_notify: s_client reports no error). Exit 0 on success; on
failure one line "openssl_s_client: FAIL: ..." and exit 1. Limited to 30 s.
"""
import os
import struct
import subprocess
import urllib.parse

from driver import run

NAME = "openssl_s_client"
MASK = bytes([0x1B, 0x2C, 0x3D, 0x4E])


def frame(opcode, payload):
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n <= 0xFFFF:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def check(url, fail):
    ca = os.environ.get("SURGE_TEST_CA")
    if not ca:
        fail("SURGE_TEST_CA (the test CA's PEM) is not set")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "wss":
        fail("want a wss:// URL, got %s" % url)
    proc = subprocess.Popen(
        ["openssl", "s_client", "-connect", "%s:%d" % (parts.hostname, parts.port),
         "-servername", "localhost", "-CAfile", ca, "-verify_return_error",
         "-alpn", "http/1.1", "-quiet", "-no_ign_eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, inp = proc.stdout, proc.stdin

    def read_exact(n):
        data = b""
        while len(data) < n:
            chunk = out.read(n - len(data))
            if not chunk:
                fail("the stream ended after %d of %d bytes (s_client: %s)"
                     % (len(data), n, proc.stderr.read().decode(errors="replace").strip()[-200:]))
            data += chunk
        return data

    def recv():
        b0, b1 = read_exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", read_exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", read_exact(8))[0]
        return b0 & 0x0F, read_exact(n)

    def send(opcode, payload):
        inp.write(frame(opcode, payload))
        inp.flush()

    def echo(opcode, payload, what):
        send(opcode, payload)
        got = recv()
        if got != (opcode, payload):
            fail("%s: echo differs (opcode %d, %d bytes; want %d, %d)"
                 % (what, got[0], len(got[1]), opcode, len(payload)))

    inp.write(("GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % (parts.path or "/")).encode())
    inp.flush()
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += read_exact(1)
    if not head.startswith(b"HTTP/1.1 101 "):
        fail("handshake: %r" % head[:80])
    echo(1, "hello over openssl ✓".encode(), "text")
    echo(2, bytes([0, 1, 2, 0xFE, 0xFF]), "binary")
    echo(2, bytes((i * 31 + 7) & 0xFF for i in range(1 << 20)), "1 MiB binary")
    send(9, b"surge-ping")
    if recv() != (10, b"surge-ping"):
        fail("ping: no pong with the same payload")
    send(8, struct.pack(">H", 1000) + b"bye")
    opcode, payload = recv()
    if opcode != 8 or payload[:2] != struct.pack(">H", 1000):
        fail("close: got opcode %d payload %r, want Close 1000" % (opcode, payload[:20]))
    if out.read() != b"":
        fail("bytes after the server's Close")
    inp.close()
    err = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0 or "error" in err.lower():
        fail("s_client ended with status %d: %s" % (proc.returncode, err.strip()[-200:]))


if __name__ == "__main__":
    run(NAME, check)
