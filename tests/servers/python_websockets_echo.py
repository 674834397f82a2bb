#!/usr/bin/env python3
"""Echo server on 127.0.0.1 using the Python `websockets` library (asyncio API).

Usage: .venv/bin/python tests/servers/python_websockets_echo.py PORT [TIMEOUT_S] [--deflate]

A known-good peer for testing Surge's client side (surge-loadgen), and the
stand-in server the client drivers in tests/clients/ were validated against.
Echoes every text/binary message with the same type; pings are answered by the
library; a close is echoed with the same code. No permessage-deflate (with
--deflate: the library's default, compression="deflate"), 64 MiB
message limit, no fragment-count limit, no keepalive pings. Prints "listening 127.0.0.1:PORT" once
bound. Exits 0 after TIMEOUT_S seconds (default 60; 0 = no limit) or on
SIGTERM/SIGINT; PORT 0 picks a free port (printed).
"""
import asyncio
import signal
import sys

import websockets.asyncio.messages
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

# websockets caps a message's fragment count (MAX_FRAGMENTS = 4096, a DoS guard
# read from WEBSOCKETS_MAX_FRAGMENTS at import); Autobahn 9.3.x/9.4.x send 4 MiB
# in 64-byte fragments (65536).
if hasattr(websockets.asyncio.messages, "MAX_FRAGMENTS"):
    websockets.asyncio.messages.MAX_FRAGMENTS = 1 << 20


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def main(port, timeout, compression):
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(echo, "127.0.0.1", port, compression=compression, max_size=64 << 20,
                     max_queue=None, ping_interval=None) as server:
        bound = server.sockets[0].getsockname()[1]
        print("listening 127.0.0.1:%d" % bound, flush=True)
        try:
            await asyncio.wait_for(stop, timeout if timeout > 0 else None)
        except asyncio.TimeoutError:
            print("python_websockets_echo: timeout after %ss, exiting" % timeout, flush=True)


if __name__ == "__main__":
    deflate = "--deflate" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--deflate"]
    if len(args) not in (1, 2):
        sys.exit("usage: python_websockets_echo.py PORT [TIMEOUT_S] [--deflate]")
    asyncio.run(main(int(args[0]), float(args[1]) if len(args) == 2 else 60.0,
                     "deflate" if deflate else None))
