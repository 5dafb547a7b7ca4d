// Server-side rendering: importing the package touches no `window`, and neither does
// constructing an instance with an absolute proxy URL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { root } from './harness.mjs';

test('the shipped ES module imports and constructs without a window', async () => {
  assert.equal(typeof globalThis.window, 'undefined');
  const mod = await import(join(root, 'dist/qys-sdk.mjs'));
  assert.equal(typeof mod.qysSdk, 'function');
  assert.equal(mod.default, mod.qysSdk);
  const sdk = new mod.qysSdk('/relative/needs/a/page', {});
  assert.equal(typeof sdk.personalSign, 'function');
  sdk.destroy();
});

test('import and construct without a window', async () => {
  assert.equal(typeof globalThis.window, 'undefined');
  const mod = await import(join(root, 'pkg/index.js'));
  assert.equal(typeof mod.qysSdk, 'function');
  assert.equal(mod.qysSdk, mod.QysSdk);
  mod.initSync({ module: readFileSync(join(root, 'pkg/qys_sdk_wasm_bg.wasm')) });
  const sdk = new mod.qysSdk('http://127.0.0.1:1/qys/proxy', { query: { a: 1 } });
  assert.equal(typeof sdk.personalSign, 'function');
  assert.throws(() => new mod.qysSdk('/relative', {}), (e) => e.name === 'QysError' && e.kind === 'invalidArgument');
  // A bad argument still rejects with a typed error, without touching the network.
  await assert.rejects(sdk.personalSign('1', '137******44', {}), (e) => e.kind === 'invalidArgument' && e.param === 'contact');
});
