// Forwarding on, end to end: the real proxy (QYS_FORWARD_URL) with its sandbox, the demo page's
// auth flows clicked through in Chromium, and a backend on loopback that verifies each delivery
// with the README's Node verifier. The sandbox, like the platform (seed 004), sends server
// callbacks for auth flows only: a signing flow has none to forward.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { EventEmitter, once } from 'node:events';
import { startProxy, launch, stateOf } from './harness.mjs';
import { openDemo, events } from './flows.mjs';
import { verifyForward } from '../../examples/verify-forward.mjs';

const SECRET = 'e2e-forwarding-secret-3c9a71d05f2b48e6';

/** A backend that records every request with its signature's verdict and answers 204 (401 to a
 * bad signature); emits 'delivery' for each. */
async function startBackend() {
  const deliveries = [];
  const emitter = new EventEmitter();
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const delivery = { headers: req.headers, raw, valid: verifyForward(SECRET, req.headers, raw) };
      deliveries.push(delivery);
      res.writeHead(delivery.valid ? 204 : 401).end();
      emitter.emit('delivery', delivery);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  /** Resolves with the first delivery whose body's `flow` is `state` (bounded). */
  const deliveryOf = (state, ms = 20000) => new Promise((resolve, reject) => {
    const matches = (d) => { try { return JSON.parse(d.raw).flow === state; } catch { return false; } };
    const seen = deliveries.find(matches);
    if (seen) return resolve(seen);
    const timer = setTimeout(() => {
      emitter.off('delivery', listener);
      reject(new Error(`no delivery for flow ${state} within ${ms} ms; got ${deliveries.length}`));
    }, ms);
    const listener = (d) => {
      if (!matches(d)) return;
      clearTimeout(timer);
      emitter.off('delivery', listener);
      resolve(d);
    };
    emitter.on('delivery', listener);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks/qys`,
    deliveries,
    deliveryOf,
    stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

let backend, proxy, browser;
before(async () => {
  backend = await startBackend();
  [proxy, browser] = await Promise.all([
    startProxy({ QYS_FORWARD_URL: backend.url, QYS_FORWARD_SECRET: SECRET }),
    launch(),
  ]);
});
after(async () => {
  await browser?.close();
  await proxy?.stop();
  await backend?.stop();
});

/** Runs the demo page's flow `button` to its one event; the SDK call's state. */
async function finishFlow(button) {
  const { page } = await openDemo(browser, proxy);
  await page.click(`#${button}`);
  const state = stateOf(await (await page.waitForSelector('#qys-frame')).getAttribute('src'));
  await page.frameLocator('#qys-frame').locator('#qys-sandbox-auth-submit').click();
  await page.waitForSelector('#events li');
  assert.deepEqual((await events(page)).map((e) => e.event), ['authSuccess']);
  await page.close();
  return state;
}

for (const { button, kind, passedField } of [
  { button: 'personalAuth', kind: 'personal-auth', passedField: ['realName', true] },
  { button: 'enterpriseAuth', kind: 'company-auth', passedField: ['status', 2] },
]) {
  test(`${button}: the platform's callback reaches the backend signed, verified, tied to the flow`, async () => {
    const state = await finishFlow(button);
    const delivery = await backend.deliveryOf(state);
    assert.ok(delivery.valid, 'the signature verifies as the README says');
    const body = JSON.parse(delivery.raw);
    assert.equal(body.idempotencyKey, delivery.headers['idempotency-key']);
    assert.match(body.idempotencyKey, /^[0-9a-f]{64}$/);
    assert.equal(delivery.headers['content-type'], 'application/json');
    assert.equal(delivery.headers['x-qys-attempt'], '1');
    assert.deepEqual(
      { kind: body.kind, flow: body.flow, verified: body.verified, passed: body.passed, confirmedBy: body.confirmedBy, reason: body.reason },
      { kind, flow: state, verified: true, passed: true, confirmedBy: 'flow', reason: null },
    );
    assert.equal(body.callback.status, '1');
    assert.equal(body.platform[passedField[0]], passedField[1]);
    assert.ok(body.confirmedAt >= body.receivedAt);
    assert.ok(backend.deliveries.every((d) => d.valid), 'no delivery failed verification');
  });
}
