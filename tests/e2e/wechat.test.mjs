// The WeChat presentations in headless Chromium against the real proxy and sandbox: the full-page
// redirect (iOS WeChat) with resume(), and the mini-program path. WeChat itself cannot run here:
// the mini-program tests stand in for it with a test double of `wx.miniProgram` (it records
// navigateTo) and of the page being hidden and shown (document.hidden), and open the sandbox's
// emulated plugin page with the recorded ticket, as the mini-program would.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProxy as startBareProxy, launch } from './harness.mjs';

export const IOS_WECHAT = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) '
  + 'Mobile/15E148 MicroMessenger/8.0.50(0x1800323a) NetType/WIFI Language/zh_CN';
const ANDROID_MINI_PROGRAM = 'Mozilla/5.0 (Linux; Android 13; PGT-AN10; wv) AppleWebKit/537.36 (KHTML, like Gecko) '
  + 'Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160117 MicroMessenger/8.0.49.2600(0x28003133) '
  + 'WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64 miniProgram/wx0123456789abcdef';

// An integrator's page, served by the proxy (its own origin is always allowed): resume() on every load, callbacks counted.
const PAGE = `<!doctype html><meta charset=utf-8><title>shop</title><body><script type="module">
  import { qysSdk } from '/js/qys-sdk.mjs';
  const sdk = new qysSdk('/qys/proxy', { debug: true });
  const fired = [];
  const callbacks = {
    signSuccessCb: (data) => fired.push(['signSuccess', data]),
    authSuccessCb: (data) => fired.push(['authSuccess', data]),
    authFailCb: (...args) => fired.push(['authFail', ...args]),
  };
  Object.assign(window, { sdk, fired, callbacks });
  // With ?manual the test calls resume() itself.
  if (!new URLSearchParams(location.search).has('manual')) {
    window.resumed = sdk.resume(callbacks).then((value) => ({ value }), (e) => ({ error: { name: e.name, kind: e.kind, message: e.message } }));
    window.resumed.then((r) => { window.resumedResult = r; });
  }
  document.body.dataset.ready = 'true';
</script>`;

// The same page with seed 004's classic script (window.qysSdk) instead of the ES module.
const CLASSIC_PAGE = PAGE.replace('<script type="module">', '<script src="/js/index.js"></script><script>')
  .replace("import { qysSdk } from '/js/qys-sdk.mjs';\n", '');

// Test doubles of what WeChat provides in a mini-program web-view; fetch is counted so that
// "once" is checked by the absence of any further proxy request.
const MINI_PROGRAM_INIT = () => {
  window.__wxjs_environment = 'miniprogram';
  window.navigations = [];
  window.wx = { miniProgram: { navigateTo(options) { window.navigations.push(options.url); } } };
  window.hiddenNow = false;
  Object.defineProperty(Document.prototype, 'hidden', { get: () => window.hiddenNow, configurable: true });
  Object.defineProperty(Document.prototype, 'visibilityState', { get: () => (window.hiddenNow ? 'hidden' : 'visible'), configurable: true });
  window.setHidden = (hidden) => { window.hiddenNow = hidden; document.dispatchEvent(new Event('visibilitychange')); };
};
const COUNT_PROXY_CALLS = () => {
  window.proxyCalls = 0;
  const fetch = window.fetch;
  window.fetch = function (url) {
    if (String(url).includes('/qys/proxy')) window.proxyCalls++;
    return fetch.apply(this, arguments);
  };
};

/** The proxy and sandbox, serving the integrator's page at /shop.html (a real file: the browser
 * comes back to it through redirects, which Playwright's routing does not see). */
async function startProxy() {
  const www = mkdtempSync(join(tmpdir(), 'qys-shop-'));
  writeFileSync(join(www, 'shop.html'), PAGE);
  writeFileSync(join(www, 'classic.html'), CLASSIC_PAGE);
  return startBareProxy({ QYS_WWW_DIR: www }, [www]);
}

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** A page of a fresh context at `${proxy}/shop.html`, with `userAgent` and init scripts. */
async function shop(proxy, { userAgent, init = [], file = 'shop.html', query = 'order=7&note=a%20b' } = {}) {
  const context = await browser.newContext(userAgent ? { userAgent } : {});
  for (const script of [COUNT_PROXY_CALLS, ...init]) await context.addInitScript(script);
  const page = await context.newPage();
  page.sdkLog = [];
  page.on('console', (m) => { if (m.text().startsWith('[qys-sdk]')) page.sdkLog.push(m.text()); });
  await page.goto(`${proxy.proxy}/${file}?${query}`);
  await page.waitForSelector('body[data-ready=true]', { state: 'attached' });
  if (!query.includes('manual')) await page.waitForFunction(() => window.resumedResult);
  return page;
}

const CALLS = {
  personalSign: (c) => `sdk.personalSign('2603417854124281870', '13700000044', ${c})`,
  enterpriseSign: (c) => `sdk.enterpriseSign('2603417854124281870', '13800000055', ${c})`,
  personalAuth: (c, contact = '13900000101', mode = 'FACE') =>
    `sdk.personalAuth({ mode: '${mode}', contact: '${contact}', username: '韩梅梅', idCardNo: '110101199303033456' }, ${c})`,
  enterpriseAuth: (c, name = '杭州微信演示有限公司') => `sdk.enterpriseAuth({ companyName: '${name}', companyAuthBean: {
    applicant: { name: '李雷', contact: '13900000102' }, registerNo: '91330100MA2B000019', legalPerson: '李雷' } }, ${c})`,
};
const SUCCESS = {
  personalSign: ['signSuccess', { contractId: '2603417854124281870' }],
  enterpriseSign: ['signSuccess', { contractId: '2603417854124281870' }],
  personalAuth: ['authSuccess', { username: '韩梅梅', mobile: '13900000101', cardNo: '110101199303033456' }],
  enterpriseAuth: ['authSuccess', { name: '杭州微信演示有限公司', registerNo: '91330100MA2B000019', legalPerson: '李雷' }],
};
const FINISH = { personalSign: '#qys-sandbox-sign', enterpriseSign: '#qys-sandbox-sign', personalAuth: '#qys-sandbox-auth-submit', enterpriseAuth: '#qys-sandbox-auth-submit' };

/** Starts `call` in the shop page without waiting (the page may navigate away). */
function start(page, call) {
  return page.evaluate((code) => {
    window.started = eval(code).then((el) => ({ tag: el.tagName, role: el.getAttribute('role'), text: el.textContent, title: el.title }),
      (e) => ({ error: { name: e.name, kind: e.kind, code: e.code, message: e.message } }));
    window.started.then((r) => { window.startedResult = r; });
  }, call);
}

/** Redirect: the top window goes to the sandbox, `click` finishes there, and the shop page resumes. */
async function redirectFlow(proxy, page, call, click) {
  const path = new URL(page.url()).pathname;
  // The return URL is kept as the navigation commits: the page's resume may strip `qys_state`
  // (history.replaceState) before `page.url()` could be read.
  let returned;
  const back = page.waitForURL((u) => {
    if (u.pathname !== path || !u.searchParams.has('qys_state')) return false;
    returned = u.href;
    return true;
  }, { waitUntil: 'commit' });
  await start(page, call);
  await page.waitForURL((u) => u.origin === proxy.sandbox);
  await page.click(click);
  await back;
  await page.waitForSelector('body[data-ready=true]', { state: 'attached' });
  const resumed = await page.waitForFunction(() => window.resumedResult).then((h) => h.jsonValue());
  return { returned, resumed, fired: await page.evaluate(() => window.fired), url: page.url() };
}

test('iOS WeChat, personalAuth FACE: redirect → submit → back → resume fires authSuccess once; URL clean; replay and forgery fire nothing', async () => {
  const proxy = await startProxy();
  try {
    const page = await shop(proxy, { userAgent: IOS_WECHAT });
    assert.deepEqual(await page.evaluate(() => window.resumedResult), { value: null }, 'a plain load resumes nothing');
    const { returned, resumed, fired, url } = await redirectFlow(proxy, page, CALLS.personalAuth('callbacks'), '#qys-sandbox-auth-submit');
    assert.deepEqual(fired, [SUCCESS.personalAuth], 'authSuccessCb once, with the userInfo the platform confirmed');
    assert.deepEqual(resumed, { value: { action: 'personalAuth', event: 'authSuccess', data: SUCCESS.personalAuth[1] } });
    assert.equal(url, `${proxy.proxy}/shop.html?order=7&note=a%20b`, 'qys_state removed, the page\'s own query byte for byte');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('qys-sdk:flows')), '[]', 'the flow is forgotten');
    assert.ok(!/13900000101|110101/.test(await page.evaluate(() => JSON.stringify(sessionStorage))), 'no contact, no id number stored');
    // A second resume on the same load, then a replay of the return URL: nothing more fires.
    assert.equal(await page.evaluate(() => window.sdk.resume(window.callbacks)), null);
    await page.goto(returned);
    await page.waitForFunction(() => window.resumedResult);
    assert.deepEqual(await page.evaluate(() => [window.resumedResult, window.fired, window.proxyCalls]), [{ value: null }, [], 0]);
    assert.equal(page.url(), `${proxy.proxy}/shop.html?order=7&note=a%20b`, 'a replayed state is removed from the URL too');
    // Forged states: well-formed and random, or the real one altered.
    const state = new URL(returned).searchParams.get('qys_state');
    for (const forged of ['AAAAAAAAAAAAAAAAAAAAAA', state.slice(0, -1) + (state.endsWith('A') ? 'B' : 'A')]) {
      await page.goto(`${proxy.proxy}/shop.html?qys_state=${forged}`);
      await page.waitForFunction(() => window.resumedResult);
      assert.deepEqual(await page.evaluate(() => [window.resumedResult, window.fired, window.proxyCalls]), [{ value: null }, [], 0]);
    }
    await page.context().close();
  } finally {
    await proxy.stop();
  }
});

test('iOS WeChat redirect: exit → resume fires authFailCb once; the status element was returned before leaving', async () => {
  const proxy = await startProxy();
  try {
    const page = await shop(proxy, { userAgent: IOS_WECHAT });
    const leaving = [];
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) leaving.push(f.url()); });
    // Keep the element the call resolved to across the navigation.
    await page.evaluate(() => { window.addEventListener('pagehide', () => sessionStorage.setItem('element', JSON.stringify(window.startedResult ?? null))); });
    const { fired, resumed } = await redirectFlow(proxy, page, CALLS.personalAuth('callbacks', '13900000103', 'DEFAULT'), '#qys-sandbox-exit');
    assert.deepEqual(fired, [['authFail']], 'authFailCb once, with no argument');
    assert.deepEqual(resumed, { value: { action: 'personalAuth', event: 'authFail', data: {} } });
    assert.deepEqual(JSON.parse(await page.evaluate(() => sessionStorage.getItem('element'))),
      { tag: 'DIV', role: 'status', text: '正在打开认证页面…', title: '' });
    assert.ok(leaving.some((u) => u.startsWith(proxy.sandbox)), 'the top window itself went to the platform');
    await page.context().close();
  } finally {
    await proxy.stop();
  }
});

test('auto keeps iframes for signing in iOS WeChat and everywhere outside WeChat', async () => {
  const proxy = await startProxy();
  try {
    for (const [userAgent, call] of [[IOS_WECHAT, CALLS.personalSign('callbacks')], [undefined, CALLS.personalAuth('callbacks')]]) {
      const page = await shop(proxy, { userAgent });
      await start(page, call);
      const result = await page.waitForFunction(() => window.startedResult).then((h) => h.jsonValue());
      assert.equal(result.tag, 'IFRAME', JSON.stringify(result));
      assert.equal(page.url().startsWith(proxy.proxy), true, 'the page stays');
      await page.context().close();
    }
  } finally {
    await proxy.stop();
  }
});

/** Mini-program: start, check the recorded navigateTo, finish on the emulated plugin page, show again. */
async function miniProgramFlow(proxy, page, call, click) {
  await start(page, call);
  const result = await page.waitForFunction(() => window.startedResult).then((h) => h.jsonValue());
  const [url] = await page.evaluate(() => window.navigations);
  assert.ok(url, JSON.stringify(result));
  const target = new URL(url, 'https://mini.program');
  assert.equal(target.pathname, '/pages/qys/qys');
  assert.equal(target.searchParams.get('env'), 'sandbox');
  await page.evaluate(() => window.setHidden(true)); // WeChat covers the web-view with the host page
  const plugin = await page.context().newPage();
  const pluginUrl = `${proxy.sandbox}/plugin/${target.searchParams.get('page')}?ticket=${encodeURIComponent(target.searchParams.get('ticket'))}`
    + `&env=${target.searchParams.get('env')}&hasCb=true`;
  await plugin.goto(pluginUrl);
  await plugin.click(click);
  const done = await plugin.getAttribute('#qys-sandbox-plugin-done', 'data-event');
  await plugin.close();
  const callsBefore = await page.evaluate(() => window.proxyCalls);
  await page.evaluate(() => window.setHidden(false)); // the plugin closed; the web-view is shown again
  await page.waitForFunction(() => window.fired.length > 0);
  // Hidden and shown again after the terminal event: no further proxy request, so nothing can fire.
  const after = await page.evaluate(() => { window.setHidden(true); window.setHidden(false); window.dispatchEvent(new PageTransitionEvent('pageshow')); return window.proxyCalls; });
  assert.equal(after, callsBefore + 1, 'exactly one outcome request');
  return { result, url, done, fired: await page.evaluate(() => window.fired) };
}

test('mini-program web-view: ticket → plugin page signs → shown again → signSuccessCb once', async () => {
  const proxy = await startProxy();
  try {
    const page = await shop(proxy, { userAgent: ANDROID_MINI_PROGRAM, init: [MINI_PROGRAM_INIT] });
    const { result, url, done, fired } = await miniProgramFlow(proxy, page, CALLS.personalSign('callbacks'), '#qys-sandbox-sign');
    assert.deepEqual(result, { tag: 'DIV', role: 'status', text: '正在打开签署页面…', title: '' });
    assert.match(url, /^\/pages\/qys\/qys\?page=doc&ticket=[0-9a-f]{32}&env=sandbox$/);
    assert.equal(done, 'signSuccessCb');
    assert.deepEqual(fired, [SUCCESS.personalSign]);
    await page.context().close();
  } finally {
    await proxy.stop();
  }
});

test('mini-program web-view: exit on the plugin page → authFailCb once; a show without a hide asks nothing', async () => {
  const proxy = await startProxy();
  try {
    const page = await shop(proxy, { userAgent: ANDROID_MINI_PROGRAM, init: [MINI_PROGRAM_INIT] });
    await start(page, CALLS.personalAuth('callbacks', '13900000104'));
    await page.waitForFunction(() => window.startedResult);
    const calls = await page.evaluate(() => { window.setHidden(false); window.dispatchEvent(new PageTransitionEvent('pageshow')); return window.proxyCalls; });
    assert.equal(calls, 1, 'only the flow request: shown without having been hidden is not a return');
    await page.context().close();

    const second = await shop(proxy, { userAgent: ANDROID_MINI_PROGRAM, init: [MINI_PROGRAM_INIT] });
    const { done, fired } = await miniProgramFlow(proxy, second, CALLS.personalAuth('callbacks', '13900000105'), '#qys-sandbox-exit');
    assert.equal(done, 'authFailCb');
    assert.deepEqual(fired, [['authFail']]);
    await second.context().close();
  } finally {
    await proxy.stop();
  }
});

test('mini-program presentation without WeChat\'s JS-SDK: a typed error, nothing sent', async () => {
  const proxy = await startProxy();
  try {
    const page = await shop(proxy, { userAgent: ANDROID_MINI_PROGRAM });
    await start(page, CALLS.personalSign('callbacks'));
    const { error } = await page.waitForFunction(() => window.startedResult).then((h) => h.jsonValue());
    assert.equal(error.name, 'QysError');
    assert.equal(error.kind, 'network');
    assert.match(error.message, /wx\.miniProgram is not available: load WeChat's JS-SDK \(https:\/\/res\.wx\.qq\.com\/open\/js\/jweixin/);
    assert.equal(await page.evaluate(() => window.proxyCalls), 0);
    await page.context().close();
  } finally {
    await proxy.stop();
  }
});

for (const presentation of ['iframe', 'redirect', 'miniProgram']) {
  test(`four methods × ${presentation} against the sandbox`, async () => {
    const proxy = await startProxy(); // a fresh sandbox: each contract can be signed once
    try {
      for (const method of Object.keys(CALLS)) {
        const options = `{ ...callbacks, presentation: '${presentation}' }`;
        const page = await shop(proxy, presentation === 'miniProgram' ? { init: [MINI_PROGRAM_INIT] } : {});
        let fired;
        if (presentation === 'iframe') {
          await page.evaluate(async (code) => { const el = await eval(code); el.id = 'qys-frame'; document.body.append(el); }, CALLS[method](options));
          await page.frameLocator('#qys-frame').locator(FINISH[method]).click();
          await page.waitForFunction(() => window.fired.length > 0);
          fired = await page.evaluate(() => window.fired);
        } else if (presentation === 'redirect') {
          ({ fired } = await redirectFlow(proxy, page, CALLS[method](options), FINISH[method]));
        } else {
          ({ fired } = await miniProgramFlow(proxy, page, CALLS[method](options), FINISH[method]));
        }
        assert.deepEqual(fired, [SUCCESS[method]], `${method} × ${presentation}`);
        await page.context().close();
      }
    } finally {
      await proxy.stop();
    }
  });
}

/** A redirect flow that comes back to `?manual`, where the page does not resume on its own. */
async function returnUnresumed(proxy, contact) {
  const page = await shop(proxy, { userAgent: IOS_WECHAT, query: 'manual' });
  await start(page, CALLS.personalAuth('callbacks', contact));
  await page.waitForURL((u) => u.origin === proxy.sandbox);
  await page.click('#qys-sandbox-auth-submit');
  await page.waitForURL((u) => u.searchParams.has('qys_state'));
  await page.waitForSelector('body[data-ready=true]', { state: 'attached' });
  return page;
}

test('redirect: two instances resuming one return fire once, with one request', async () => {
  const proxy = await startProxy();
  try {
    const page = await returnUnresumed(proxy, '13900000106');
    const results = await page.evaluate(() => Promise.all([
      window.sdk.resume(window.callbacks),
      new window.sdk.constructor('/qys/proxy').resume(window.callbacks),
    ]));
    assert.equal(results.filter((r) => r === null).length, 1, JSON.stringify(results));
    assert.deepEqual(results.find((r) => r !== null), { action: 'personalAuth', event: 'authSuccess',
      data: { username: '韩梅梅', mobile: '13900000106', cardNo: '110101199303033456' } });
    assert.deepEqual(await page.evaluate(() => [window.fired.length, window.proxyCalls]), [1, 1]);
    await page.context().close();
  } finally {
    await proxy.stop();
  }
});

test('redirect: a flow token the proxy does not accept resolves null, fires nothing, and is forgotten', async () => {
  const proxy = await startProxy();
  try {
    const page = await returnUnresumed(proxy, '13900000107');
    const result = await page.evaluate(async () => {
      const flows = JSON.parse(sessionStorage.getItem('qys-sdk:flows'));
      const f = flows[0].f;
      const middle = f.length >> 1;
      flows[0].f = f.slice(0, middle) + (f[middle] === 'A' ? 'B' : 'A') + f.slice(middle + 1);
      sessionStorage.setItem('qys-sdk:flows', JSON.stringify(flows));
      return window.sdk.resume(window.callbacks);
    });
    assert.equal(result, null);
    assert.deepEqual(await page.evaluate(() => [window.fired, window.proxyCalls, sessionStorage.getItem('qys-sdk:flows')]),
      [[], 1, '[]'], 'asked once (40004), fired nothing, forgot the flow');
    assert.equal(page.url(), `${proxy.proxy}/shop.html?manual`);
    await page.context().close();
  } finally {
    await proxy.stop();
  }
});

test('redirect with seed 004\'s classic script: window.qysSdk instances resume too', async () => {
  const proxy = await startProxy();
  try {
    const page = await shop(proxy, { userAgent: IOS_WECHAT, file: 'classic.html' });
    const { fired, resumed } = await redirectFlow(proxy, page, CALLS.personalAuth('callbacks', '13900000109'), '#qys-sandbox-auth-submit');
    assert.deepEqual(fired, [['authSuccess', { username: '韩梅梅', mobile: '13900000109', cardNo: '110101199303033456' }]]);
    assert.equal(resumed.value.event, 'authSuccess');
    await page.context().close();
  } finally {
    await proxy.stop();
  }
});

test('mini-program: navigateTo that throws rejects and watches nothing; one WeChat refuses fires authFailCb once', async () => {
  const proxy = await startProxy();
  try {
    const throwing = () => { window.wx.miniProgram.navigateTo = () => { throw new Error('not in a web-view'); }; };
    const page = await shop(proxy, { userAgent: ANDROID_MINI_PROGRAM, init: [MINI_PROGRAM_INIT, throwing] });
    await start(page, CALLS.personalSign('callbacks'));
    const { error } = await page.waitForFunction(() => window.startedResult).then((h) => h.jsonValue());
    assert.equal(error.kind, 'network');
    assert.match(error.message, /navigateTo threw/);
    const calls = await page.evaluate(() => { window.setHidden(true); window.setHidden(false); return window.proxyCalls; });
    assert.equal(calls, 1, 'the flow request only: a failed call watches nothing');
    assert.deepEqual(await page.evaluate(() => window.fired), []);
    await page.context().close();

    const refusing = () => {
      window.wx.miniProgram.navigateTo = (o) => setTimeout(() => o.complete({ errMsg: 'navigateTo:fail page "pages/qys/qys" is not found' }));
    };
    const second = await shop(proxy, { userAgent: ANDROID_MINI_PROGRAM, init: [MINI_PROGRAM_INIT, refusing] });
    await start(second, CALLS.personalAuth('callbacks', '13900000110'));
    await second.waitForFunction(() => window.fired.length > 0);
    const after = await second.evaluate(() => { window.setHidden(true); window.setHidden(false); return [window.fired, window.proxyCalls]; });
    assert.deepEqual(after, [[['authFail']], 1], 'authFailCb once; the flow is closed, so a later show asks nothing');
    await second.context().close();
  } finally {
    await proxy.stop();
  }
});
