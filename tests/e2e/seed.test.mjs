// Seed 004's example pages, unchanged but for the proxy URL and the redacted contacts, with the
// classic script at /js/index.js: the element is returned, styled and appended by the page, and
// the callbacks fire.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startProxy, launch, drain } from './harness.mjs';

let proxy, browser;
before(async () => {
  [proxy, browser] = await Promise.all([startProxy(), launch()]);
});
after(async () => {
  await browser?.close();
  proxy?.stop();
});

/** Opens a page on the proxy with outside requests (the seed's vConsole) refused locally.
 * `logs` holds each console call's arguments (a promise each, in the order of the calls). */
async function openSeed(path) {
  const page = await browser.newPage();
  const logs = [];
  const types = {};
  page.errors = [];
  page.on('console', (m) => logs.push(Promise.all(m.args().map((a) => a.jsonValue().catch(() => null)))));
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('response', (r) => { types[new URL(r.url()).pathname] = r.headers()['content-type']; });
  await page.route('**/*', (route) => {
    const host = new URL(route.request().url()).hostname;
    return host === '127.0.0.1' ? route.continue() : route.abort();
  });
  await page.goto(`${proxy.proxy}${path}`);
  return { page, logs, types };
}

async function run(path, steps, expected) {
  const { page, logs, types } = await openSeed(path);
  const frame = await page.waitForSelector('iframe', { timeout: 10000 });
  const style = await frame.evaluate((f) => ({ border: f.style.border, position: f.style.position, parent: f.parentElement.tagName }));
  assert.deepEqual(style, { border: '1px solid red', position: 'fixed', parent: 'BODY' });
  const fired = page.waitForEvent('console', (m) => m.text().startsWith(expected[0]));
  await steps(page.frameLocator('iframe'));
  await fired;
  await drain(page, await frame.contentFrame()); // a second callback would have fired by now
  // The marker reached no listener of the flow's (a freed one would have thrown).
  assert.deepEqual(page.errors, []);
  const logged = await Promise.all(logs);
  const hits = logged.filter((l) => l[0] === expected[0]);
  assert.equal(hits.length, 1, JSON.stringify(logged));
  assert.deepEqual(hits[0], expected);
  assert.match(types['/js/index.js'], /javascript/);
  assert.equal(types['/js/qys_sdk_wasm_bg.wasm'], 'application/wasm');
  await page.close();
}

test('seed personalSign page', () =>
  run('/seed/personal-sign.html', (f) => f.locator('#qys-sandbox-sign').click(), ['签署成功']));

test('seed enterpriseSign page', () =>
  run('/seed/enterprise-sign.html', (f) => f.locator('#qys-sandbox-sign').click(), ['签署成功']));

test('seed personalAuth page (BANK)', () =>
  run('/seed/personal-auth.html', async (f) => {
    await f.locator('#qys-sandbox-username').fill('赵');
    await f.locator('#qys-sandbox-idCardNo').fill('110101199001011111');
    await f.locator('#qys-sandbox-bankNo').fill('6222020000000001');
    await f.locator('#qys-sandbox-bankMobile').fill('13900000049');
    await f.locator('#qys-sandbox-auth-submit').click();
  }, ['认证成功 :', { username: '赵', mobile: '13900000041', cardNo: '110101199001011111', bankNo: '6222020000000001', contact: '13900000049' }]));

test('seed enterpriseAuth page', () =>
  run('/seed/enterprise-auth.html', async (f) => {
    await f.locator('#qys-sandbox-registerNo').fill('91330100MA2B000077');
    await f.locator('#qys-sandbox-legalPerson').fill('钱');
    await f.locator('#qys-sandbox-auth-submit').click();
  }, ['认证成功 :', { name: '自测JSSDK企业认证x', registerNo: '91330100MA2B000077', legalPerson: '钱' }]));

test('the classic script lets a page call a method at once, before the wasm is ready', async () => {
  const page = await browser.newPage();
  await page.route(`${proxy.proxy}/immediate.html`, (route) => route.fulfill({
    contentType: 'text/html',
    body: `<!doctype html><script src=/js/index.js></script><script>
      window.result = new qysSdk('/qys/proxy').personalAuth({ contact: '13900000051' })
        .then(function (el) { return el.tagName; }, function (e) { return e.name + ' ' + e.message; });
    </script>`,
  }));
  await page.goto(`${proxy.proxy}/immediate.html`);
  assert.equal(await page.evaluate(() => window.result), 'IFRAME');
  await page.close();
});

test('a missing .wasm rejects every call with a QysError saying what to fix', async () => {
  const page = await browser.newPage();
  await page.route('**/qys_sdk_wasm_bg.wasm', (route) => route.fulfill({ status: 404, body: 'no' }));
  await page.route(`${proxy.proxy}/missing.html`, (route) => route.fulfill({
    contentType: 'text/html',
    body: `<!doctype html><script src=/js/index.js></script><script>
      window.result = new qysSdk('/qys/proxy').personalAuth({ contact: '13900000052' })
        .then(function () { return 'resolved'; }, function (e) { return [e.name, e.kind, e.message]; });
    </script>`,
  }));
  await page.goto(`${proxy.proxy}/missing.html`);
  const [name, kind, message] = await page.evaluate(() => window.result);
  assert.equal(name, 'QysError');
  assert.equal(kind, 'network');
  assert.match(message, /qys_sdk_wasm_bg\.wasm/);
  await page.close();
});

test('the CSP the README lists is enough, and without wasm-unsafe-eval the SDK says so', async () => {
  const page = await browser.newPage();
  const html = `<!doctype html><script src=/js/index.js></script><script>
    window.result = new qysSdk('/qys/proxy').personalAuth({ contact: '13900000053' })
      .then(function (el) { return el.tagName; }, function (e) { return e.name + ' ' + e.kind; });
  </script>`;
  const serve = (csp) => (route) => route.fulfill({ contentType: 'text/html', headers: { 'content-security-policy': csp }, body: html });
  const sandbox = proxy.sandbox;
  await page.route(`${proxy.proxy}/csp-ok.html`, serve(`default-src 'none'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; connect-src 'self'; frame-src ${sandbox}`));
  await page.route(`${proxy.proxy}/csp-no-wasm.html`, serve(`default-src 'none'; script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-src ${sandbox}`));
  await page.goto(`${proxy.proxy}/csp-ok.html`);
  assert.equal(await page.evaluate(() => window.result), 'IFRAME');
  await page.goto(`${proxy.proxy}/csp-no-wasm.html`);
  assert.equal(await page.evaluate(() => window.result), 'QysError network');
  await page.close();
});
