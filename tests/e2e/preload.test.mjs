// The README's preload tags in Chromium: the SDK's own fetch of the .wasm takes the preloaded
// response (one download), for the ES module and for the classic script; without `crossorigin`
// the preload does not match and the .wasm is downloaded twice, which shows the count can tell.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root, startProxy, launch } from './harness.mjs';

const readme = readFileSync(join(root, 'README.md'), 'utf8');
const tags = /```html\n(<link rel="modulepreload"[^\n]*>\n<link rel="preload"[^\n]*>)\n```/.exec(readme)?.[1];
const wasmTag = tags?.split('\n')[1];
const WASM = '/js/qys_sdk_wasm_bg.wasm';

const call = `.personalAuth({ contact: '13900000061' })
  .then(function (el) { window.result = el.tagName; }, function (e) { window.result = e.name + ' ' + e.message; });`;
const pages = {
  module: () => `${tags}\n<script type="module">import { qysSdk } from '/js/qys-sdk.mjs'; new qysSdk('/qys/proxy')${call}</script>`,
  classic: () => `${wasmTag}\n<script src="/js/index.js"></script><script>new qysSdk('/qys/proxy')${call}</script>`,
  'no-crossorigin': () => `${wasmTag.replace(' crossorigin', '')}\n<script src="/js/index.js"></script><script>new qysSdk('/qys/proxy')${call}</script>`,
};

let proxy, browser, www;
before(async () => {
  assert.ok(tags, 'the README shows the two preload tags in an html block');
  assert.ok(wasmTag.includes(`href="${WASM}"`) && wasmTag.includes(' crossorigin'), wasmTag);
  www = mkdtempSync(join(tmpdir(), 'qys-preload-'));
  for (const [name, body] of Object.entries(pages)) {
    writeFileSync(join(www, `${name}.html`), `<!doctype html>\n<link rel="icon" href="data:,">\n${body()}\n`);
  }
  [proxy, browser] = await Promise.all([startProxy({ QYS_WWW_DIR: www }), launch()]);
});
after(async () => {
  await browser?.close();
  await proxy?.stop();
  if (www) rmSync(www, { recursive: true, force: true });
});

/** Loads the page in a fresh context; the number of .wasm downloads once the call has resolved
 * and the page (its preloads included) has loaded. */
async function downloads(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  let count = 0;
  page.on('request', (r) => { if (new URL(r.url()).pathname === WASM) count++; });
  await page.goto(`${proxy.proxy}/${name}.html`, { waitUntil: 'load' });
  assert.equal(await page.waitForFunction(() => window.result).then((h) => h.jsonValue()), 'IFRAME');
  await context.close();
  return count;
}

test('with the README\'s tags the ES module downloads the .wasm once', async () => {
  assert.equal(await downloads('module'), 1);
});

test('with the README\'s .wasm tag the classic script downloads it once', async () => {
  assert.equal(await downloads('classic'), 1);
});

test('without crossorigin the preload is not used: two downloads', async () => {
  assert.equal(await downloads('no-crossorigin'), 2);
});
