// The demo flows in Firefox ESR and WebKitGTK through WebDriver (Playwright cannot drive Debian's
// builds), and the classic script on its wasm2js fallback there. ENGINE=firefox needs GECKODRIVER; ENGINE=webkit needs WebKitWebDriver and a display
// (run under xvfb-run). The driver is started here and reached with usingServer, so
// selenium-webdriver never tries to download one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Builder, By, until } from 'selenium-webdriver';
import { startProxy } from '../e2e/harness.mjs';

const engine = process.env.ENGINE;
let proxy, driverProcess, driver;

async function freePort() {
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

function capabilities() {
  if (engine === 'firefox') {
    return { browserName: 'firefox', 'moz:firefoxOptions': { binary: process.env.FIREFOX ?? '/usr/bin/firefox-esr', args: ['-headless'] } };
  }
  if (engine === 'webkit') {
    return { browserName: 'MiniBrowser', 'webkitgtk:browserOptions': { binary: process.env.MINIBROWSER, args: ['--automation'] } };
  }
  throw new Error('set ENGINE=firefox or ENGINE=webkit');
}

before(async () => {
  proxy = await startProxy();
  const port = await freePort();
  const bin = engine === 'firefox' ? process.env.GECKODRIVER : process.env.SAFARIDRIVER;
  const args = engine === 'firefox' ? ['--host', '127.0.0.1', '--port', String(port)] : [`--port=${port}`, '--host=127.0.0.1'];
  driverProcess = spawn(bin, args, { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    try {
      driver = await new Builder().usingServer(`http://127.0.0.1:${port}`).withCapabilities(capabilities()).build();
      break;
    } catch (e) {
      if (i === 99) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
});
after(async () => {
  await driver?.quit().catch(() => {});
  driverProcess?.kill();
  await proxy?.stop();
});

async function events() {
  return driver.executeScript(() => [...document.querySelectorAll('#events li')].map((li) => li.textContent));
}

/** Records the SDK's log lines and the page's uncaught errors, and notes the marker `drain` posts. */
function watchPage() {
  return driver.executeScript(() => {
    window.seen = { log: [], errors: [], drained: false };
    const log = console.log;
    console.log = function () {
      window.seen.log.push([].join.call(arguments, ' '));
      return log.apply(this, arguments);
    };
    addEventListener('error', (e) => window.seen.errors.push(e.message));
    addEventListener('message', (e) => { if (e.data === 'qys-test-drain') window.seen.drained = true; });
  });
}

/** From inside the flow's frame, once its return page has run its script: posts a marker to the
 * top page and waits there until it arrived. Messages from one window arrive in order, so the
 * return page's message has been handled by then, callbacks included (see harness.mjs `drain`). */
async function drain() {
  // (a script run while the frame navigates may fail: then ask again)
  await driver.wait(() => driver.executeScript(() =>
    document.readyState === 'complete' && document.getElementById('qys-return-status') !== null).catch(() => false), 10000);
  await driver.executeScript(() => parent.postMessage('qys-test-drain', '*'));
  await driver.switchTo().defaultContent();
  await driver.wait(() => driver.executeScript(() => window.seen.drained), 10000);
}

async function flow(button, fill, click, expected) {
  await driver.get(`${proxy.proxy}/`);
  await driver.wait(until.elementLocated(By.css('body[data-ready=true]')), 10000);
  await watchPage();
  for (const [id, value] of fill) {
    const input = await driver.findElement(By.id(id));
    await input.clear();
    await input.sendKeys(value);
  }
  await driver.findElement(By.id(button)).click();
  const frame = await driver.wait(until.elementLocated(By.id('qys-frame')), 10000);
  await driver.switchTo().frame(frame);
  const target = await driver.wait(until.elementLocated(By.id(click)), 10000);
  await target.click();
  await drain(); // a second callback would have fired by now
  assert.deepEqual(await events(), [expected]);
  // No listener of the flow saw the marker (it would log it as ignored, or throw if freed): the
  // flow stopped listening at its terminal event, so nothing can fire later.
  const seen = await driver.executeScript(() => window.seen);
  assert.ok(seen.log.some((l) => l.endsWith(`${button}: ${expected.split(' ')[0]}`)), seen.log.join('\n'));
  assert.deepEqual([...seen.log.filter((l) => l.includes('ignored a message')), ...seen.errors], []);
}

test(`${engine}: personalSign → signSuccess`, () =>
  flow('personalSign', [], 'qys-sandbox-sign', 'signSuccess {"contractId":"2603417854124281870"}'));

test(`${engine}: enterpriseSign → signSuccess`, () =>
  flow('enterpriseSign', [], 'qys-sandbox-sign', 'signSuccess {"contractId":"2603417854124281870"}'));

test(`${engine}: personalAuth → authSuccess with userInfo`, () =>
  flow('personalAuth', [], 'qys-sandbox-auth-submit',
    'authSuccess {"username":"李雷","mobile":"13900000001","cardNo":"110101199303033456"}'));

test(`${engine}: enterpriseAuth → authSuccess`, () =>
  flow('enterpriseAuth', [], 'qys-sandbox-auth-submit',
    'authSuccess {"name":"杭州演示科技有限公司","registerNo":"91330100MA2B000009","legalPerson":"韩梅梅"}'));

test(`${engine}: an unauthenticated signer exits → authFail`, () =>
  flow('personalSign', [['contractId', '2603417854124281871'], ['signContact', '13900000066']], 'qys-sandbox-exit', 'authFail'));

/** The redirect presentation: the top window goes to the sandbox and comes back; resume() fires. */
async function redirectFlow(contact, click, expected) {
  await driver.get(`${proxy.proxy}/`);
  await driver.wait(until.elementLocated(By.css('body[data-ready=true]')), 10000);
  await driver.executeScript((c) => {
    document.getElementById('presentation').value = 'redirect';
    document.getElementById('authContact').value = c;
  }, contact);
  await driver.findElement(By.id('personalAuth')).click();
  const target = await driver.wait(until.elementLocated(By.id(click)), 10000);
  assert.ok((await driver.getCurrentUrl()).startsWith(proxy.sandbox), 'the top window is on the platform');
  await target.click();
  await driver.wait(async () => (await driver.getCurrentUrl()).startsWith(proxy.proxy), 10000);
  await driver.wait(until.elementLocated(By.css('body[data-ready=true]')), 10000);
  await driver.wait(async () => (await events()).length > 0, 10000);
  // Count after the terminal event: a second resume on this load fires nothing.
  const again = await driver.executeAsyncScript((done) => window.qysDemo.sdk.resume({ authFailCb() {}, authSuccessCb() {} }).then(done));
  assert.equal(again, null);
  assert.deepEqual(await events(), [expected]);
  assert.equal(await driver.getCurrentUrl(), `${proxy.proxy}/`, 'qys_state is gone from the URL');
  // Replaying the return URL fires nothing either.
  const returned = await driver.executeScript(() => performance.getEntriesByType('navigation')[0].name);
  assert.match(returned, /[?&]qys_state=[\w-]{22}$/);
  await driver.get(returned);
  await driver.wait(until.elementLocated(By.css('body[data-ready=true]')), 10000);
  const replayed = await driver.executeAsyncScript((done) => window.qysDemo.sdk.resume({}).then(done));
  assert.equal(replayed, null);
  assert.deepEqual(await events(), []);
}

test(`${engine}: redirect personalAuth → back → resume fires authSuccess once`, () =>
  redirectFlow('13900000201', 'qys-sandbox-auth-submit',
    'authSuccess {"username":"李雷","mobile":"13900000201","cardNo":"110101199303033456"}'));

test(`${engine}: redirect personalAuth exit → back → resume fires authFail once`, () =>
  redirectFlow('13900000202', 'qys-sandbox-exit', 'authFail'));

/** A page with the classic script that records `personalAuth`'s outcome; `head` comes first. */
const fallbackPage = (head) => `<!doctype html><meta charset=utf-8>${head}<script src=/js/index.js></script><script>
  window.result = null;
  new qysSdk('/qys/proxy').personalAuth({ contact: '13900000203' })
    .then(function (el) { window.result = el.tagName; }, function (e) { window.result = e.kind + ' ' + e.message; });
</script>`;

/** Opens `file` of a proxy serving the fallback pages; its outcome and the SDK files it fetched. */
async function fallbackRun(file) {
  const www = mkdtempSync(join(tmpdir(), 'qys-fallback-'));
  // As in iOS Lockdown Mode: no WebAssembly at all.
  writeFileSync(join(www, 'nowasm.html'), fallbackPage('<script>delete window.WebAssembly;</script>'));
  // A CSP (here in a <meta>) that lets scripts run but not WebAssembly.
  writeFileSync(join(www, 'csp.html'), fallbackPage(`<meta http-equiv="Content-Security-Policy" content="script-src 'self' 'unsafe-inline'">`));
  const pages = await startProxy({ QYS_WWW_DIR: www });
  try {
    await driver.get(`${pages.proxy}/${file}`);
    await driver.wait(async () => driver.executeScript(() => window.result), 15000);
    return driver.executeScript(() => [window.result, performance.getEntriesByType('resource')
      .map((e) => e.name.split('/').pop()).filter((f) => f.startsWith('qys_sdk_wasm'))]);
  } finally {
    await pages.stop();
    rmSync(www, { recursive: true, force: true });
  }
}

test(`${engine}: without WebAssembly the classic script runs on the wasm2js fallback`, async () => {
  assert.deepEqual(await fallbackRun('nowasm.html'), ['IFRAME', ['qys_sdk_wasm2js.js']]);
});

test(`${engine}: a CSP without wasm-unsafe-eval makes the classic script fall back to wasm2js`, async () => {
  assert.deepEqual(await fallbackRun('csp.html'), ['IFRAME', ['qys_sdk_wasm_bg.wasm', 'qys_sdk_wasm2js.js']]);
});
