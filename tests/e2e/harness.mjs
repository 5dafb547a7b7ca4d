// Shared harness of the end-to-end tests: the real qys-proxy binary with its sandbox on ephemeral
// loopback ports, a foreign-origin server for forged messages, and Debian's Chromium.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Starts `qys-proxy` (release build) with its embedded sandbox; resolves to its URLs. `stop()`
 * resolves once the proxy has exited and its database folder (and the folders in `remove`) are gone. */
export async function startProxy(env = {}, remove = []) {
  const dir = mkdtempSync(join(tmpdir(), 'qys-e2e-'));
  const child = spawn(join(root, 'target/release/qys-proxy'), [], {
    cwd: root,
    env: {
      PATH: process.env.PATH,
      QYS_LISTEN: '127.0.0.1:0',
      QYS_SANDBOX_LISTEN: '127.0.0.1:0',
      QYS_DATABASE: join(dir, 'callbacks.sqlite3'),
      RUST_LOG: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  // A URL counts once its line is complete (a chunk may end inside it).
  const urls = await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`qys-proxy exited with ${code}: ${out}`)));
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const proxy = /^proxy: (\S+)\s/m.exec(out);
      const sandbox = /^sandbox platform: (\S+)\s/m.exec(out);
      if (proxy && sandbox) resolve({ proxy: proxy[1], sandbox: sandbox[1] });
    });
  });
  const exited = once(child, 'exit').then(() => {
    for (const d of [dir, ...remove]) rmSync(d, { recursive: true, force: true });
  });
  return { ...urls, stop: () => { child.kill(); return exited; } };
}

/** Starts tests/support/faults.mjs (a "proxy" that hangs, answers HTTP 500 or garbage) on an
 * ephemeral loopback port; resolves to its URL. */
export async function startFaults() {
  const child = spawn(process.execPath, [join(root, 'tests/support/faults.mjs'), '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const url = await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`faults.mjs exited with ${code}: ${out}`)));
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = /^faults: (\S+)\s/m.exec(out);
      if (m) resolve(m[1]);
    });
  });
  return { url, stop: () => child.kill() };
}

/** A server on another origin whose page posts forged protocol messages to its parent. */
export async function startForger() {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!doctype html><script>
      const q = new URLSearchParams(location.search);
      for (const event of ['signSuccess', 'authSuccess', 'authFail']) {
        parent.postMessage({ type: 'qys-sdk', v: 1, state: q.get('state'), event,
          data: { contractId: '1', username: 'forged' } }, '*');
      }
      document.title = 'posted';
    </script>`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${server.address().port}`, stop: () => server.close() };
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
      '--js-flags=--expose-gc'],
  });
}

/** Resolves once a marker message posted by `frame`'s page (default: the top page itself) has
 * reached the top page. Messages from one window are delivered in order, so everything that page
 * posted before — the return page's one protocol message, forged ones — has been handled by then,
 * callbacks included: a test counts what fired after this instead of sleeping. The SDK's listener,
 * if still there, sees the marker too (and ignores it). */
export async function drain(page, frame = page.mainFrame()) {
  await page.evaluate(() => {
    window.qysTestDrained = new Promise((resolve) => {
      addEventListener('message', function marker(e) {
        if (e.data !== 'qys-test-drain') return;
        removeEventListener('message', marker);
        resolve();
      });
    });
  });
  await frame.evaluate(() => parent.postMessage('qys-test-drain', '*'));
  await page.evaluate(() => window.qysTestDrained);
}

/** The SDK call's state, read from the iframe's page URL (it travels in the return token). */
export function stateOf(pageUrl) {
  const callbackPage = new URL(pageUrl).searchParams.get('callbackPage')
    ?? new URL(pageUrl).searchParams.get('callbackPage');
  const token = new URL(callbackPage).searchParams.get('t');
  const payload = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
  return payload.s;
}
