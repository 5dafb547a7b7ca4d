// The demo page in headless Chromium: all four flows clicked through the sandbox's pages.
import { test, before, after } from 'node:test';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { root, startProxy, startForger, launch, stateOf, drain } from './harness.mjs';
import { DEMO_FLOWS, runDemoFlow, openDemo as openDemoPage, events, frameOf } from './flows.mjs';

let proxy, forger, browser;
before(async () => {
  [proxy, forger, browser] = await Promise.all([startProxy(), startForger(), launch()]);
});
after(async () => {
  await browser?.close();
  await proxy?.stop();
  await forger?.stop();
});

/** Opens the demo page (of `server`, in a new context with `options`: viewport, user agent…),
 * counting what reaches the proxy endpoint. */
const openDemo = (options, server = proxy) => openDemoPage(browser, server, options);

for (const flow of DEMO_FLOWS) test(flow.title, () => runDemoFlow(browser, proxy, flow));

test('forged messages fire nothing; replays after the real one fire nothing', async () => {
  const { page } = await openDemo();
  await page.fill('#contractId', '2603417854124281872');
  await page.click('#personalSign');
  const frame = await page.waitForSelector('#qys-frame');
  const pageUrl = await frame.getAttribute('src');
  const state = stateOf(pageUrl);
  // 1. Another origin, right state.
  await page.evaluate(({ url }) => new Promise((done) => {
    const f = document.createElement('iframe');
    f.id = 'forger';
    f.src = url;
    f.onload = () => done();
    document.body.append(f);
  }), { url: `${forger.url}/forge?state=${state}` });
  // 2. The return origin (this page's own origin) but the wrong window, right state.
  await page.evaluate((s) => {
    for (const event of ['signSuccess', 'authFail']) {
      window.postMessage({ type: 'qys-sdk', v: 1, state: s, event, data: { contractId: '1' } }, '*');
    }
  }, state);
  await drain(page, await frameOf(page, '#forger'));
  await drain(page);
  assert.deepEqual(await events(page), [], 'no callback for forged messages');
  const ignored = (origin) => page.sdkLog.filter((l) => l.endsWith(`ignored a message from ${origin}`)).length;
  assert.equal(ignored(forger.url), 4, 'the foreign frame\'s three messages (and its marker) arrived and were ignored');
  assert.equal(ignored(proxy.proxy), 3, 'the wrong-window messages (and the marker) arrived and were ignored');

  await page.frameLocator('#qys-frame').locator('#qys-sandbox-sign').click();
  await page.waitForSelector('#events li');
  // Replay: the return page loaded again posts the same genuine message.
  const returnUrl = await page.frameLocator('#qys-frame').locator('body').evaluate(() => location.href);
  await page.evaluate((u) => new Promise((done) => {
    const f = document.getElementById('qys-frame');
    f.onload = () => done();
    f.src = u;
  }), returnUrl);
  await drain(page, await frameOf(page));
  assert.deepEqual((await events(page)).map((e) => e.event), ['signSuccess']);
  assert.ok(page.sdkLog.some((l) => l.endsWith('personalSign: signSuccess')));
  await page.close();
});

test('platform refusals reach the page as QysError', async () => {
  const { page } = await openDemo();
  await page.fill('#signContact', '13911112222');
  await page.click('#personalSign');
  await page.waitForSelector('#events li');
  const [error] = await events(page);
  assert.equal(error.event, 'error');
  assert.deepEqual(JSON.parse(error.text.slice('error '.length)).code, 1110);
  await page.close();
});

test('after destroy() no callback fires', async () => {
  const { page } = await openDemo();
  await page.fill('#contractId', '2603417854124281872');
  await page.click('#enterpriseSign');
  await page.waitForSelector('#qys-frame');
  await page.evaluate(() => window.qysDemo.sdk.destroy());
  await page.frameLocator('#qys-frame').locator('#qys-sandbox-sign').click();
  // The return page has loaded and posted its (genuine) message: its script comes after the
  // status element, so the element alone does not say the script ran; its load event does.
  await page.frameLocator('#qys-frame').locator('#qys-return-status').waitFor();
  const frame = await frameOf(page);
  await frame.waitForLoadState('load');
  await drain(page, frame);
  assert.deepEqual(await events(page), []);
  assert.ok(page.sdkLog.some((l) => l.endsWith('destroyed')));
  assert.ok(!page.sdkLog.some((l) => l.includes('ignored a message')), 'the listener is gone, not just ignoring');
  await page.close();
});

test('an open flow survives the page dropping its qysSdk object (GC)', async () => {
  const { page } = await openDemo();
  await page.evaluate(async () => {
    // The seed's pattern: the instance lives in a local variable only.
    const element = await new window.qysDemo.qysSdk('/qys/proxy').personalAuth(
      { mode: 'FACE', contact: '13900000031', username: '周', idCardNo: '1' },
      { authSuccessCb: (info) => { window.fired = (window.fired ?? []).concat(['authSuccess', info.username]); } });
    element.id = 'gc-frame';
    document.body.append(element);
  });
  for (let i = 0; i < 3; i++) await page.evaluate(() => { gc(); return new Promise((r) => setTimeout(r, 50)); });
  await page.frameLocator('#gc-frame').locator('#qys-sandbox-auth-submit').click();
  await page.waitForFunction(() => window.fired);
  assert.deepEqual(await page.evaluate(() => window.fired), ['authSuccess', '周']);
  await page.close();
});

test('a callback that throws is reported to the page and the instance keeps working', async () => {
  const { page } = await openDemo();
  const reported = page.waitForEvent('pageerror', { predicate: (e) => e.message.includes('integrator bug') });
  await page.evaluate(async () => {
    const sdk = window.qysDemo.sdk;
    const element = await sdk.personalAuth({ mode: 'FACE', contact: '13900000032', username: '吴', idCardNo: '2' },
      { authSuccessCb: () => { window.calls = (window.calls ?? 0) + 1; throw new Error('integrator bug'); } });
    element.id = 'throw-frame';
    document.body.append(element);
  });
  await page.frameLocator('#throw-frame').locator('#qys-sandbox-auth-submit').click();
  await reported;
  await drain(page, await frameOf(page, '#throw-frame'));
  // The same instance still serves a new call.
  const ok = await page.evaluate(() => window.qysDemo.sdk.personalAuth({ contact: '13900000033' }).then((e) => e.tagName));
  assert.equal(ok, 'IFRAME');
  assert.equal(await page.evaluate(() => window.calls), 1);
  await page.close();
});

test('a flow whose iframe was removed is dropped at the next call', async () => {
  const { page } = await openDemo();
  const ignoredCount = () => page.sdkLog.filter((l) => l.includes('ignored a message')).length;
  await page.evaluate(async () => {
    const sdk = window.qysDemo.sdk;
    const first = await sdk.personalAuth({ contact: '13900000034' });
    const loaded = new Promise((r) => first.addEventListener('load', r));
    document.body.append(first);
    await loaded;
    first.remove(); // the page closed its modal
    const second = await sdk.personalAuth({ contact: '13900000035' });
    document.body.append(second);
    window.postMessage('noise', '*');
  });
  await drain(page);
  assert.equal(ignoredCount(), 2, 'only the open flow still listens (it ignored the noise and the marker)');
  await page.close();
});

const WECHAT_IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) '
  + 'Mobile/15E148 MicroMessenger/8.0.50(0x1800323a) NetType/WIFI Language/zh_CN';

test('phone first: the flow covers a 390×844 WeChat screen, a desktop gets a wide flow; Back returns to the form', async (t) => {
  // A proxy of its own: the tests above signed the fixtures' SIGNING contracts on the shared one.
  const fresh = await startProxy();
  t.after(() => fresh.stop());
  // Kept for a human to look at, in the build tree (replaced at each run), not in the system's temp folder.
  const dir = join(root, 'target', 'demo-screens');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const screens = [
    { name: 'phone', minWidth: 0.95 * 390, minHeight: 0.85 * 844, covers: true,
      options: { viewport: { width: 390, height: 844 }, userAgent: WECHAT_IPHONE, isMobile: true, hasTouch: true,
        deviceScaleFactor: 2 } },
    { name: 'desktop', minWidth: 600, minHeight: 600, covers: false,
      options: { viewport: { width: 1280, height: 800 } } },
  ];
  const shots = [];
  const shoot = async (page, file) => {
    const path = join(dir, file);
    await page.screenshot({ path });
    shots.push(path);
    t.diagnostic(`screenshot: ${path}`);
  };
  /** Whether the element is the topmost one at its own centre (visible, not covered). */
  const onTop = (locator) => locator.evaluate((el) => {
    const r = el.getBoundingClientRect();
    return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === el;
  });
  for (const screen of screens) {
    const { width, height } = screen.options.viewport;
    const { page } = await openDemo(screen.options, fresh);
    if (screen.options.userAgent) assert.match(await page.evaluate(() => navigator.userAgent), /MicroMessenger/);
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth),
      `${screen.name}: no horizontal scrolling`);
    const formButton = page.locator('#personalSign');
    const input = await page.locator('#contractId').boundingBox();
    if (screen.covers) assert.ok(input.width >= width - 64, `${screen.name}: one column form, ${JSON.stringify(input)}`);
    await shoot(page, `${screen.name}-form.png`);

    await page.selectOption('#presentation', 'iframe');
    await formButton.click();
    const frame = page.locator('#qys-frame');
    await page.frameLocator('#qys-frame').locator('#qys-sandbox-sign').waitFor();
    assert.equal(await frame.evaluate((el) => el.tagName), 'IFRAME');
    const box = await frame.boundingBox();
    t.diagnostic(`${screen.name} ${width}×${height}: #qys-frame ${JSON.stringify(box)}`);
    assert.ok(box.width >= screen.minWidth, `${screen.name}: iframe width ${box.width} ≥ ${screen.minWidth}`);
    assert.ok(box.height >= screen.minHeight, `${screen.name}: iframe height ${box.height} ≥ ${screen.minHeight}`);
    assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= width + 0.5 && box.y + box.height <= height + 0.5,
      `${screen.name}: iframe inside the viewport`);
    assert.ok(await onTop(frame), `${screen.name}: nothing covers the iframe`);
    if (screen.covers) assert.ok(await formButton.isHidden(), `${screen.name}: the form is out of the way`);
    const back = page.getByRole('button', { name: '返回 / Back' });
    assert.ok(await back.isVisible(), `${screen.name}: Back is visible`);
    assert.ok(await onTop(back), `${screen.name}: nothing covers Back`);
    const backBox = await back.boundingBox();
    assert.ok(backBox.width >= 44 && backBox.height >= 44, `${screen.name}: Back is a tap target, ${JSON.stringify(backBox)}`);
    await shoot(page, `${screen.name}-flow.png`);

    await back.click();
    assert.equal(await frame.count(), 0, `${screen.name}: Back removes the flow's element`);
    assert.ok(await formButton.isVisible(), `${screen.name}: the form is back`);
    assert.ok(await onTop(formButton), `${screen.name}: nothing covers the form`);
    await page.close();
  }
  // The screenshots show Chinese text only if a CJK font is installed (tools.sh installs Noto CJK).
  const cjk = execFileSync('fc-list', [':lang=zh', 'family'], { encoding: 'utf8' });
  assert.match(cjk, /Noto Sans CJK/, 'a CJK font for the screenshots');
  for (const path of shots) {
    const png = readFileSync(path);
    assert.ok(png.length > 1000, `${path}: ${png.length} bytes`);
    assert.deepEqual([...png.subarray(1, 4)], [...Buffer.from('PNG')], `${path} is a PNG`);
  }
});
