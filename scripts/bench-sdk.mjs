// The shipped ES module as an integrator's page loads it: dist/qys-sdk.mjs and its .wasm from
// qys-proxy's /js/ (the .wasm as application/wasm), in headless Chromium on loopback.
//  1. Loading, each time in a fresh browser context (empty HTTP cache), once the page has loaded:
//     importing the module; the first call, which fetches, compiles and instantiates the .wasm and
//     then validates (a bad contact, so nothing is sent); a later call (the mean of 100). On a plain
//     page, and on a page with the README's preload tags once their downloads have finished.
//  2. Calls: personalSign() → the resolved element, and the SDK's own part of it (total minus the
//     proxy request as Resource Timing sees it).
// Usage: node scripts/bench-sdk.mjs [calls] [loads]   (default 200 calls, 15 loads; after
// `npm run build` and a release qys-proxy). Anything unexpected (a call's result, a .wasm fetched
// twice, a console warning) stops it with an error: `npm test` runs it small as a smoke test.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProxy, launch } from '../tests/e2e/harness.mjs';

const calls = Number(process.argv[2] ?? 200);
const loads = Number(process.argv[3] ?? 15);
const WARM_UP = 20;
const CONTRACT = '2603417854124281870';
// As in the README: the module and the .wasm start downloading while the page loads.
const PRELOAD = '<link rel="modulepreload" href="/js/qys-sdk.mjs">\n'
  + '<link rel="preload" href="/js/qys_sdk_wasm_bg.wasm" as="fetch" crossorigin>';
const pages = { plain: '', preload: PRELOAD };

const www = mkdtempSync(join(tmpdir(), 'qys-bench-sdk-'));
for (const [name, head] of Object.entries(pages)) {
  // (no favicon request: its 404 would be a console error)
  writeFileSync(join(www, `${name}.html`),
    `<!doctype html>\n<meta charset="utf-8">\n<link rel="icon" href="data:,">\n${head}\n<title>${name}</title>\n`);
}
// Every call comes from 127.0.0.1, flow starts back to back: no per-address limit and a flow-start
// rate out of reach, or the calls would measure their 429s.
const proxy = await startProxy({ QYS_WWW_DIR: www, QYS_SDK_RATE: '0', QYS_FLOW_START_RATE: '1000000' });
const browser = await launch();
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const ms = (x) => `${x.toFixed(x < 1 ? 2 : 1)} ms`.padStart(9);

/** Opens `name`.html in a fresh context; fails on console warnings and counts .wasm requests. */
async function open(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.wasmRequests = 0;
  page.on('console', (m) => { if (m.type() === 'warning' || m.type() === 'error') problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('request', (r) => { if (new URL(r.url()).pathname === '/js/qys_sdk_wasm_bg.wasm') page.wasmRequests++; });
  page.done = async () => {
    if (problems.length) throw new Error(`${name}: ${problems.join('; ')}`);
    if (page.wasmRequests !== 1) throw new Error(`${name}: the .wasm was requested ${page.wasmRequests} times`);
    await context.close();
  };
  await page.goto(`${proxy.proxy}/${name}.html`);
  return page;
}

try {
  console.log(`Loading dist/qys-sdk.mjs, fresh browser context each, median of ${loads} (headless Chromium, loopback):`);
  console.log('                                import  first call  later call (mean of 100)');
  for (const name of Object.keys(pages)) {
    const runs = [];
    for (let i = 0; i < loads; i++) {
      const page = await open(name);
      const run = await page.evaluate(async ({ contract, preloaded }) => {
        // The downloads the page started early have finished (as when a user clicks after a moment).
        await new Promise((resolve) => {
          const left = new Set(preloaded);
          const done = (observer) => { if (!left.size) { observer.disconnect(); resolve(); } };
          const observer = new PerformanceObserver((list) => {
            for (const e of list.getEntries()) left.delete(new URL(e.name).pathname);
            done(observer);
          });
          observer.observe({ type: 'resource', buffered: true });
          done(observer);
        });
        const t0 = performance.now();
        const { qysSdk } = await import('/js/qys-sdk.mjs');
        const t1 = performance.now();
        const sdk = new qysSdk('/qys/proxy');
        const refused = () => sdk.personalSign(contract, '137******44', {})
          .then(() => 'resolved', (e) => `${e.name} ${e.kind} ${e.param}`);
        const results = [await refused()];
        const t2 = performance.now();
        for (let i = 0; i < 100; i++) results.push(await refused());
        const t3 = performance.now();
        return { import: t1 - t0, first: t2 - t1, later: (t3 - t2) / 100, results };
      }, { contract: CONTRACT, preloaded: name === 'preload' ? ['/js/qys-sdk.mjs', '/js/qys_sdk_wasm_bg.wasm'] : [] });
      if (run.results.some((r) => r !== 'QysError invalidArgument contact')) throw new Error(`${name}: ${run.results}`);
      await page.done();
      runs.push(run);
    }
    const label = name === 'plain' ? 'plain page' : "README's preload tags";
    console.log(`  ${label.padEnd(26)}${['import', 'first', 'later'].map((k) => ms(median(runs.map((r) => r[k])))).join('   ')}`);
  }

  const page = await open('plain');
  const samples = await page.evaluate(async ({ n, warmUp, contract }) => {
    const { qysSdk } = await import('/js/qys-sdk.mjs');
    const out = [];
    performance.setResourceTimingBufferSize(n * 4);
    for (let i = 0; i < n + warmUp; i++) {
      const sdk = new qysSdk('/qys/proxy', { query: { i } });
      performance.clearResourceTimings();
      const t0 = performance.now();
      const element = await sdk.personalSign(contract, '13700000044', {});
      const total = performance.now() - t0;
      const entry = performance.getEntriesByType('resource').find((e) => e.name.includes('/qys/proxy'));
      sdk.destroy();
      if (element.tagName !== 'IFRAME' || !entry) throw new Error(`call ${i}: ${element.tagName}, request seen: ${!!entry}`);
      if (i >= warmUp) out.push({ total, fetch: entry.responseEnd - entry.startTime });
    }
    return out;
  }, { n: calls, warmUp: WARM_UP, contract: CONTRACT });
  await page.done();
  console.log(`personalSign → element, ${calls} calls after ${WARM_UP} warm-up (median):`);
  console.log(`  total                               ${ms(median(samples.map((s) => s.total)))}`);
  console.log(`  proxy request (fetch start → end)   ${ms(median(samples.map((s) => s.fetch)))}`);
  console.log(`  SDK's own (total − request)         ${ms(median(samples.map((s) => s.total - s.fetch)))}`);
} finally {
  await browser.close();
  proxy.stop();
  rmSync(www, { recursive: true, force: true });
}
