// Server-side rendering: the shipped ES module imported and called in Node, which has no
// `window`. Each call rejects with a `QysError` (no ReferenceError, nothing thrown at import or
// construction) and sends nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { root } from './harness.mjs';

const entry = pathToFileURL(join(root, 'dist/qys-sdk.mjs')).href;
const wasmUrl = new URL('qys_sdk_wasm_bg.wasm', entry).href;
const CONTRACT = '2603417854124281870';

/** A fresh copy of the module: each one loads its own .wasm on its first call. */
async function importFresh(tag) {
  assert.equal(typeof globalThis.window, 'undefined');
  return import(`${entry}?${tag}`);
}

test('Node: the .wasm cannot be fetched from file:, so a call rejects with the loading error', async () => {
  const { qysSdk } = await importFresh('node');
  const sdk = new qysSdk('http://127.0.0.1:1/qys/proxy');
  await assert.rejects(sdk.personalSign(CONTRACT, '13700000044'), (e) =>
    e.name === 'QysError' && e.kind === 'network' && e.message.includes(wasmUrl));
});

test('a server runtime whose fetch reads file: (Deno, Bun): the wasm loads, and calls reject without a window', async (t) => {
  const fetched = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (input) => {
    const url = String(input);
    fetched.push(url);
    if (!url.startsWith('file:')) throw new TypeError(`unexpected request to ${url}`);
    return new Response(await readFile(fileURLToPath(url)), { headers: { 'content-type': 'application/wasm' } });
  };
  t.after(() => { globalThis.fetch = realFetch; });
  const mod = await importFresh('file-fetch');
  assert.equal(mod.default, mod.qysSdk);
  assert.equal(mod.QysSdk, mod.qysSdk);

  const sdk = new mod.qysSdk('http://127.0.0.1:1/qys/proxy', { query: { a: 1 } });
  await assert.rejects(sdk.personalSign(CONTRACT, '13700000044', {}), (e) =>
    e.name === 'QysError' && e.kind === 'network' && e.message === 'window is not available on this page');
  // Arguments are still checked first: a bad one is named.
  await assert.rejects(sdk.personalSign(CONTRACT, '137******44', {}), (e) =>
    e.name === 'QysError' && e.kind === 'invalidArgument' && e.param === 'contact');
  // A relative proxy URL has no page to resolve against.
  await assert.rejects(new mod.qysSdk('/qys/proxy').personalAuth({ contact: '13700000044' }), (e) =>
    e.name === 'QysError' && e.kind === 'invalidArgument' && e.param === 'proxyUrl');
  // resume() has no page URL to look at and no storage: nothing to resume.
  assert.equal(await sdk.resume({}), null);
  sdk.destroy();
  assert.deepEqual(fetched, [wasmUrl], 'the .wasm, once; no request to the proxy');
});
