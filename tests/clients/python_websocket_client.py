#!/usr/bin/env python3
"""External client driver: Python `websocket-client` (pinned in
tests/python/requirements.txt).

Usage: .venv/bin/python tests/clients/python_websocket_client.py ws://127.0.0.1:PORT/

Against an echo server: text echo, binary echo, 1 MiB binary echo, a ping
answered by a pong with the same payload (read at frame level), and a close
with code 1000 whose answering close frame must carry 1000. Exit 0 on success;
on failure one line "python_websocket_client: FAIL: ..." and exit 1. Limited
to 30 s.
"""
import struct

from driver import TIMEOUT, run

NAME = "python_websocket_client"


def check(url, fail):
    import websocket
    from websocket import ABNF

    def echo(ws, payload, opcode, what):
        ws.send(payload, opcode)
        op, data = ws.recv_data()
        if op != opcode:
            fail("%s: echo opcode %d, want %d" % (what, op, opcode))
        want = payload.encode() if isinstance(payload, str) else payload
        if data != want:
            fail("%s: echo differs (%d bytes, want %d)" % (what, len(data), len(want)))

    try:
        ws = websocket.create_connection(url, timeout=TIMEOUT, http_no_proxy=["127.0.0.1", "localhost", "::1"],
                                         skip_utf8_validation=False)
    except Exception as e:  # noqa: BLE001 - one clear line
        fail("connect %s: %s: %s" % (url, type(e).__name__, e))
    try:
        echo(ws, "hello websocket", ABNF.OPCODE_TEXT, "text")
        echo(ws, "ünïcödé ✓ 🚀", ABNF.OPCODE_TEXT, "utf-8 text")
        echo(ws, bytes([0, 1, 2, 0xFE, 0xFF, 0x80]), ABNF.OPCODE_BINARY, "binary")
        echo(ws, bytes((i * 31 + 7) & 0xFF for i in range(1 << 20)), ABNF.OPCODE_BINARY, "1 MiB binary")

        ws.ping(b"surge-ping")
        ws.settimeout(5)
        try:
            op, frame = ws.recv_data_frame(control_frame=True)
        except websocket.WebSocketTimeoutException:
            fail("ping: no pong within 5s")
        ws.settimeout(TIMEOUT)
        if op != ABNF.OPCODE_PONG:
            fail("ping: got opcode %d, want pong (%d)" % (op, ABNF.OPCODE_PONG))
        if frame.data != b"surge-ping":
            fail("ping: pong payload %r, want b'surge-ping'" % frame.data)

        # send_close + raw frame reads: the library's close() does not expose
        # the peer's code, and recv_data_frame() would answer the close again.
        ws.send_close(1000, b"bye")
        while True:
            frame = ws.recv_frame()
            if frame is None:
                fail("close: connection ended without a close frame")
            if frame.opcode == ABNF.OPCODE_CLOSE:
                break
        if len(frame.data) < 2:
            fail("close: server's close frame has no code (want 1000)")
        code = struct.unpack("!H", frame.data[:2])[0]
        if code != 1000:
            fail("close: server's close code %d, want 1000" % code)
        ws.shutdown()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001
        fail("%s: %s" % (type(e).__name__, e))


if __name__ == "__main__":
    run(NAME, check)
