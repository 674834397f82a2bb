#!/usr/bin/env node
// External client driver: Node.js `ws` (pinned in tests/node/package.json).
//
// Usage: node tests/clients/node_ws.js ws://127.0.0.1:PORT/
//
// Against an echo server: text echo, binary echo, 1 MiB binary echo, a ping
// answered by a pong with the same payload, and a close with code 1000 whose
// answering close frame must carry 1000 (ws reports the code the peer sent).
// Exit 0 on success; on failure one line "node_ws: FAIL: ..." and exit 1.
// Limited to 30 s (a bound for a loaded machine; about 0.3 s when idle).
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '..', 'node', 'node_modules', 'ws'));

const NAME = 'node_ws';
const TIMEOUT_MS = 30000;
function fail(msg) {
  process.stderr.write(`${NAME}: FAIL: ${msg}\n`);
  process.exit(1);
}
const url = process.argv[2];
if (!url || process.argv.length !== 3) {
  console.error('usage: node_ws.js ws://HOST:PORT/PATH');
  process.exit(2);
}
setTimeout(() => fail(`timed out after ${TIMEOUT_MS / 1000}s`), TIMEOUT_MS).unref();

// perMessageDeflate: offered ("permessage-deflate; client_max_window_bits"); with
// SURGE_EXPECT_EXTENSIONS set, the server's answer must be exactly that value.
const ws = new WebSocket(url, { handshakeTimeout: TIMEOUT_MS, maxPayload: 16 << 20, perMessageDeflate: true });
let agreed = null;
ws.on('upgrade', (res) => {
  agreed = res.headers['sec-websocket-extensions'] ?? '';
});
let onClose = null;
ws.on('error', (err) => fail(`${err.message}`));
ws.on('close', (code, reason) => {
  if (onClose) onClose(code, reason.toString());
  else fail(`connection closed early (code ${code})`);
});

// next(event): resolves with the next 'message' or 'pong'
function next(event) {
  return new Promise((resolve) => {
    ws.once(event, (...args) => resolve(args));
  });
}

async function echo(payload, binary, what) {
  const p = next('message');
  ws.send(payload, { binary });
  const [data, isBinary] = await p;
  if (isBinary !== binary) fail(`${what}: echo is ${isBinary ? 'binary' : 'text'}`);
  const want = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  if (!Buffer.from(data).equals(want)) fail(`${what}: echo differs (${data.length} bytes, want ${want.length})`);
}

ws.on('open', async () => {
  const expect = process.env.SURGE_EXPECT_EXTENSIONS;
  if (expect !== undefined && agreed !== expect) fail(`extensions: ${JSON.stringify(agreed)}, want ${JSON.stringify(expect)}`);
  await echo('hello websocket', false, 'text');
  await echo(JSON.stringify(Array.from({ length: 200 }, (_, i) => ({ id: i, price: 100 + i }))), false, 'JSON text');
  await echo('ünïcödé ✓ 🚀', false, 'utf-8 text');
  await echo(Buffer.from([0, 1, 2, 0xfe, 0xff, 0x80]), true, 'binary');
  const big = Buffer.alloc(1 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
  await echo(big, true, '1 MiB binary');

  const pong = next('pong');
  ws.ping(Buffer.from('surge-ping'));
  const t = setTimeout(() => fail('ping: no pong within 5s'), 5000);
  const [data] = await pong;
  clearTimeout(t);
  if (data.toString() !== 'surge-ping') fail(`ping: pong payload ${JSON.stringify(data.toString())}, want "surge-ping"`);

  onClose = (code) => {
    if (code !== 1000) fail(`close: server's close code ${code}, want 1000`);
    console.log(`${NAME}: OK (text, JSON, binary, 1 MiB, ping/pong, close 1000; extensions ${JSON.stringify(agreed)})`);
    process.exit(0);
  };
  ws.close(1000, 'bye');
});
