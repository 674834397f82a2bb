#!/usr/bin/env python3
"""External client driver: Python `websockets` (sync client API, pinned in
tests/python/requirements.txt).

Usage: .venv/bin/python tests/clients/python_websockets.py ws://127.0.0.1:PORT/

Against an echo server: text echo, binary echo, 1 MiB binary echo, a ping whose
pong carries the same payload (websockets only acknowledges a ping when a pong
with the same payload arrives), and a close with code 1000 whose answering
close frame must carry 1000. The client offers permessage-deflate (the
library's default), which the server may decline; with SURGE_EXPECT_EXTENSIONS
set, the server's Sec-WebSocket-Extensions answer must be exactly that. Exit 0 on success; on failure
one line "python_websockets: FAIL: ..." and exit 1. Limited to 30 s.
"""
from driver import TIMEOUT, run

NAME = "python_websockets"


def check(url, fail):
    from websockets.sync.client import connect

    def echo(ws, payload, what):
        ws.send(payload)
        got = ws.recv(timeout=TIMEOUT)
        if type(got) is not type(payload):
            fail("%s: echo is %s, want %s" % (what, type(got).__name__, type(payload).__name__))
        if got != payload:
            fail("%s: echo differs (%d, want %d)" % (what, len(got), len(payload)))

    try:
        conn = connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT, max_size=16 << 20,
                       ping_interval=None, proxy=None)
    except Exception as e:  # noqa: BLE001 - one clear line
        fail("connect %s: %s: %s" % (url, type(e).__name__, e))
    import json
    import os
    agreed = conn.response.headers.get("Sec-WebSocket-Extensions")
    expect = os.environ.get("SURGE_EXPECT_EXTENSIONS")
    if expect is not None and agreed != expect:
        fail("extensions: %r, want %r" % (agreed, expect))
    try:
        with conn as ws:
            echo(ws, "hello websocket", "text")
            echo(ws, json.dumps([{"id": i, "price": 100 + i} for i in range(200)]), "JSON text")
            echo(ws, "ünïcödé ✓ 🚀", "utf-8 text")
            echo(ws, bytes([0, 1, 2, 0xFE, 0xFF, 0x80]), "binary")
            echo(ws, bytes((i * 31 + 7) & 0xFF for i in range(1 << 20)), "1 MiB binary")
            pong = ws.ping(b"surge-ping")
            if not pong.wait(5):
                fail("ping: no pong with payload b'surge-ping' within 5s")
            ws.close(1000, "bye")
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        fail("%s: %s" % (type(e).__name__, e))
    rcvd = ws.protocol.close_rcvd
    if rcvd is None:
        fail("close: no close frame from the server (close_code %s)" % ws.close_code)
    if rcvd.code != 1000:
        fail("close: server's close code %d, want 1000" % rcvd.code)


if __name__ == "__main__":
    run(NAME, check)
