#!/usr/bin/env bash
# External client driver: the `wscat` CLI (pinned in tests/node/package.json),
# driven non-interactively.
#
# Usage: tests/clients/wscat.sh ws://127.0.0.1:PORT/
#
# Against an echo server:
#   1. `wscat -c URL -x MSG -x MSG -w 3`: both text messages are echoed, in order
#      (wscat then closes with no status code and exits).
#   2. stdin piped into `wscat -c URL --slash -P`: a text line and a 1 MiB text
#      line are echoed; `/ping surge-ping` gets "Received pong (data: "surge-ping")";
#      `/close 1000 bye` makes wscat exit by itself (its 'close' event fired)
#      while stdin is still open.
# What wscat cannot check: it sends text only (no binary frames; received binary
# is printed as text), it prints no close code when stdout is not a TTY, so the
# server's close code is NOT verified, and its exit on close also happens when
# the server just drops the TCP connection. Lines piped in before the
# connection opens are lost (and wscat prints nothing when it opens off a TTY),
# so phase 2 repeats its first line until the echo shows the connection is up,
# however long starting node takes. The other drivers check binary and the
# close code.
# Exit 0 on success; on failure one line "wscat: FAIL: ..." and exit 1. At most
# 50 s (20 s + 30 s), a bound for a loaded machine; about 2 s when idle.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WSCAT=(node "$ROOT/tests/node/node_modules/wscat/bin/wscat")
URL="${1:?usage: wscat.sh ws://HOST:PORT/PATH}"
fail() { echo "wscat: FAIL: $*" >&2; exit 1; }
TMP="$(mktemp -d)"
FEEDERS=()
cleanup() {
  local p
  for p in "${FEEDERS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# phase 1: -x (wscat quits when stdin ends, even with -x: keep stdin open)
rc=0
exec 3< <(sleep 25)
FEEDERS+=($!)
timeout 20 "${WSCAT[@]}" -c "$URL" -x 'hello websocket' -x 'second message' -w 3 >"$TMP/out1" 2>"$TMP/err1" <&3 || rc=$?
exec 3<&-
[ "$rc" = 124 ] && fail "-x: timed out after 20s"
[ "$rc" = 0 ] || fail "-x: wscat exit $rc: $(head -c 200 "$TMP/err1" | tr '\n' ' ')"
printf 'hello websocket\nsecond message\n' | cmp -s - "$TMP/out1" ||
  fail "-x: echo output differs: $(head -c 200 "$TMP/out1" | tr '\n' '|')"

# phase 2: piped stdin with slash commands
python3 -c 'import sys; sys.stdout.write("".join(chr(97 + (i * 7) % 26) for i in range(1 << 20)))' >"$TMP/big"
echoed_lines() { sed -E 's/^(> )+//' "$TMP/out2" | grep -v '^$' || true; }
feed() {
  local i
  for i in $(seq 100); do # until the first echo: the connection is open
    echo 'hello stdin'
    sleep 0.2
    echoed_lines | grep -qx 'hello stdin' && break
  done
  cat "$TMP/big"; echo
  echo '/ping surge-ping'
  sleep 0.5
  echo '/close 1000 bye'
  sleep 40 # stdin stays open: wscat must exit because the connection closed
}
start=$(date +%s%N)
rc=0
exec 3< <(feed)
FEEDERS+=($!)
timeout 30 "${WSCAT[@]}" -c "$URL" --slash -P >"$TMP/out2" 2>"$TMP/err2" <&3 || rc=$?
exec 3<&-
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$rc" = 124 ] && fail "stdin: wscat did not exit within 30s after /close 1000 (no closing handshake?)"
[ "$rc" = 0 ] || fail "stdin: wscat exit $rc: $(head -c 200 "$TMP/err2" | tr '\n' ' ')"
# stdout also carries readline's "> " prompts; a pong may overtake the 1 MiB echo
# (the first line was repeated until echoed: one or more of it, then the 1 MiB line)
echoed_lines >"$TMP/lines"
data=$(grep -v '^Received pong' "$TMP/lines" || true)
pongs=$(grep '^Received pong' "$TMP/lines" || true)
hellos=$(printf '%s\n' "$data" | grep -c -x 'hello stdin' || true)
[ "$hellos" -ge 1 ] && [ "$(printf '%s\n' "$data" | head -n "$hellos" | sort -u)" = 'hello stdin' ] ||
  fail "stdin: no echo of 'hello stdin' first (got: $(head -c 100 "$TMP/lines" | tr '\n' '|'))"
[ "$(printf '%s\n' "$data" | sed -n "$((hellos + 1))p")" = "$(cat "$TMP/big")" ] ||
  fail "stdin: 1 MiB text line not echoed intact (echo lines: $(printf '%s\n' "$data" | wc -l), bytes: $(printf '%s' "$data" | wc -c))"
[ "$(printf '%s\n' "$data" | wc -l)" = $((hellos + 1)) ] || fail "stdin: unexpected extra output: $(printf '%s\n' "$data" | sed -n "$((hellos + 2))p" | head -c 100)"
[ "$pongs" = 'Received pong (data: "surge-ping")' ] || fail "stdin: want one pong with payload surge-ping, got: ${pongs:-none}"
echo "wscat: OK (text via -x, text + 1 MiB text + /ping via stdin, exit on /close 1000 after ${ms}ms; close code not visible to wscat)"
