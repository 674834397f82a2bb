// What the Node `ws` servers here share: the command line (PORT [TIMEOUT_S]), the
// WebSocketServer on 127.0.0.1 (no permessage-deflate), the "listening 127.0.0.1:PORT" line,
// and the exits (after TIMEOUT_S seconds, default 60, 0 = no limit; on SIGTERM/SIGINT).
'use strict';
const path = require('path');
const ws = require(path.join(__dirname, '..', 'node', 'node_modules', 'ws'));

// serve(NAME, OPTIONS, ON_CONNECTION): runs the server; OPTIONS go to WebSocketServer.
function serve(name, options, onConnection) {
  const args = process.argv.slice(2);
  if (args.length < 1 || args.length > 2) {
    console.error(`usage: ${name}.js PORT [TIMEOUT_S]`);
    process.exit(2);
  }
  const port = Number(args[0]);
  const timeoutS = args.length === 2 ? Number(args[1]) : 60;
  const wss = new ws.WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false, ...options });
  wss.on('listening', () => console.log(`listening 127.0.0.1:${wss.address().port}`));
  wss.on('error', (err) => {
    console.error(`${name}: ${err.message}`);
    process.exit(1);
  });
  wss.on('connection', onConnection);
  function stop(why) {
    if (why) console.log(`${name}: ${why}, exiting`);
    for (const client of wss.clients) client.terminate();
    wss.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  }
  process.on('SIGTERM', () => stop());
  process.on('SIGINT', () => stop());
  if (timeoutS > 0) setTimeout(() => stop(`timeout after ${timeoutS}s`), timeoutS * 1000).unref();
}

module.exports = { serve, WebSocket: ws.WebSocket };
