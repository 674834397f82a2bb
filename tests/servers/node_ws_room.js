#!/usr/bin/env node
// Room server on 127.0.0.1 using the Node.js `ws` library (tests/node/node_modules): every
// message received on path P goes to every connection on path P, the sender included (what
// `surge broadcast` does), written the way the ws README broadcasts: a loop of send().
//
// Usage: node tests/servers/node_ws_room.js PORT [TIMEOUT_S]
//
// A peer for the fan-out benchmark (benches/fanout.sh). No permessage-deflate. Prints
// "listening 127.0.0.1:PORT" once bound; exits after TIMEOUT_S seconds (default 60; 0 = no
// limit) or on SIGTERM/SIGINT; PORT 0 picks a free port (printed).
'use strict';
const path = require('path');
const { WebSocketServer, WebSocket } = require(path.join(__dirname, '..', 'node', 'node_modules', 'ws'));

const args = process.argv.slice(2);
if (args.length < 1 || args.length > 2) {
  console.error('usage: node_ws_room.js PORT [TIMEOUT_S]');
  process.exit(2);
}
const port = Number(args[0]);
const timeoutS = args.length === 2 ? Number(args[1]) : 60;
const rooms = new Map();

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('listening', () => console.log(`listening 127.0.0.1:${wss.address().port}`));
wss.on('error', (err) => {
  console.error(`node_ws_room: ${err.message}`);
  process.exit(1);
});
wss.on('connection', (ws, req) => {
  const name = req.url.split('?')[0];
  let room = rooms.get(name);
  if (!room) rooms.set(name, (room = new Set()));
  room.add(ws);
  ws.on('message', (data, isBinary) => {
    for (const member of room) {
      if (member.readyState === WebSocket.OPEN) member.send(data, { binary: isBinary });
    }
  });
  ws.on('close', () => room.delete(ws));
  ws.on('error', () => ws.terminate());
});

function stop(why) {
  if (why) console.log(`node_ws_room: ${why}, exiting`);
  for (const ws of wss.clients) ws.terminate();
  wss.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', () => stop());
process.on('SIGINT', () => stop());
if (timeoutS > 0) setTimeout(() => stop(`timeout after ${timeoutS}s`), timeoutS * 1000).unref();
