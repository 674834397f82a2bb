#!/usr/bin/env node
// Room server on 127.0.0.1 using the Node.js `ws` library (tests/node/node_modules): every
// message received on path P goes to every connection on path P, the sender included (what
// `surge broadcast` does), written the way the ws README broadcasts: a loop of send().
//
// Usage: node tests/servers/node_ws_room.js PORT [TIMEOUT_S]
//
// A peer for the fan-out benchmark (benches/fanout.sh). Prints "listening 127.0.0.1:PORT"
// once bound; exits after TIMEOUT_S seconds (default 60; 0 = no limit) or on SIGTERM/SIGINT;
// PORT 0 picks a free port (printed).
'use strict';
const { serve, WebSocket } = require('./node_ws_server.js');

const rooms = new Map();
serve('node_ws_room', {}, (ws, req) => {
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
