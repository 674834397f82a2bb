#!/usr/bin/env node
// Echo server on 127.0.0.1 using the Node.js `ws` library (tests/node/node_modules).
//
// Usage: node tests/servers/node_ws_echo.js PORT [TIMEOUT_S] [--deflate]
//
// A known-good peer for testing Surge's client side (surge-loadgen). Echoes
// every text/binary message with the same type; pings are answered by the
// library; a close is echoed with the same code. No permessage-deflate (with
// --deflate: ws's defaults, window 15, memLevel 8, level 6, context takeover, but
// messages from 64 B compressed, as Surge's default threshold, not ws's 1 KiB), 64 MiB
// message limit, no fragment-count limit. Prints "listening 127.0.0.1:PORT" once bound. Exits 0 after
// TIMEOUT_S seconds (default 60; 0 = no limit) or on SIGTERM/SIGINT; PORT 0
// picks a free port (printed).
'use strict';
const path = require('path');
const { WebSocketServer } = require(path.join(__dirname, '..', 'node', 'node_modules', 'ws'));

const deflate = process.argv.includes('--deflate');
const args = process.argv.slice(2).filter((a) => a !== '--deflate');
if (args.length < 1 || args.length > 2) {
  console.error('usage: node_ws_echo.js PORT [TIMEOUT_S] [--deflate]');
  process.exit(2);
}
const port = Number(args[0]);
const timeoutS = args.length === 2 ? Number(args[1]) : 60;

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: deflate ? { threshold: 64 } : false,
  maxPayload: 64 << 20,
  maxFragments: 0, // no fragment-count limit (Autobahn 9.3.x/9.4.x: 65536 fragments)
});
wss.on('listening', () => console.log(`listening 127.0.0.1:${wss.address().port}`));
wss.on('error', (err) => {
  console.error(`node_ws_echo: ${err.message}`);
  process.exit(1);
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => ws.terminate());
});

function stop(why) {
  if (why) console.log(`node_ws_echo: ${why}, exiting`);
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', () => stop());
process.on('SIGINT', () => stop());
if (timeoutS > 0) setTimeout(() => stop(`timeout after ${timeoutS}s`), timeoutS * 1000).unref();
