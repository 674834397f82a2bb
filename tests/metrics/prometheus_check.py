#!/usr/bin/env python3
"""Known traffic to a `surge echo`, then its series asked of a real Prometheus server that
scrapes it every second, until they match what was sent (or 30 s pass).

    prometheus_check.py SURGE_PORT PROMETHEUS_PORT

The surge server must be this check's own (no other traffic): the sums are exact.
"""
import json
import sys
import time
import urllib.parse
import urllib.request

import websocket  # websocket-client, in tests/python/requirements.txt

TEXTS, TEXT_SIZE = 37, 20
BINARIES, BINARY_SIZE = 5, 100


def query(prometheus, expr):
    url = f"http://127.0.0.1:{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise SystemExit(f"{expr}: {body}")
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def main():
    surge, prometheus = sys.argv[1], sys.argv[2]
    ws = websocket.create_connection(f"ws://127.0.0.1:{surge}/", timeout=5)
    for i in range(TEXTS):
        text = f"{i:0{TEXT_SIZE}d}"
        ws.send(text)
        assert ws.recv() == text
    for i in range(BINARIES):
        payload = bytes([i]) * BINARY_SIZE
        ws.send_binary(payload)
        assert ws.recv() == payload
    ws.close()  # our Close 1000
    expected = {
        'sum(surge_messages_received_total{kind="text"})': TEXTS,
        'sum(surge_message_bytes_received_total{kind="text"})': TEXTS * TEXT_SIZE,
        'sum(surge_messages_received_total{kind="binary"})': BINARIES,
        'sum(surge_message_bytes_received_total{kind="binary"})': BINARIES * BINARY_SIZE,
        "sum(surge_messages_sent_total)": TEXTS + BINARIES,
        'sum(surge_closes_received_total{code="1000"})': 1,
        "surge_connections_open": 0,
        'up{job="surge"}': 1,
        'count(surge_loop_turn_seconds_count{job="surge"})': 1,
    }
    give_up = time.monotonic() + 30
    while True:
        got = {expr: query(prometheus, expr) for expr in expected}
        if all(got[expr] == want for expr, want in expected.items()):
            for expr, value in got.items():
                print(f"{expr} = {value:g}")
            return
        if time.monotonic() > give_up:
            for expr, want in expected.items():
                print(f"{expr}: want {want}, Prometheus says {got[expr]}")
            raise SystemExit("the scraped series never matched what was sent")
        time.sleep(0.5)


if __name__ == "__main__":
    main()
