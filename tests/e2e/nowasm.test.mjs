// Without WebAssembly (iOS Lockdown Mode, JIT-less webviews; here Chromium with WebAssembly deleted
// before the page's scripts run) both entries run on the wasm2js fallback, dist/qys_sdk_wasm2js.js,
// and behave exactly as with wasm: the demo page's flows (ES module), seed 004's pages (classic
// script), every error kind, a call that grows memory. A fallback that fails to load is reported
// and loaded again at the next call. (A CSP that refuses wasm is in seed.test.mjs.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startProxy, startFaults, launch, root } from './harness.mjs';
import { DEMO_FLOWS, SEED_PAGES, runDemoFlow, runSeedPage, openDemo, events, classicPage, moduleFile } from './flows.mjs';

// Two sandboxes: the demo flows and seed 004's pages sign the same contract.
let proxy, seedProxy, faults, browser;
before(async () => {
  [proxy, seedProxy, faults, browser] = await Promise.all([startProxy(), startProxy(), startFaults(), launch()]);
});
after(async () => {
  await browser?.close();
  await proxy?.stop();
  await seedProxy?.stop();
  await faults?.stop();
});

for (const flow of DEMO_FLOWS) {
  test(`without WebAssembly, demo page: ${flow.title}`, () => runDemoFlow(browser, proxy, flow, { wasm: false }));
}

for (const seed of SEED_PAGES) {
  test(`without WebAssembly, ${seed.title} (classic script)`, () => runSeedPage(browser, seedProxy, seed, { wasm: false }));
}

/** Each call's outcome on the demo page: the resolved element's tag (or value), or the
 * rejection's fields. Every error kind is provoked at least once. */
function outcomes(page) {
  return page.evaluate(async (faults) => {
    const Q = window.qysDemo.qysSdk;
    const proxy = '/qys/proxy';
    const destroyed = new Q(proxy);
    destroyed.destroy();
    const cases = {
      maskedContact: () => new Q(proxy).personalSign('2603417854124281870', '137******44'),
      badContractId: () => new Q(proxy).personalSign('12ab', '13700000044'),
      unsafeNumber: () => new Q(proxy).personalSign(2603417854124281870, '13700000044'),
      nonFinite: () => new Q(proxy).personalSign(Infinity, '13700000044'),
      callbackNotAFunction: () => new Q(proxy).personalSign('2603417854124281870', '13700000044', { signSuccessCb: 'x' }),
      badMode: () => new Q(proxy).personalAuth({ mode: 'IVS', contact: '13700000044' }),
      nestedParam: () => new Q(proxy).enterpriseAuth({ companyName: '甲', companyAuthBean: { applicant: { contact: '1' } } }),
      badOption: () => new Q(proxy, { timeoutMs: -1 }).personalAuth({ contact: '13900000061' }),
      badProxyUrl: () => new Q('ftp://x/').personalAuth({ contact: '13900000061' }),
      badPresentation: () => new Q(proxy).personalAuth({ contact: '13900000061' }, { presentation: 'popup' }),
      destroyed: () => destroyed.personalAuth({ contact: '13900000061' }),
      unreachable: () => new Q('http://127.0.0.1:9/qys/proxy').personalSign('1', '13700000044'),
      noWeChat: () => new Q(proxy).enterpriseSign('1', '13700000044', { presentation: 'miniProgram' }),
      timeout: () => new Q(`${faults}/hang`, { timeoutMs: 300 }).personalSign('1', '13700000044'),
      http500: () => new Q(`${faults}/status500`).personalSign('1', '13700000044'),
      garbage: () => new Q(`${faults}/garbage`).personalSign('1', '13700000044'),
      platform1110: () => new Q(proxy).personalSign('2603417854124281870', '13911112222'),
      platform1605: () => new Q(proxy).enterpriseAuth({ companyName: '上海示例科技有限公司', companyAuthBean: { applicant: { contact: '13800000055' } } }),
      bigIntContractId: () => new Q(proxy).personalSign(BigInt('2603417854124281872'), '13700000044'),
      resumeNothing: () => new Q(proxy).resume(),
    };
    const out = {};
    for (const [name, call] of Object.entries(cases)) {
      out[name] = await call().then(
        (value) => ({ resolved: value && value.tagName ? value.tagName : value }),
        (e) => ({ name: e.name, kind: e.kind, code: e.code, param: e.param, message: e.message }),
      );
    }
    return out;
  }, faults.url);
}

test('without WebAssembly, every error kind is the same QysError as with wasm', async () => {
  const seen = {};
  for (const wasm of [true, false]) {
    const { page } = await openDemo(browser, proxy, { wasm });
    seen[wasm] = await outcomes(page);
    assert.deepEqual(page.modules, [moduleFile(wasm)]);
    await page.close();
  }
  assert.deepEqual(seen[false], seen[true]);
  const kinds = new Set(Object.values(seen[true]).map((o) => o.kind).filter(Boolean));
  assert.deepEqual([...kinds].sort(), ['http', 'invalidArgument', 'network', 'platform', 'protocol', 'timeout']);
  assert.deepEqual(seen[true].http500.code, 500);
  assert.deepEqual(seen[true].platform1605.code, 1605);
  assert.deepEqual(seen[true].bigIntContractId, { resolved: 'IFRAME' });
});

test('without WebAssembly, a call that grows memory by 4 MiB answers as with wasm, and the next call works', async () => {
  // The module's initial memory (a WebAssembly.Memory's pages, read here in Node): 4 MiB more
  // than it can only be held after memory.grow, which wasm2js does with a new ArrayBuffer.
  const module = new WebAssembly.Module(readFileSync(join(root, 'dist/qys_sdk_wasm_bg.wasm')));
  const imports = {};
  for (const i of WebAssembly.Module.imports(module)) (imports[i.module] ??= {})[i.name] = () => {};
  const exports = new WebAssembly.Instance(module, imports).exports;
  const initial = exports[WebAssembly.Module.exports(module).find((e) => e.kind === 'memory').name].buffer.byteLength;
  assert.ok(initial < 4 << 20, `initial memory ${initial} B`);
  const seen = {};
  for (const wasm of [true, false]) {
    const { page } = await openDemo(browser, proxy, { wasm });
    seen[wasm] = await page.evaluate(async () => {
      const sdk = window.qysDemo.sdk;
      const tag = (el) => el.tagName;
      const before = await sdk.personalAuth({ contact: '13900000062' }).then(tag);
      // Passed in and, inside the error message, read back out.
      const url = `ftp://x/${'a'.repeat(4 << 20)}`;
      const grown = await new window.qysDemo.qysSdk(url).personalAuth({ contact: '13900000063' }).then(tag,
        (e) => [e.kind, e.param, e.message === `proxyUrl "${url}" must be an http(s) URL`]);
      const after = await sdk.personalAuth({ contact: '13900000064' }).then(tag);
      return [before, grown, after];
    });
    assert.deepEqual(page.modules, [moduleFile(wasm)]);
    await page.close();
  }
  assert.deepEqual(seen[true], ['IFRAME', ['invalidArgument', 'proxyUrl', true], 'IFRAME']);
  assert.deepEqual(seen[false], seen[true]);
});

test('without WebAssembly, a fallback that fails to load is reported and loaded again at the next call', async () => {
  let answered = 0;
  const busyOnce = (route) => (answered++ === 0 ? route.fulfill({ status: 503, body: 'busy' }) : route.continue());

  // The classic script.
  const page = await classicPage(browser, proxy, '/retry.html', { wasm: false });
  await page.route('**/qys_sdk_wasm2js.js', busyOnce);
  await page.goto(`${proxy.proxy}/retry.html`);
  const [name, kind, message] = await page.evaluate(() => window.result);
  assert.deepEqual([name, kind], ['QysError', 'network']);
  assert.match(message, /^the SDK could not load http:\S+\/js\/qys_sdk_wasm2js\.js \(/);
  assert.equal(await page.evaluate(() => window.again()), 'IFRAME');
  assert.deepEqual(page.modules, ['qys_sdk_wasm2js.js', 'qys_sdk_wasm2js.js']);
  await page.close();

  // The ES module: the demo page's resume() at load fails, its next call loads the fallback.
  answered = 0;
  const demo = await openDemo(browser, proxy, { wasm: false }, (p) => p.route('**/qys_sdk_wasm2js.js', busyOnce));
  await demo.page.waitForSelector('#events li');
  const [failed] = await events(demo.page);
  assert.equal(failed.event, 'error');
  assert.match(failed.text, /"kind":"network".*qys_sdk_wasm2js\.js/);
  await demo.page.click('#personalAuth');
  await demo.page.frameLocator('#qys-frame').locator('#qys-sandbox-auth-submit').waitFor();
  assert.deepEqual(demo.page.modules, ['qys_sdk_wasm2js.js', 'qys_sdk_wasm2js.js']);
  await demo.page.close();
});
