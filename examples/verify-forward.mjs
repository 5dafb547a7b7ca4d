// The Node verifier of callbacks forwarded by qys-proxy (README "What your backend receives").
// tests: proxy/tests/forward.rs runs it on real deliveries (proxy/tests/forward/receiver.mjs).

// snippet:start
import { createHmac, timingSafeEqual } from 'node:crypto';

// headers: Node's lower-cased request headers; rawBody: the body's exact bytes (Buffer).
export function verifyForward(secret, headers, rawBody, toleranceMs = 5 * 60 * 1000) {
  const timestamp = String(headers['x-qys-timestamp'] ?? '');
  if (!/^\d{1,15}$/.test(timestamp) || Math.abs(Date.now() - Number(timestamp)) > toleranceMs) return false;
  const mac = createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest('hex');
  const expected = Buffer.from(`sha256=${mac}`);
  const given = Buffer.from(String(headers['x-qys-signature'] ?? ''));
  return given.length === expected.length && timingSafeEqual(given, expected);
}
// snippet:end
