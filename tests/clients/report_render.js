#!/usr/bin/env node
// Render check for surge-loadgen's HTML reports (`compare --html`, `sweep --html`) in
// Debian's headless Chromium (/usr/bin/chromium), driven by playwright-core (tests/node).
//
// Usage: node tests/clients/report_render.js REPORT.html [MIN_SERIES] [SCREENSHOT.png]
//
// Opens the file with the network off, then checks: no page error or failed request (the
// report must be self-contained), at least one <svg>, at least MIN_SERIES (default 1) plotted
// lines (`path.series`, compare reports) or bars (`rect.bar`, sweep reports), each with a
// non-empty size inside its chart, and a table. Exit 0 on success; on failure one line
// "report_render: FAIL: ..." and exit 1. Limited to 60 s (a bound for a loaded machine).
'use strict';
const path = require('path');
const { chromium } = require(path.join(__dirname, '..', 'node', 'node_modules', 'playwright-core'));

const NAME = 'report_render';
const [file, minArg, shot] = process.argv.slice(2);
if (!file) {
  console.error('usage: report_render.js REPORT.html [MIN_SERIES] [SCREENSHOT.png]');
  process.exit(2);
}
const minSeries = Number(minArg || 1);
let browser = null;
async function fail(msg) {
  process.stderr.write(`${NAME}: FAIL: ${msg}\n`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
setTimeout(() => fail('timed out after 60 s'), 60000).unref();

(async () => {
  try {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: [
        '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    });
  } catch (e) {
    return fail(`launch: ${e.message.split('\n')[0]}`);
  }
  const context = await browser.newContext({ offline: true, viewport: { width: 1000, height: 1200 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  page.on('request', (r) => {
    if (!r.url().startsWith('file:') && !r.url().startsWith('data:')) problems.push(`network request: ${r.url()}`);
  });
  await page.goto('file://' + path.resolve(file), { waitUntil: 'load' });
  const report = await page.evaluate(() => {
    const svgs = [...document.querySelectorAll('svg')];
    const marks = [...document.querySelectorAll('svg path.series, svg rect.bar')];
    const bad = marks.filter((m) => {
      const box = m.getBBox();
      const svg = m.ownerSVGElement.getBBox();
      const drawn = m.tagName === 'path' ? m.getTotalLength() > 0 : box.width > 0;
      return !drawn || box.x < svg.x - 1 || box.x + box.width > svg.x + svg.width + 1;
    });
    return {
      svgs: svgs.length,
      marks: marks.length,
      bad: bad.length,
      tables: document.querySelectorAll('table, pre').length,
      title: document.title,
    };
  });
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  await browser.close();
  browser = null;
  if (problems.length) return fail(problems.join('; '));
  if (report.svgs < 1) return fail('no <svg> chart');
  if (report.marks < minSeries) return fail(`${report.marks} plotted series/bars, expected at least ${minSeries}`);
  if (report.bad) return fail(`${report.bad} plotted series/bars empty or outside their chart`);
  if (report.tables < 1) return fail('no table');
  console.log(`${NAME}: ok: "${report.title}", ${report.svgs} charts, ${report.marks} series/bars`);
})().catch((e) => fail(e.message.split('\n')[0]));
