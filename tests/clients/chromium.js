#!/usr/bin/env node
// External client driver: the browser's own WebSocket in Debian's headless
// Chromium (/usr/bin/chromium), driven by playwright-core (tests/node).
//
// Usage: node tests/clients/chromium.js ws://127.0.0.1:PORT/
//
// The page (set with page.setContent, no HTTP server) opens a WebSocket and
// checks against an echo server: text echo, binary echo (ArrayBuffer), 1 MiB
// binary echo, 1 MiB text echo, and close(1000) whose CloseEvent.code must be
// 1000 with wasClean. Ping/pong is not exposed to browser JavaScript, so it is
// not checked here. Exit 0 on success; on failure one line
// "chromium: FAIL: ..." and exit 1. Limited to 30 s after the browser started
// (browser launch has its own 60 s limit): bounds for a loaded machine, not expectations.
'use strict';
const path = require('path');
const { chromium } = require(path.join(__dirname, '..', 'node', 'node_modules', 'playwright-core'));

const NAME = 'chromium';
const TIMEOUT_MS = 30000;
const url = process.argv[2];
if (!url || process.argv.length !== 3) {
  console.error('usage: chromium.js ws://HOST:PORT/PATH');
  process.exit(2);
}
let browser = null;
let failed = false;
async function fail(msg) {
  if (failed) return new Promise(() => {}); // already failing: wait for exit
  failed = true;
  process.stderr.write(`${NAME}: FAIL: ${msg}\n`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}

// Runs inside the page.
async function pageTest([url, timeoutMs, expectExtensions]) {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const queue = [];
  let waiter = null;
  let closed = null;
  const push = (ev) => {
    if (waiter) {
      const w = waiter;
      waiter = null;
      w(ev);
    } else queue.push(ev);
  };
  ws.onmessage = (e) => push({ kind: 'message', data: e.data });
  ws.onerror = () => push({ kind: 'error' });
  ws.onclose = (e) => {
    closed = { code: e.code, reason: e.reason, wasClean: e.wasClean };
    push({ kind: 'close', ...closed });
  };
  const next = () =>
    queue.length
      ? Promise.resolve(queue.shift())
      : new Promise((resolve, reject) => {
          waiter = resolve;
          setTimeout(() => reject(new Error('no event within ' + timeoutMs + ' ms')), timeoutMs);
        });
  const opened = await new Promise((resolve) => {
    ws.onopen = () => resolve(true);
    ws.onerror = () => resolve(false);
  });
  if (!opened) return 'connect failed';
  // permessage-deflate as the server agreed (the browser offers it on every connection).
  if (expectExtensions !== null && ws.extensions !== expectExtensions)
    return `extensions: ${JSON.stringify(ws.extensions)}, want ${JSON.stringify(expectExtensions)}`;
  ws.onerror = () => push({ kind: 'error' });

  const eqBuf = (a, b) => {
    if (a.byteLength !== b.byteLength) return false;
    const x = new Uint8Array(a), y = new Uint8Array(b);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  };
  async function echo(payload, what) {
    ws.send(payload);
    let ev = await next();
    if (ev.kind === 'error') ev = await next().catch(() => ev); // the close that follows has the code
    if (ev.kind !== 'message') return `${what}: got ${ev.kind} (code ${ev.code}) instead of the echo${ev.reason ? ' (' + ev.reason + ')' : ''}`;
    if (typeof payload === 'string') {
      if (typeof ev.data !== 'string') return `${what}: echo is binary, want text`;
      if (ev.data !== payload) return `${what}: echo differs (${ev.data.length} chars, want ${payload.length})`;
    } else {
      if (!(ev.data instanceof ArrayBuffer)) return `${what}: echo is text, want binary`;
      if (!eqBuf(ev.data, payload)) return `${what}: echo differs (${ev.data.byteLength} bytes, want ${payload.byteLength})`;
    }
    return null;
  }
  const big = new Uint8Array(1 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
  const steps = [
    ['hello websocket', 'text'],
    ['ünïcödé ✓ 🚀', 'utf-8 text'],
    [new Uint8Array([0, 1, 2, 0xfe, 0xff, 0x80]).buffer, 'binary'],
    [big.buffer, '1 MiB binary'],
    [JSON.stringify(Array.from({ length: 200 }, (_, i) => ({ id: i, price: 100 + i, side: 'buy' }))), 'JSON text'],
    ['x'.repeat(1 << 20), '1 MiB text'],
  ];
  try {
    for (const [payload, what] of steps) {
      const err = await echo(payload, what);
      if (err) return err;
    }
  } catch (e) {
    return String(e);
  }
  ws.close(1000, 'bye');
  let ev;
  try {
    ev = await next();
  } catch (e) {
    return 'close: ' + String(e);
  }
  if (ev.kind !== 'close') return `close: got ${ev.kind} before the close`;
  if (ev.code !== 1000) return `close: CloseEvent.code ${ev.code}, want 1000`;
  if (!ev.wasClean) return 'close: not clean (wasClean false)';
  return 'ok';
}

(async () => {
  const launchTimer = setTimeout(() => fail('browser launch timed out after 60s'), 60000);
  try {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      timeout: 60000,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--no-proxy-server',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  } catch (e) {
    await fail(`launch /usr/bin/chromium: ${e.message.split('\n')[0]}`);
  }
  clearTimeout(launchTimer);
  setTimeout(() => fail(`timed out after ${TIMEOUT_MS / 1000}s`), TIMEOUT_MS).unref();
  try {
    const page = await browser.newPage();
    await page.setContent('<!doctype html><title>surge ws test</title>');
    const expect = process.env.SURGE_EXPECT_EXTENSIONS ?? null;
    const result = await page.evaluate(pageTest, [url, TIMEOUT_MS, expect]);
    if (result !== 'ok') await fail(result);
  } catch (e) {
    await fail(e.message.split('\n')[0]);
  }
  await browser.close();
  console.log(`${NAME}: OK (text, binary, 1 MiB binary and text, close 1000; no ping: not exposed to page JS)`);
  process.exit(0);
})();
