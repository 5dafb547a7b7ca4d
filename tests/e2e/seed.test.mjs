// Seed 004's example pages, unchanged but for the proxy URL and the redacted contacts, with the
// classic script at /js/index.js: the element is returned, styled and appended by the page, and
// the callbacks fire.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startProxy, launch } from './harness.mjs';
import { SEED_PAGES, runSeedPage, classicPage as openClassicPage } from './flows.mjs';

let proxy, browser;
before(async () => {
  [proxy, browser] = await Promise.all([startProxy(), launch()]);
});
after(async () => {
  await browser?.close();
  await proxy?.stop();
});

for (const seed of SEED_PAGES) test(seed.title, () => runSeedPage(browser, proxy, seed));

const classicPage = (path, options) => openClassicPage(browser, proxy, path, options);

test('the classic script lets a page call a method at once, before the wasm is ready', async () => {
  const page = await classicPage('/immediate.html');
  await page.goto(`${proxy.proxy}/immediate.html`);
  assert.equal(await page.evaluate(() => window.result), 'IFRAME');
  await page.close();
});

test('a missing .wasm rejects every call with a QysError saying what to fix, and no fallback', async () => {
  const page = await classicPage('/missing.html');
  await page.route('**/qys_sdk_wasm_bg.wasm', (route) => route.fulfill({ status: 404, body: 'no' }));
  await page.goto(`${proxy.proxy}/missing.html`);
  const [name, kind, message] = await page.evaluate(() => window.result);
  assert.equal(name, 'QysError');
  assert.equal(kind, 'network');
  assert.match(message, /qys_sdk_wasm_bg\.wasm \(.*404/);
  assert.deepEqual(page.modules, ['qys_sdk_wasm_bg.wasm'], 'the wasm2js fallback is not fetched: it would not help');
  await page.close();
});

test('the classic script loads the .wasm again at the next call after a failure', async () => {
  const page = await classicPage('/retry.html');
  let answered = 0;
  await page.route('**/qys_sdk_wasm_bg.wasm', (route) => (answered++ === 0
    ? route.fulfill({ status: 503, body: 'busy' })
    : route.continue()));
  await page.goto(`${proxy.proxy}/retry.html`);
  const [name, kind, message] = await page.evaluate(() => window.result);
  assert.deepEqual([name, kind], ['QysError', 'network']);
  assert.match(message, /qys_sdk_wasm_bg\.wasm \(.*503/);
  assert.equal(await page.evaluate(() => window.again()), 'IFRAME');
  assert.deepEqual(page.modules, ['qys_sdk_wasm_bg.wasm', 'qys_sdk_wasm_bg.wasm']);
  await page.close();
});

test('the CSP the README lists is enough; without wasm-unsafe-eval the SDK runs on its wasm2js fallback', async () => {
  const sandbox = proxy.sandbox;
  const policy = (script) => `default-src 'none'; script-src ${script}; connect-src 'self'; frame-src ${sandbox}`;
  const cases = [
    [policy(`'self' 'unsafe-inline' 'wasm-unsafe-eval'`), 'IFRAME', ['qys_sdk_wasm_bg.wasm']],
    // WebAssembly refuses to compile the fetched module: the fallback takes over.
    [policy(`'self' 'unsafe-inline'`), 'IFRAME', ['qys_sdk_wasm_bg.wasm', 'qys_sdk_wasm2js.js']],
    // Nor may the fallback run (Chromium blocks its request): the SDK says which file to allow.
    [policy(`'unsafe-inline' ${proxy.proxy}/js/index.js`), /^QysError network the SDK could not load \S+\/js\/qys_sdk_wasm2js\.js /,
      ['qys_sdk_wasm_bg.wasm', 'qys_sdk_wasm2js.js']],
  ];
  for (const [csp, expected, modules] of cases) {
    const page = await classicPage('/csp.html', { headers: { 'content-security-policy': csp } });
    await page.goto(`${proxy.proxy}/csp.html`);
    const result = await page.evaluate(() => window.result);
    if (expected instanceof RegExp) assert.match(result.join(' '), expected, csp);
    else assert.equal(result, expected, csp);
    assert.deepEqual(page.modules, modules, csp);
    await page.close();
  }
});

test('without AbortController (Chrome < 66, Safari < 12.1) calls still resolve and time out', async () => {
  const page = await classicPage('/old-engine.html');
  await page.addInitScript(() => { delete window.AbortController; });
  await page.route('**/hang', () => {}); // never answered
  await page.goto(`${proxy.proxy}/old-engine.html`);
  assert.equal(await page.evaluate(() => typeof AbortController), 'undefined');
  assert.equal(await page.evaluate(() => window.result), 'IFRAME');
  const timedOut = await page.evaluate(() => new qysSdk('/hang', { timeoutMs: 300 }).personalAuth({ contact: '13900000058' })
    .then((el) => el.tagName, (e) => [e.kind, e.message]));
  assert.deepEqual(timedOut, ['timeout', 'the proxy did not answer within 300 ms']);
  // destroy() while a request is in flight (fetch cannot be aborted here): the call still rejects.
  let arrived;
  const inFlight = new Promise((resolve) => { arrived = resolve; });
  await page.route('**/hang-then-destroy', () => arrived());
  const destroyed = page.evaluate(() => {
    window.late = new qysSdk('/hang-then-destroy', { timeoutMs: 600000 });
    return window.late.personalAuth({ contact: '13900000059' }).then((el) => el.tagName, (e) => [e.kind, e.message]);
  });
  await inFlight;
  await page.evaluate(() => window.late.destroy());
  const pending = new Promise((resolve) => setTimeout(resolve, 10000, 'still pending after 10 s'));
  assert.deepEqual(await Promise.race([destroyed, pending]), ['invalidArgument', 'this qysSdk instance was destroyed']);
  await page.close();
});

test('a fallback that fails after the engine refused the .wasm reports both reasons', async () => {
  // A page served in place of both files (an SPA's index.html): the .wasm is not WebAssembly.
  const page = await classicPage('/spa.html');
  await page.route('**/qys_sdk_wasm*', (route) => route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><p>app' }));
  await page.goto(`${proxy.proxy}/spa.html`);
  const [name, kind, message] = await page.evaluate(() => window.result);
  assert.deepEqual([name, kind], ['QysError', 'network']);
  assert.match(message, /qys_sdk_wasm2js\.js \(it did not run\) after .*qys_sdk_wasm_bg\.wasm \(.*magic/);
  await page.close();
});
