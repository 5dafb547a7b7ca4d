// The demo page's flows and seed 004's example pages, clicked through the sandbox: shared by the
// runs with WebAssembly (demo.test.mjs, seed.test.mjs) and without it (nowasm.test.mjs), which
// must behave exactly alike.
import assert from 'node:assert/strict';
import { drain } from './harness.mjs';

/** A page in a new context (`options`: viewport, user agent…). With `wasm: false`, WebAssembly
 * is deleted before the page's scripts run, as in iOS Lockdown Mode. `page.modules` lists the
 * SDK module files the page fetched. */
export async function newPage(browser, { wasm = true, ...options } = {}) {
  const page = await browser.newPage(options);
  if (!wasm) await page.addInitScript(() => { delete window.WebAssembly; });
  page.modules = [];
  page.on('request', (r) => {
    const file = new URL(r.url()).pathname.split('/').pop();
    if (file.startsWith('qys_sdk_wasm')) page.modules.push(file);
  });
  return page;
}

/** What a page loads the SDK from: the .wasm, or the wasm2js fallback where there is none. */
export const moduleFile = (wasm) => (wasm ? 'qys_sdk_wasm_bg.wasm' : 'qys_sdk_wasm2js.js');

/** Opens the demo page of `server`, counting what reaches the proxy endpoint; `prepare(page)`
 * runs before it loads. */
export async function openDemo(browser, server, options, prepare = async () => {}) {
  const page = await newPage(browser, options);
  await prepare(page);
  const proxyCalls = [];
  page.sdkLog = [];
  page.errors = [];
  page.on('console', (m) => { if (m.text().startsWith('[qys-sdk]')) page.sdkLog.push(m.text()); });
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/qys/proxy') proxyCalls.push({ method: r.method(), url: r.url() });
  });
  await page.goto(`${server.proxy}/`);
  await page.waitForSelector('body[data-ready=true]');
  return { page, proxyCalls };
}

/** After `drain` from the flow's frame: no listener of the SDK saw the marker (it would log it
 * as ignored, or throw if its closure were freed), so the flow stopped listening at its terminal
 * event and nothing can fire again, however late a message comes. */
export function assertStoppedListening(page) {
  assert.deepEqual([...page.sdkLog.filter((l) => l.includes('ignored a message')), ...page.errors], [],
    'the flow stopped listening');
}

/** The Playwright frame of the iframe `selector`, at its current page. */
export async function frameOf(page, selector = '#qys-frame') {
  return (await page.$(selector)).contentFrame();
}

export async function events(page) {
  return page.$$eval('#events li', (lis) => lis.map((li) => ({ event: li.dataset.event, text: li.textContent })));
}

/** The demo page's flows: the form fields to fill, the button, what to click in the sandbox
 * page, the one callback. */
export const DEMO_FLOWS = [
  { title: 'personalSign: sign → signSuccess once', button: 'personalSign', click: ['#qys-sandbox-sign'],
    expected: { event: 'signSuccess', payload: { contractId: '2603417854124281870' } } },
  { title: 'enterpriseSign: sign → signSuccess once', button: 'enterpriseSign', click: ['#qys-sandbox-sign'],
    expected: { event: 'signSuccess', payload: { contractId: '2603417854124281870' } } },
  { title: 'personalAuth: submit → authSuccess with userInfo from the platform', button: 'personalAuth',
    click: ['#qys-sandbox-auth-submit'],
    expected: { event: 'authSuccess', payload: { username: '李雷', mobile: '13900000001', cardNo: '110101199303033456' } } },
  { title: 'enterpriseAuth: submit → authSuccess with the company', button: 'enterpriseAuth', click: ['#qys-sandbox-auth-submit'],
    expected: { event: 'authSuccess', payload: { name: '杭州演示科技有限公司', registerNo: '91330100MA2B000009', legalPerson: '韩梅梅' } } },
  { title: 'personalSign by an unauthenticated signer: exit → authFail once', button: 'personalSign',
    fill: { contractId: '2603417854124281871', signContact: '13900000066' }, click: ['#qys-sandbox-exit'],
    expected: { event: 'authFail' } },
];

/** Runs one of DEMO_FLOWS on the demo page of `server`. */
export async function runDemoFlow(browser, server, { button, fill = {}, click, expected }, { wasm = true } = {}) {
  const { page, proxyCalls } = await openDemo(browser, server, { wasm });
  for (const [id, value] of Object.entries(fill)) await page.fill(`#${id}`, value);
  await page.click(`#${button}`);
  const frame = page.frameLocator('#qys-frame');
  for (const id of click) await frame.locator(id).click();
  await page.waitForSelector('#events li');
  await drain(page, await frameOf(page)); // a second callback would have fired by now
  assertStoppedListening(page);
  const seen = await events(page);
  assert.equal(seen.length, 1, JSON.stringify(seen));
  assert.equal(seen[0].event, expected.event);
  if (expected.payload) assert.deepEqual(JSON.parse(seen[0].text.slice(expected.event.length + 1)), expected.payload);
  assert.deepEqual(proxyCalls.map((c) => c.method), ['POST'], 'one request per call, no preflight');
  assert.match(proxyCalls[0].url, /\?a=1&token=ab1234$/, 'the page query travels with the request');
  assert.deepEqual(page.modules, [moduleFile(wasm)]);
  await page.close();
}

/** Seed 004's four example pages: what to do in the sandbox page, what the page logs once. */
export const SEED_PAGES = [
  { title: 'seed personalSign page', path: '/seed/personal-sign.html',
    steps: (f) => f.locator('#qys-sandbox-sign').click(), expected: ['签署成功'] },
  { title: 'seed enterpriseSign page', path: '/seed/enterprise-sign.html',
    steps: (f) => f.locator('#qys-sandbox-sign').click(), expected: ['签署成功'] },
  { title: 'seed personalAuth page (BANK)', path: '/seed/personal-auth.html', steps: async (f) => {
    await f.locator('#qys-sandbox-username').fill('赵');
    await f.locator('#qys-sandbox-idCardNo').fill('110101199001011111');
    await f.locator('#qys-sandbox-bankNo').fill('6222020000000001');
    await f.locator('#qys-sandbox-bankMobile').fill('13900000049');
    await f.locator('#qys-sandbox-auth-submit').click();
  }, expected: ['认证成功 :', { username: '赵', mobile: '13900000041', cardNo: '110101199001011111', bankNo: '6222020000000001', contact: '13900000049' }] },
  { title: 'seed enterpriseAuth page', path: '/seed/enterprise-auth.html', steps: async (f) => {
    await f.locator('#qys-sandbox-registerNo').fill('91330100MA2B000077');
    await f.locator('#qys-sandbox-legalPerson').fill('钱');
    await f.locator('#qys-sandbox-auth-submit').click();
  }, expected: ['认证成功 :', { name: '自测JSSDK企业认证x', registerNo: '91330100MA2B000077', legalPerson: '钱' }] },
];

/** Runs one of SEED_PAGES on `server`, with outside requests (the seed's vConsole) refused
 * locally: the element is returned, styled and appended by the page, and the callback fires. */
export async function runSeedPage(browser, server, { path, steps, expected }, { wasm = true } = {}) {
  const page = await newPage(browser, { wasm });
  // Each console call's arguments: a promise each, in the order of the calls.
  const logs = [];
  const types = {};
  const errors = [];
  page.on('console', (m) => logs.push(Promise.all(m.args().map((a) => a.jsonValue().catch(() => null)))));
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('response', (r) => { types[new URL(r.url()).pathname] = r.headers()['content-type']; });
  await page.route('**/*', (route) => {
    const host = new URL(route.request().url()).hostname;
    return host === '127.0.0.1' ? route.continue() : route.abort();
  });
  await page.goto(`${server.proxy}${path}`);
  const frame = await page.waitForSelector('iframe');
  const style = await frame.evaluate((f) => ({ border: f.style.border, position: f.style.position, parent: f.parentElement.tagName }));
  assert.deepEqual(style, { border: '1px solid red', position: 'fixed', parent: 'BODY' });
  const fired = page.waitForEvent('console', (m) => m.text().startsWith(expected[0]));
  await steps(page.frameLocator('iframe'));
  await fired;
  await drain(page, await frame.contentFrame()); // a second callback would have fired by now
  // The marker reached no listener of the flow's (a freed one would have thrown).
  assert.deepEqual(errors, []);
  const logged = await Promise.all(logs);
  const hits = logged.filter((l) => l[0] === expected[0]);
  assert.equal(hits.length, 1, JSON.stringify(logged));
  assert.deepEqual(hits[0], expected);
  assert.match(types['/js/index.js'], /javascript/);
  assert.deepEqual(page.modules, [moduleFile(wasm)]);
  assert.match(types[`/js/${moduleFile(wasm)}`], wasm ? /^application\/wasm$/ : /javascript/);
  await page.close();
}

/** A page at `path` on `server` that loads the classic script and calls `personalAuth` at once
 * (seed 004's pattern); `window.result` is the element's tag name or the error's [name, kind,
 * message], and `window.again()` makes the same call once more. */
export async function classicPage(browser, server, path, { headers = {}, wasm = true } = {}) {
  const page = await newPage(browser, { wasm });
  await page.route(`${server.proxy}${path}`, (route) => route.fulfill({
    contentType: 'text/html',
    headers,
    body: `<!doctype html><script src=/js/index.js></script><script>
      var sdk = new qysSdk('/qys/proxy');
      function call(contact) {
        return sdk.personalAuth({ contact: contact })
          .then(function (el) { return el.tagName; }, function (e) { return [e.name, e.kind, e.message]; });
      }
      window.result = call('13900000052');
      window.again = function () { return call('13900000057'); };
    </script>`,
  }));
  return page;
}
