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
const { serve } = require('./node_ws_server.js');

// serve() reads PORT [TIMEOUT_S] from the command line: take --deflate out first.
const deflate = process.argv.includes('--deflate');
process.argv = process.argv.filter((a) => a !== '--deflate');
const options = {
  maxPayload: 64 << 20,
  maxFragments: 0, // no fragment-count limit (Autobahn 9.3.x/9.4.x: 65536 fragments)
  perMessageDeflate: deflate ? { threshold: 64 } : false,
};
serve('node_ws_echo', options, (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => ws.terminate());
});
